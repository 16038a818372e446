# MAE with ViT-B/16 (Tables 1, 9): mmpretrain's own MAE / MAEViT / MAEPretrainDecoder /
# MAEPretrainHead (normalised-pixel target, 75 % random mask, MAE's 8-block 512-d decoder) at
# the RILS encoder's size and initialisation (rils_vitb16.py). MAEViT is RILSViT but for a
# bias on k, which cancels in the softmax (RILSViT loads MAEViT checkpoints, see
# QVBiasLinear). No text tower, so no zero-shot evaluation.
_base_ = './rils_vitb16.py'
model = dict(
    _delete_=True,
    type='MAE',
    data_preprocessor=dict(  # CLIP statistics, as every method here
        type='ClsDataPreprocessor', mean=[122.7709383, 116.7460125, 104.09373615],
        std=[68.5005327, 66.6321579, 70.32316305], to_rgb=True),
    backbone=dict(type='MAEViT', arch='b', img_size=224, patch_size=16, mask_ratio=0.75,
                  norm_cfg=dict(type='LN', eps=1e-6), init_cfg={{_base_._vit_init}}),
    neck=dict(type='MAEPretrainDecoder', num_patches=196, patch_size=16, embed_dim=768,
              decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16,
              predict_feature_dim=16 * 16 * 3, init_cfg={{_base_._vit_init}}),
    head=dict(type='MAEPretrainHead', norm_pix=True, patch_size=16,
              loss=dict(type='PixelReconstructionLoss', criterion='L2')),
)
