# Zero-shot classification (Table 6): EuroSAT RGB, torchvision layout
# (<root>/eurosat/2750/<class>/).
# tools/test.py MODEL_CONFIG CHECKPOINT --benchmark configs/benchmarks/zero_shot/eurosat.py
_base_ = ['../_base_/zero_shot.py']
test_dataloader = dict(
    dataset=dict(key='eurosat', data_root='data/eurosat/',
                 data_format='torchvision', dataset_cls='EuroSAT'))
