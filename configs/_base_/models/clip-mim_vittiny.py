# The tiny CLIP->MIM: the tiny MAE student (mae_vittiny.py) predicts the frozen toy CLIP's
# features, as clip-mim_vitb16.py.
_base_ = './mae_vittiny.py'
clip_checkpoint = 'work_dirs/clip_vittiny_toy/epoch_10.pth'
model = dict(
    type='EVA',
    neck=dict(predict_feature_dim=128),
    head=dict(_delete_=True, type='MIMHead',
              loss=dict(type='CosineSimilarityLoss', shift_factor=2.0, scale_factor=2.0)),
    target_generator=dict(
        type='CLIPTeacher', checkpoint=clip_checkpoint,
        backbone=dict(
            type='RILSViT',
            arch=dict(embed_dims=128, num_layers=4, num_heads=4, feedforward_channels=512),
            img_size=64, patch_size=8, qv_bias=True, norm_cfg=dict(type='LN', eps=1e-6)),
        vision_dims=128, embed_dims=128))
