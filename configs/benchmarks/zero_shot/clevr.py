# Zero-shot classification (Table 6): CLEVR counts (3-10 objects), validation split of CLEVR
# v1.0 (the test split has no labels), torchvision layout (<root>/clevr/).
# tools/test.py MODEL_CONFIG CHECKPOINT --benchmark configs/benchmarks/zero_shot/clevr.py
_base_ = ['../_base_/zero_shot.py']
test_dataloader = dict(
    dataset=dict(key='clevr_count_all', data_root='data/clevr/',
                 data_format='torchvision', dataset_cls='CLEVRClassification',
                 dataset_kwargs=dict(split='val'), label_offset=3))
