# The tiny CLIP: the tiny RILS model (rils_vittiny.py) with the method changed only.
_base_ = './rils_vittiny.py'
model = dict(
    type='CLIP',
    neck=None,
    head=dict(_delete_=True, type='ImageTextContrastiveHead', vision_dims={{_base_.width}},
              text_dims={{_base_.text_width}}, embed_dims=128,
              contrastive_loss=dict(type='ImageTextContrastiveLoss', loss_weight=1.0)),
)
