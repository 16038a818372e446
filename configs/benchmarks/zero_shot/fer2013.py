# Zero-shot classification (Table 6): FER2013 test images as the Kaggle archive ships them
# (<root>/<emotion>/*.jpg), as clip-benchmark reads them.
# tools/test.py MODEL_CONFIG CHECKPOINT --benchmark configs/benchmarks/zero_shot/fer2013.py
_base_ = ['../_base_/zero_shot.py']
test_dataloader = dict(
    dataset=dict(key='fer2013', data_root='data/fer2013/test/',
                 data_format='imagefolder'))
