# Zero-shot classification (Table 6): Food-101 test split, torchvision layout
# (<root>/food-101/meta/test.json, images/).
# tools/test.py MODEL_CONFIG CHECKPOINT --benchmark configs/benchmarks/zero_shot/food101.py
_base_ = ['../_base_/zero_shot.py']
test_dataloader = dict(
    dataset=dict(key='food101', data_root='data/food101/',
                 data_format='torchvision', dataset_cls='Food101',
                 dataset_kwargs=dict(split='test')))
