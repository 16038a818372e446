# CLIP with ViT-B/16 (Tables 1, 9): the RILS model with the method changed only: intact view
# + text, contrastive loss; no masked view, no decoder, no L_recon.
_base_ = './rils_vitb16.py'
model = dict(
    type='CLIP',
    neck=None,
    head=dict(
        _delete_=True,
        type='ImageTextContrastiveHead',
        vision_dims=768,
        text_dims=512,
        embed_dims=512,
        init_logit_scale=1 / 0.07,
        logit_scale_max=100.0,
        contrastive_loss=dict(type='ImageTextContrastiveLoss', loss_weight=1.0, local_loss=True,
                              gather_with_grad=False)),  # official semantics, as RILS
)
