# Zero-shot classification (Table 6): Stanford Cars test split, torchvision layout
# (<root>/stanford_cars/).
# tools/test.py MODEL_CONFIG CHECKPOINT --benchmark configs/benchmarks/zero_shot/cars.py
_base_ = ['../_base_/zero_shot.py']
test_dataloader = dict(
    dataset=dict(key='cars', data_root='data/cars/',
                 data_format='torchvision', dataset_cls='StanfordCars',
                 dataset_kwargs=dict(split='test')))
