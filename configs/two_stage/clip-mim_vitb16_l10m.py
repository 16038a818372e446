# Table 9, CLIP->MIM: stage 1 is CLIP (configs/clip/clip_vitb16_l10m.py); this stage 2 is
# MIM against the frozen CLIP image encoder's features (as MVP / BEiT v2 / MILAN use CLIP):
# mmpretrain's EVA (random 75 % masking, MAE decoder) on the MAE L-10M config, predicting the
# teacher's joint-space features theta(f) of the masked patches with the cosine loss
# 2 - 2 cos(pred, target). No text tower, so no zero-shot evaluation.
#   tools/dist_train.sh configs/two_stage/clip-mim_vitb16_l10m.py 32 \
#       --cfg-options model.target_generator.checkpoint=work_dirs/clip_vitb16_l10m/epoch_25.pth
_base_ = '../mae/mae_vitb16_l10m.py'
clip_checkpoint = 'work_dirs/clip_vitb16_l10m/epoch_25.pth'
model = dict(
    type='EVA',
    neck=dict(predict_feature_dim=512),
    head=dict(
        _delete_=True,
        type='MIMHead',
        loss=dict(type='CosineSimilarityLoss', shift_factor=2.0, scale_factor=2.0)),
    target_generator=dict(
        type='CLIPTeacher',
        checkpoint=clip_checkpoint,
        backbone=dict(type='RILSViT', arch='b', img_size=224, patch_size=16, qv_bias=True,
                      norm_cfg=dict(type='LN', eps=1e-6)),
        vision_dims=768,
        embed_dims=512))
find_unused_parameters = True  # as mmpretrain's MILAN and EVA configs
