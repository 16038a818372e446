# Table 9, MIM->CLIP: stage 1 is MAE (configs/mae/mae_vitb16_l10m.py); this stage 2 is full
# CLIP training on L-10M from the MAE encoder (the CLIP config with a Pretrained init).
#   tools/dist_train.sh configs/two_stage/mim-clip_vitb16_l10m.py 32 \
#       --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/mae_vitb16_l10m/epoch_25.pth
_base_ = '../clip/clip_vitb16_l10m.py'
mae_checkpoint = 'work_dirs/mae_vitb16_l10m/epoch_25.pth'
model = dict(
    backbone=dict(
        init_cfg=dict(_delete_=True, type='Pretrained', checkpoint=mae_checkpoint,
                      prefix='backbone.')))
