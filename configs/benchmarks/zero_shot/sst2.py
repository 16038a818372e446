# Zero-shot classification (Table 6): Rendered SST2 test split, torchvision layout
# (<root>/rendered-sst2/test/{negative,positive}/).
# tools/test.py MODEL_CONFIG CHECKPOINT --benchmark configs/benchmarks/zero_shot/sst2.py
_base_ = ['../_base_/zero_shot.py']
test_dataloader = dict(
    dataset=dict(key='renderedsst2', data_root='data/rendered_sst2/',
                 data_format='torchvision', dataset_cls='RenderedSST2',
                 dataset_kwargs=dict(split='test')))
