# Zero-shot segmentation: Pascal VOC 2012 val with background (VOC21), 1449 images.
# Class names (synonyms of one class in a list) as SCLIP's configs/cls_voc21.txt.
#   python tools/test.py configs/benchmarks/zero_shot_seg/voc21.py CHECKPOINT
# Background: the names of class 0 (sky, wall, tree, ...) and a 0.1 probability threshold,
# with SCLIP's area filter (0.1 of the foreground); logit scale 65.
_base_ = ['./_base_/zero_shot_seg.py']
class_names = [
    ['sky', 'wall', 'tree', 'wood', 'grass', 'road', 'sea', 'river', 'mountain', 'sands',
     'desk', 'bed', 'building', 'cloud', 'lamp', 'door', 'window', 'wardrobe', 'ceiling',
     'shelf', 'curtain', 'stair', 'floor', 'hill', 'rail', 'fence'],
    'aeroplane', 'bicycle', 'bird', 'ship', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow',
    'table', 'dog', 'horse', 'motorbike',
    ['person', 'person in shirt', 'person in jeans', 'person in dress', 'person in sweater',
     'person in skirt', 'person in jacket'],
    'pottedplant', 'sheep', 'sofa', 'train',
    ['television monitor', 'tv monitor', 'monitor', 'television', 'screen'],
]
model = dict(
    class_names=class_names, logit_scale=65.0, prob_threshold=0.1,
    area_threshold=0.1, background_index=0)
test_dataloader = dict(
    dataset=dict(
        type='PascalVOCDataset', data_root='data/VOCdevkit/VOC2012',
        data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
        ann_file='ImageSets/Segmentation/val.txt'))
