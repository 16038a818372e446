# The tiny CLIP on the toy corpus: the RILS toy config with the method changed only.
_base_ = '../rils/rils_vittiny_toy.py'
model = dict(
    type='CLIP',
    neck=None,
    head=dict(
        _delete_=True,
        type='ImageTextContrastiveHead',
        vision_dims=128,
        text_dims=128,
        embed_dims=128,
        contrastive_loss=dict(type='ImageTextContrastiveLoss', loss_weight=1.0)),
)
