# Zero-shot out-of-distribution classification (Table 8): ImageNet-Sketch as it ships
# (<root>/<wnid>/*.JPEG), 1000 classes.
# tools/test.py MODEL_CONFIG CHECKPOINT --benchmark configs/benchmarks/ood/imagenet_sketch.py
_base_ = ['../_base_/zero_shot.py']
test_dataloader = dict(
    dataset=dict(key='imagenet1k', data_root='data/imagenet-sketch/sketch/',
                 data_format='imagefolder', folder_labels='wnid'))
