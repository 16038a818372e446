# Low-shot COCO (paper Table 5): a seeded fraction of train2017 (written by
# tools/dataset_converters/coco_low_shot.py), fine-tuned 12 epochs instead of 25.
_base_ = ['../vitdet_mask_rcnn_rils_vitb16_coco_25e.py']
max_epochs = 12
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=4)
# mmdet's 1x schedule shape: x0.1 after epochs 8 and 11
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=250),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[8, 11],
         gamma=0.1),
]
