# CLIP baseline (Tables 1, 9): the RILS ViT-B/16 L-20M config with the method changed only:
# intact view + text, contrastive loss; no masked view, no decoder, no L_recon.
#   tools/dist_train.sh configs/clip/clip_vitb16_l20m.py 32      (32 GPUs x 128 = 4096)
_base_ = '../rils/rils_vitb16_l20m.py'
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
