# RILS ViT-B/16 -> ViTDet Mask R-CNN on COCO, 25 epochs (paper Table 2).
_base_ = ['./_base_/vitdet_mask_rcnn_rils_vitb16.py', './_base_/coco_instance_lsj_1024.py']

max_epochs = 25
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=5)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# 250-iteration linear warm-up; x0.1 at 22/25 and 24/25 of training (ViTDet's 88/100
# and 96/100 applied to 25 epochs).
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=250),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[22, 24],
         gamma=0.1),
]
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=2))
