# MILAN (Hou et al. 2022) with ViT-B/16: CLIP->MIM's targets (clip-mim_vitb16.py: a frozen
# CLIP image encoder trained by this project, cosine loss) with mmpretrain's MILAN /
# MILANViT (semantic-aware sampling: patches kept with probability ~ the teacher's CLS
# attention) / MILANPretrainDecoder (the prompting decoder: visible tokens are not updated by
# the decoder). `clip_checkpoint`: the CLIP L-20M run.
_base_ = './clip-mim_vitb16.py'
clip_checkpoint = 'work_dirs/clip_vitb16_l20m/epoch_25.pth'
model = dict(
    type='MILAN',
    backbone=dict(type='MILANViT'),
    neck=dict(_delete_=True, type='MILANPretrainDecoder', num_patches=196, patch_size=16,
              embed_dim=768, decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16,
              predict_feature_dim=512, init_cfg={{_base_._vit_init}}),
    target_generator=dict(checkpoint=clip_checkpoint))
