# Zero-shot classification (Table 6): NWPU-RESISC45 as it ships (<root>/<class>/*.jpg); class
# names from the folders.
# tools/test.py MODEL_CONFIG CHECKPOINT --benchmark configs/benchmarks/zero_shot/resisc45.py
_base_ = ['../_base_/zero_shot.py']
test_dataloader = dict(
    dataset=dict(key='resisc45', data_root='data/resisc45/NWPU-RESISC45/',
                 data_format='imagefolder'))
