# Zero-shot out-of-distribution classification (Table 8): ImageNet-V2 matched-frequency as it
# ships (<root>/<class index>/*.jpeg), 1000 classes.
# tools/test.py MODEL_CONFIG CHECKPOINT --benchmark configs/benchmarks/ood/imagenetv2.py
_base_ = ['../_base_/zero_shot.py']
test_dataloader = dict(
    dataset=dict(key='imagenet1k',
                 data_root='data/imagenetv2/imagenetv2-matched-frequency-format-val/',
                 data_format='imagefolder', folder_labels='index'))
