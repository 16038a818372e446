# The tiny MAE+CLIP: the tiny RILS model (rils_vittiny.py) with pixel reconstruction and the
# tiny CLIP head (clip_vittiny.py).
_base_ = './rils_vittiny.py'
model = dict(
    type='MAECLIP',
    neck=dict(predict_feature_dim=8 * 8 * 3),
    head=dict(_delete_=True, type='ImageTextContrastiveHead', vision_dims={{_base_.width}},
              text_dims={{_base_.text_width}}, embed_dims=128,
              contrastive_loss=dict(type='ImageTextContrastiveLoss', loss_weight=1.0)),
    pixel_head=dict(type='MAEPretrainHead', norm_pix=True, patch_size=8,
                    loss=dict(type='PixelReconstructionLoss', criterion='L2')),
    pixel_loss_weight=1.0,
)
