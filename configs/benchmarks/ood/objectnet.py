# Zero-shot out-of-distribution classification (Table 8): ObjectNet 1.0 as it ships
# (<root>/objectnet-1.0/images/, mappings/*.json copied to <root>), its 113 classes that map
# to ImageNet, read by clip-benchmark's ObjectNetDataset; ImageNet templates.
# tools/test.py MODEL_CONFIG CHECKPOINT --benchmark configs/benchmarks/ood/objectnet.py
_base_ = ['../_base_/zero_shot.py']
test_dataloader = dict(
    dataset=dict(key='objectnet', data_root='data/objectnet/',
                 data_format='torchvision',
                 dataset_cls='clip_benchmark.datasets.objectnet.ObjectNetDataset'))
