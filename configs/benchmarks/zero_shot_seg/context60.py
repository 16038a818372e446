# Zero-shot segmentation: Pascal Context val (5104 images), 59 classes + background (Context60).
# Class names (synonyms of one class in a list) as SCLIP's configs/cls_context60.txt.
#   python tools/test.py configs/benchmarks/zero_shot_seg/context60.py CHECKPOINT
# Background: the name 'background' and a 0.1 probability threshold; logit scale 50.
_base_ = ['./_base_/zero_shot_seg.py']
class_names = [
    'background', 'aeroplane', 'bag', 'bed', 'bedclothes', 'bench', 'bicycle', 'bird', 'boat',
    'book', 'bottle', 'building', 'bus', 'cabinet', 'car', 'cat', 'ceiling', 'chair', 'cloth',
    'computer', 'cow', 'cup', 'curtain', 'dog', 'door', 'fence', 'floor', 'flower', 'food',
    'grass', 'ground', 'horse', 'keyboard', 'light', 'motorbike', 'mountain', 'mouse', 'person',
    'plate', 'platform', 'pottedplant', 'road', 'rock', 'sheep', 'shelves', 'sidewalk', 'sign',
    'sky', 'snow', 'sofa', 'table', 'track', 'train', 'tree', 'truck', 'tvmonitor', 'wall',
    'water', 'window', 'wood',
]
model = dict(
    class_names=class_names, logit_scale=50.0, prob_threshold=0.1, background_index=0)
test_dataloader = dict(
    dataset=dict(
        type='PascalContextDataset', data_root='data/VOCdevkit/VOC2010',
        data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClassContext'),
        ann_file='ImageSets/SegmentationContext/val.txt'))
