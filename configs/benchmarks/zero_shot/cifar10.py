# Zero-shot classification (Table 6): CIFAR-10 test batch, torchvision layout
# (<root>/cifar-10-batches-py/).
# tools/test.py MODEL_CONFIG CHECKPOINT --benchmark configs/benchmarks/zero_shot/cifar10.py
_base_ = ['../_base_/zero_shot.py']
test_dataloader = dict(
    dataset=dict(key='cifar10', data_root='data/cifar10/',
                 data_format='torchvision', dataset_cls='CIFAR10',
                 dataset_kwargs=dict(train=False)))
