# Zero-shot classification (Table 6): SUN397, torchvision layout (<root>/SUN397/ClassName.txt,
# a/abbey/...), all images as clip-benchmark.
# tools/test.py MODEL_CONFIG CHECKPOINT --benchmark configs/benchmarks/zero_shot/sun397.py
_base_ = ['../_base_/zero_shot.py']
test_dataloader = dict(
    dataset=dict(key='sun397', data_root='data/sun397/',
                 data_format='torchvision', dataset_cls='SUN397'))
