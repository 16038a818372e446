# CLIP->MIM with ViT-B/16 (Table 9): mmpretrain's EVA (random 75 % masking, MAE decoder) on
# the MAE model (mae_vitb16.py), predicting a frozen CLIP image encoder's joint-space
# features theta(f) of the masked patches (as MVP / BEiT v2 / MILAN use CLIP) with the
# cosine loss 2 - 2 cos(pred, target). `clip_checkpoint`: stage 1, the CLIP L-10M run.
_base_ = './mae_vitb16.py'
clip_checkpoint = 'work_dirs/clip_vitb16_l10m/epoch_25.pth'
model = dict(
    type='EVA',
    neck=dict(predict_feature_dim=512),
    head=dict(_delete_=True, type='MIMHead',
              loss=dict(type='CosineSimilarityLoss', shift_factor=2.0, scale_factor=2.0)),
    target_generator=dict(
        type='CLIPTeacher',
        checkpoint=clip_checkpoint,
        backbone=dict(type='RILSViT', arch='b', img_size=224, patch_size=16, qv_bias=True,
                      norm_cfg=dict(type='LN', eps=1e-6)),
        vision_dims=768,
        embed_dims=512))
