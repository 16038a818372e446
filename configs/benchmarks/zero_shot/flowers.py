# Zero-shot classification (Table 6): Oxford Flowers-102 test split, torchvision layout
# (<root>/flowers-102/).
# tools/test.py MODEL_CONFIG CHECKPOINT --benchmark configs/benchmarks/zero_shot/flowers.py
_base_ = ['../_base_/zero_shot.py']
test_dataloader = dict(
    dataset=dict(key='flowers', data_root='data/flowers102/',
                 data_format='torchvision', dataset_cls='Flowers102',
                 dataset_kwargs=dict(split='test')))
# mean per-class accuracy is this data set's usual metric
test_evaluator = dict(main_metric='mean_per_class')
