# Zero-shot classification (Table 6): CUB-200-2011 test split as it ships
# (<root>/CUB_200_2011/images.txt, ...); SLIP's bird prompt.
# tools/test.py MODEL_CONFIG CHECKPOINT --benchmark configs/benchmarks/zero_shot/cub200.py
_base_ = ['../_base_/zero_shot.py']
test_dataloader = dict(
    dataset=dict(key='cub200', data_root='data/cub200/',
                 data_format='cub200', split='test'))
