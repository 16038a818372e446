# Zero-shot classification (Table 6): ImageNet-1K validation set, one folder per WordNet id
# (<root>/n01440764/*.JPEG).
# tools/test.py MODEL_CONFIG CHECKPOINT --benchmark configs/benchmarks/zero_shot/imagenet.py
_base_ = ['../_base_/zero_shot.py']
test_dataloader = dict(
    dataset=dict(key='imagenet1k', data_root='data/imagenet/val/',
                 data_format='imagefolder', folder_labels='wnid'))
