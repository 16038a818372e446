# Zero-shot segmentation: Pascal Context val, the 59 classes without background (Context59).
# Class names (synonyms of one class in a list) as SCLIP's configs/cls_context59.txt.
#   python tools/test.py configs/benchmarks/zero_shot_seg/context59.py CHECKPOINT
_base_ = ['./_base_/zero_shot_seg.py']
class_names = [
    'aeroplane', 'bag', 'bed', 'bedclothes', 'bench', 'bicycle', 'bird', 'boat', 'book',
    'bottle', 'building', 'bus', 'cabinet', 'car', 'cat', 'ceiling', 'chair', 'cloth',
    'computer', 'cow', 'cup', 'curtain', 'dog', 'door', 'fence', 'floor', 'flower', 'food',
    'grass', 'ground', 'horse', 'keyboard', 'light', 'motorbike', 'mountain', 'mouse', 'person',
    'plate', 'platform', 'pottedplant', 'road', 'rock', 'sheep', 'shelves', 'sidewalk', 'sign',
    'sky', 'snow', 'sofa', 'table', 'track', 'train', 'tree', 'truck', 'tvmonitor', 'wall',
    'water', 'window', 'wood',
]
model = dict(class_names=class_names)
test_dataloader = dict(
    dataset=dict(
        type='PascalContextDataset59', data_root='data/VOCdevkit/VOC2010',
        data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClassContext'),
        ann_file='ImageSets/SegmentationContext/val.txt'))
