# RILS ViT-B/16 -> ViTDet Mask R-CNN on LVIS v1, 25 epochs (paper Table 2).
# Long tail: repeat-factor sampling (ClassBalancedDataset, t = 1e-3; Gupta et al. 2019)
# and the Seesaw loss (Wang et al. 2021, with a normalised-linear classifier) for the
# 1203-way classification. ViTDet itself used the federated loss, which mmdet 3.3
# does not ship; Seesaw is mmdet's own LVIS loss and is what we use.
_base_ = [
    './_base_/vitdet_mask_rcnn_rils_vitb16.py', 'mmdet::_base_/datasets/lvis_v1_instance.py',
    'mmdet::_base_/default_runtime.py'
]
# rils_mm.utils.lvis_compat: PyPI lvis 0.5.3 still uses np.float (removed in NumPy 1.24)
custom_imports = dict(imports=['rils_mm', 'rils_mm.utils.lvis_compat'],
                      allow_failed_imports=False)
num_classes = 1203
image_size = (1024, 1024)
model = dict(
    roi_head=dict(
        bbox_head=dict(
            num_classes=num_classes,
            cls_predictor_cfg=dict(type='NormedLinear', tempearture=20),
            loss_cls=dict(type='SeesawLoss', p=0.8, q=2.0, num_classes=num_classes,
                          loss_weight=1.0)),
        mask_head=dict(num_classes=num_classes)),
    # LVIS evaluates up to 300 detections per image
    test_cfg=dict(rcnn=dict(score_thr=0.0001, max_per_img=300)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.1, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_type='absolute_range', crop_size=image_size,
         recompute_bbox=True, allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-2, 1e-2)),
    dict(type='Pad', size=image_size, pad_val=dict(img=(114, 114, 114))),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='Pad', size=image_size, pad_val=dict(img=(114, 114, 114))),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=4,
    dataset=dict(  # ClassBalancedDataset(oversample_thr=1e-3) from the mmdet base
        dataset=dict(pipeline=train_pipeline)))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

max_epochs = 25
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=5)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=250),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[22, 24],
         gamma=0.1),
]
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=2))
