# RILS ViT-B/16 -> ViTDet Mask R-CNN on COCO, 25 epochs (paper Table 2).
_base_ = [
    './_base_/vitdet_mask_rcnn_rils_vitb16.py', './_base_/coco_instance_lsj_1024.py',
    './_base_/schedule_25e.py'
]
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=2))
