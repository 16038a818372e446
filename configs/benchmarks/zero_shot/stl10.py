# Zero-shot classification (Table 6): STL-10 test split, torchvision layout
# (<root>/stl10_binary/).
# tools/test.py MODEL_CONFIG CHECKPOINT --benchmark configs/benchmarks/zero_shot/stl10.py
_base_ = ['../_base_/zero_shot.py']
test_dataloader = dict(
    dataset=dict(key='stl10', data_root='data/stl10/',
                 data_format='torchvision', dataset_cls='STL10',
                 dataset_kwargs=dict(split='test')))
