# The tiny MILAN: the tiny CLIP->MIM model (clip-mim_vittiny.py) with MILAN's
# semantic-aware sampling and a 2-block prompting decoder, as milan_vitb16.py.
_base_ = './clip-mim_vittiny.py'
model = dict(
    type='MILAN',
    backbone=dict(type='MILANViT'),
    neck=dict(_delete_=True, type='MILANPretrainDecoder', num_patches=64, patch_size=8,
              embed_dim=128, decoder_embed_dim=128, decoder_depth=2, decoder_num_heads=4,
              predict_feature_dim=128))
