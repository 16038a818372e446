# Low-shot COCO, 20% of the annotated train2017 images (paper Table 5).
_base_ = ['./_base_/vitdet_coco_lowshot_12e.py']
train_dataloader = dict(
    dataset=dict(ann_file='annotations/instances_train2017_20pct_seed0.json'))
