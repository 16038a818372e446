# Zero-shot classification (Table 6): FGVC-Aircraft test split, variant level, torchvision
# layout (<root>/fgvc-aircraft-2013b/).
# tools/test.py MODEL_CONFIG CHECKPOINT --benchmark configs/benchmarks/zero_shot/aircraft.py
_base_ = ['../_base_/zero_shot.py']
test_dataloader = dict(
    dataset=dict(key='fgvc_aircraft', data_root='data/fgvc_aircraft/',
                 data_format='torchvision', dataset_cls='FGVCAircraft',
                 dataset_kwargs=dict(split='test', annotation_level='variant')))
# mean per-class accuracy is this data set's usual metric
test_evaluator = dict(main_metric='mean_per_class')
