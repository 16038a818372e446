# Zero-shot classification (Table 6): Country211 test split, torchvision layout
# (<root>/country211/test/<code>/).
# tools/test.py MODEL_CONFIG CHECKPOINT --benchmark configs/benchmarks/zero_shot/country211.py
_base_ = ['../_base_/zero_shot.py']
test_dataloader = dict(
    dataset=dict(key='country211', data_root='data/country211/',
                 data_format='torchvision', dataset_cls='Country211',
                 dataset_kwargs=dict(split='test')))
