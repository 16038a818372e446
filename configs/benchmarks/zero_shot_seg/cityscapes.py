# Zero-shot segmentation: Cityscapes val (500 images), 19 classes (short side 560, as SCLIP).
# Class names (synonyms of one class in a list) as SCLIP's configs/cls_city_scapes.txt.
#   python tools/test.py configs/benchmarks/zero_shot_seg/cityscapes.py CHECKPOINT
_base_ = ['./_base_/zero_shot_seg.py']
short_side = 560
class_names = [
    'road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'trafficlight', 'trafficsign',
    'vegetation', 'terrain', 'sky', 'person', 'rider', 'car', 'truck', 'bus', 'train',
    'motorcycle', 'bicycle',
]
model = dict(class_names=class_names)
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, short_side), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
test_dataloader = dict(
    dataset=dict(
        type='CityscapesDataset', data_root='data/cityscapes',
        data_prefix=dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val'),
        pipeline=test_pipeline))
