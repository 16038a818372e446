# Zero-shot out-of-distribution classification (Table 8): ImageNet-A (200 classes) as it ships
# (<root>/<wnid>/*.jpg); scored over its 200 classes.
# tools/test.py MODEL_CONFIG CHECKPOINT --benchmark configs/benchmarks/ood/imagenet_a.py
_base_ = ['../_base_/zero_shot.py']
test_dataloader = dict(
    dataset=dict(key='imagenet1k', data_root='data/imagenet-a/',
                 data_format='imagefolder', folder_labels='wnid',
                 wnid_subset='imagenet-a'))
