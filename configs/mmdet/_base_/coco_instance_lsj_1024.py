# COCO instances with the large-scale-jitter pipelines at 1024 (ViTDet, ./lsj_1024.py).
_base_ = [
    'mmdet::_base_/datasets/coco_instance.py', 'mmdet::_base_/default_runtime.py', './lsj_1024.py'
]
train_pipeline = {{_base_.lsj_train_pipeline}}
test_pipeline = {{_base_.lsj_test_pipeline}}
train_dataloader = dict(
    batch_size=4,
    num_workers=4,
    dataset=dict(filter_cfg=dict(filter_empty_gt=True, min_size=32), pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
