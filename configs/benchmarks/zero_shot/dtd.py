# Zero-shot classification (Table 6): DTD test split (partition 1), torchvision layout
# (<root>/dtd/).
# tools/test.py MODEL_CONFIG CHECKPOINT --benchmark configs/benchmarks/zero_shot/dtd.py
_base_ = ['../_base_/zero_shot.py']
test_dataloader = dict(
    dataset=dict(key='dtd', data_root='data/dtd/',
                 data_format='torchvision', dataset_cls='DTD',
                 dataset_kwargs=dict(split='test')))
