# RILS ViT-B/16 -> ViTDet Mask R-CNN on LVIS v1, 25 epochs (paper Table 2).
# Long tail: repeat-factor sampling (ClassBalancedDataset, t = 1e-3; Gupta et al. 2019)
# and the Seesaw loss (Wang et al. 2021, with a normalised-linear classifier) for the
# 1203-way classification. ViTDet itself used the federated loss, which mmdet 3.3
# does not ship; Seesaw is mmdet's own LVIS loss and is what we use.
_base_ = [
    './_base_/vitdet_mask_rcnn_rils_vitb16.py', 'mmdet::_base_/datasets/lvis_v1_instance.py',
    'mmdet::_base_/default_runtime.py', './_base_/lsj_1024.py', './_base_/schedule_25e.py'
]
# rils_mm.utils.lvis_compat: PyPI lvis 0.5.3 still uses np.float (removed in NumPy 1.24)
custom_imports = dict(imports=['rils_mm', 'rils_mm.utils.lvis_compat'],
                      allow_failed_imports=False)
num_classes = 1203
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

train_pipeline = {{_base_.lsj_train_pipeline}}
test_pipeline = {{_base_.lsj_test_pipeline}}
train_dataloader = dict(
    batch_size=4,
    num_workers=4,
    dataset=dict(  # ClassBalancedDataset(oversample_thr=1e-3) from the mmdet base
        dataset=dict(pipeline=train_pipeline)))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=2))
