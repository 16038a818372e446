# Zero-shot classification (Table 6): CIFAR-100 test batch, torchvision layout
# (<root>/cifar-100-python/).
# tools/test.py MODEL_CONFIG CHECKPOINT --benchmark configs/benchmarks/zero_shot/cifar100.py
_base_ = ['../_base_/zero_shot.py']
test_dataloader = dict(
    dataset=dict(key='cifar100', data_root='data/cifar100/',
                 data_format='torchvision', dataset_cls='CIFAR100',
                 dataset_kwargs=dict(train=False)))
