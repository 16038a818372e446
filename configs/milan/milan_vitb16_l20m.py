# MILAN (Hou et al. 2022): mmpretrain's MILAN / MILANViT / MILANPretrainDecoder (the
# prompting decoder: visible tokens are not updated by the decoder) / MIMHead with the cosine
# loss, on the RILS data pipeline and schedule (the MAE ViT-B/16 L-20M config). Targets are
# the joint-space features of a frozen CLIP image encoder trained by this project, and the
# semantic-aware sampling keeps patches with probability ~ the teacher's CLS attention.
#   tools/dist_train.sh configs/milan/milan_vitb16_l20m.py 32 \
#       --cfg-options model.target_generator.checkpoint=work_dirs/clip_vitb16_l20m/epoch_25.pth
# An open_clip / OpenAI ViT-B/16 state-dict file instead (local file, never downloaded):
#   --cfg-options model.target_generator="dict(type='CLIPGenerator',tokenizer_path='x.pt')"
# (mmpretrain's CLIPGenerator; replace target_generator with _delete_ in a config).
_base_ = '../mae/mae_vitb16_l20m.py'
clip_checkpoint = 'work_dirs/clip_vitb16_l20m/epoch_25.pth'
_vit_init = [
    dict(type='Xavier', layer='Linear', distribution='uniform'),
    dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0),
]
model = dict(
    type='MILAN',
    backbone=dict(type='MILANViT'),
    neck=dict(
        _delete_=True,
        type='MILANPretrainDecoder',
        num_patches=196,
        patch_size=16,
        embed_dim=768,
        decoder_embed_dim=512,
        decoder_depth=8,
        decoder_num_heads=16,
        predict_feature_dim=512,
        init_cfg=_vit_init),
    head=dict(
        _delete_=True,
        type='MIMHead',
        loss=dict(type='CosineSimilarityLoss', shift_factor=2.0, scale_factor=2.0)),
    target_generator=dict(
        type='CLIPTeacher',
        checkpoint=clip_checkpoint,
        backbone=dict(type='RILSViT', arch='b', img_size=224, patch_size=16, qv_bias=True,
                      norm_cfg=dict(type='LN', eps=1e-6)),
        vision_dims=768,
        embed_dims=512))
find_unused_parameters = True  # as mmpretrain's MILAN and EVA configs
