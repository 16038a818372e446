# Zero-shot classification (Table 6): Oxford-IIIT Pets test split, torchvision layout
# (<root>/oxford-iiit-pet/).
# tools/test.py MODEL_CONFIG CHECKPOINT --benchmark configs/benchmarks/zero_shot/pets.py
_base_ = ['../_base_/zero_shot.py']
test_dataloader = dict(
    dataset=dict(key='pets', data_root='data/pets/',
                 data_format='torchvision', dataset_cls='OxfordIIITPet',
                 dataset_kwargs=dict(split='test', target_types='category')))
# mean per-class accuracy is this data set's usual metric
test_evaluator = dict(main_metric='mean_per_class')
