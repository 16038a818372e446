# Zero-shot classification (Table 6): Caltech-101 with its background class (clip-benchmark's
# reader; <root>/caltech101/101_ObjectCategories/).
# tools/test.py MODEL_CONFIG CHECKPOINT --benchmark configs/benchmarks/zero_shot/caltech101.py
_base_ = ['../_base_/zero_shot.py']
test_dataloader = dict(
    dataset=dict(key='caltech101', data_root='data/caltech101/',
                 data_format='torchvision',
                 dataset_cls='clip_benchmark.datasets.caltech101.Caltech101',
                 dataset_kwargs=dict(target_type='category')))
# mean per-class accuracy is this data set's usual metric
test_evaluator = dict(main_metric='mean_per_class')
