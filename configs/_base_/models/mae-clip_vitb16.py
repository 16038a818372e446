# MAE+CLIP with ViT-B/16 (Fig. 2, Tables 1 and 10 "raw pixel space"): the RILS model with the
# reconstruction target changed only: RILS' 1-block decoder predicts the normalised pixels of
# the masked patches (MAE's loss, `pixel_head`), the intact view gives L_contra (the CLIP
# head, clip_vitb16.py); the two are summed.
_base_ = './rils_vitb16.py'
model = dict(
    type='MAECLIP',
    neck=dict(predict_feature_dim=16 * 16 * 3),
    head=dict(
        _delete_=True, type='ImageTextContrastiveHead', vision_dims=768, text_dims=512,
        embed_dims=512, init_logit_scale=1 / 0.07, logit_scale_max=100.0,
        contrastive_loss=dict(type='ImageTextContrastiveLoss', loss_weight=1.0, local_loss=True,
                              gather_with_grad=False)),  # official semantics, as RILS
    pixel_head=dict(type='MAEPretrainHead', norm_pix=True, patch_size=16,
                    loss=dict(type='PixelReconstructionLoss', criterion='L2')),
    pixel_loss_weight=1.0,
)
