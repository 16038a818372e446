# The tiny MAE+CLIP on the toy corpus: the RILS toy config with pixel reconstruction.
_base_ = '../rils/rils_vittiny_toy.py'
model = dict(
    type='MAECLIP',
    neck=dict(predict_feature_dim=8 * 8 * 3),
    head=dict(
        _delete_=True,
        type='ImageTextContrastiveHead',
        vision_dims=128,
        text_dims=128,
        embed_dims=128,
        contrastive_loss=dict(type='ImageTextContrastiveLoss', loss_weight=1.0)),
    pixel_head=dict(
        type='MAEPretrainHead',
        norm_pix=True,
        patch_size=8,
        loss=dict(type='PixelReconstructionLoss', criterion='L2')),
    pixel_loss_weight=1.0,
)
