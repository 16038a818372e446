# Zero-shot classification (Table 6): GTSRB test set, torchvision layout
# (<root>/gtsrb/GTSRB/Final_Test/, GT-final_test.csv).
# tools/test.py MODEL_CONFIG CHECKPOINT --benchmark configs/benchmarks/zero_shot/gtsrb.py
_base_ = ['../_base_/zero_shot.py']
test_dataloader = dict(
    dataset=dict(key='gtsrb', data_root='data/gtsrb/',
                 data_format='torchvision', dataset_cls='GTSRB',
                 dataset_kwargs=dict(split='test')))
