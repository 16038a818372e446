# The tiny MAE: the tiny RILS encoder (rils_vittiny.py: 64 px, patch 8, 4 x 128) with
# mmpretrain's MAE (as mae_vitb16.py) and a 2-block 128-d pixel decoder; default init.
_base_ = './rils_vittiny.py'
model = dict(
    _delete_=True,
    type='MAE',
    data_preprocessor=dict(
        type='ClsDataPreprocessor', mean=[122.7709383, 116.7460125, 104.09373615],
        std=[68.5005327, 66.6321579, 70.32316305], to_rgb=True),
    backbone=dict(
        type='MAEViT', arch=dict(embed_dims=128, num_layers=4, num_heads=4,
                                 feedforward_channels=512),
        img_size=64, patch_size=8, mask_ratio=0.75, norm_cfg=dict(type='LN', eps=1e-6)),
    neck=dict(type='MAEPretrainDecoder', num_patches=64, patch_size=8, embed_dim=128,
              decoder_embed_dim=128, decoder_depth=2, decoder_num_heads=4,
              predict_feature_dim=8 * 8 * 3),
    head=dict(type='MAEPretrainHead', norm_pix=True, patch_size=8,
              loss=dict(type='PixelReconstructionLoss', criterion='L2')),
)
