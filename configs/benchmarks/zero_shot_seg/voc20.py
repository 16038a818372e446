# Zero-shot segmentation: Pascal VOC 2012 val without background (VOC20): background pixels ignored.
# Class names (synonyms of one class in a list) as SCLIP's configs/cls_voc20.txt.
#   python tools/test.py configs/benchmarks/zero_shot_seg/voc20.py CHECKPOINT
_base_ = ['./_base_/zero_shot_seg.py']
class_names = [
    'aeroplane', 'bicycle', 'bird', 'ship', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow',
    'table', 'dog', 'horse', 'motorbike',
    ['person', 'person in shirt', 'person in jeans', 'person in dress', 'person in sweater',
     'person in skirt', 'person in jacket'],
    'pottedplant', 'sheep', 'sofa', 'train',
    ['television monitor', 'tv monitor', 'monitor', 'television', 'screen'],
]
model = dict(class_names=class_names)
test_dataloader = dict(
    dataset=dict(
        type='PascalVOC20Dataset', data_root='data/VOCdevkit/VOC2012',
        data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
        ann_file='ImageSets/Segmentation/val.txt'))
