# Table 9, MIM->LiT: stage 1 is MAE (configs/mae/mae_vitb16_l10m.py); this stage 2 is
# locked-image text tuning: MIM->CLIP (mim-clip_vitb16_l10m.py: the CLIP L-10M config with the
# image encoder initialised from the MAE checkpoint) with that encoder frozen (LiT); theta,
# phi, sigma and the text encoder are trained.
#   tools/dist_train.sh configs/two_stage/mim-lit_vitb16_l10m.py 32 \
#       --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/mae_vitb16_l10m/epoch_25.pth
_base_ = './mim-clip_vitb16_l10m.py'
model = dict(freeze_backbone=True)
