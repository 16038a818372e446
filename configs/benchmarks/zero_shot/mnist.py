# Zero-shot classification (Table 6): MNIST test set, torchvision layout
# (<root>/MNIST/raw/t10k-*-ubyte).
# tools/test.py MODEL_CONFIG CHECKPOINT --benchmark configs/benchmarks/zero_shot/mnist.py
_base_ = ['../_base_/zero_shot.py']
test_dataloader = dict(
    dataset=dict(key='mnist', data_root='data/mnist/',
                 data_format='torchvision', dataset_cls='MNIST',
                 dataset_kwargs=dict(train=False)))
