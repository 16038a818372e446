# Zero-shot segmentation: COCO-Object, COCO-Stuff-164k val2017 (5000 images): 80 things
# + background.
# Class names (synonyms of one class in a list) as SCLIP's configs/cls_coco_object.txt.
#   python tools/test.py configs/benchmarks/zero_shot_seg/coco_object.py CHECKPOINT
# Labels: tools/dataset_converters/coco_object.py. Background: the names of class 0 and a
# 0.1 probability threshold; logit scale 50.
_base_ = ['./_base_/zero_shot_seg.py']
class_names = [
    ['sky', 'wall', 'tree', 'wood', 'grass', 'road', 'sea', 'river', 'mountain', 'sands',
     'desk', 'bed', 'building', 'cloud', 'lamp', 'door', 'window', 'wardrobe', 'ceiling',
     'shelf', 'curtain', 'stair', 'floor', 'hill', 'rail', 'fence'],
    ['person', 'person in shirt', 'person in jeans', 'person in dress', 'person in sweater',
     'person in skirt', 'person in jacket', 'body'],
    'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat', 'traffic light',
    'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat', 'dog', 'horse',
    'sheep', 'cow', 'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella', 'handbag',
    'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball', 'kite', 'baseball bat',
    'baseball glove', 'skateboard', 'surfboard', 'tennis racket', 'bottle', 'wine glass', 'cup',
    'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple', 'sandwich', 'orange', 'broccoli',
    'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch', 'potted plant', 'bed',
    'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote', 'keyboard', 'cell phone',
    'microwave', 'oven', 'toaster', 'sink', 'refrigerator', 'book', 'clock', 'vase', 'scissors',
    'teddy bear', 'hair drier', 'toothbrush',
]
model = dict(
    class_names=class_names, logit_scale=50.0, prob_threshold=0.1, background_index=0)
test_dataloader = dict(
    dataset=dict(
        type='COCOObjectDataset', data_root='data/coco_stuff164k', reduce_zero_label=False,
        data_prefix=dict(img_path='images/val2017', seg_map_path='annotations/val2017')))
