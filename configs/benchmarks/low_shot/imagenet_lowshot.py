# Low-shot ImageNet-1K (paper Table 4): 1, 2, 5, 10 train images per class, multinomial
# logistic regression (scikit-learn, L-BFGS) on frozen, L2-normalised encoder features,
# 3 seeds, top-1 on the whole validation split (mean +- std over seeds).
# python tools/low_shot.py MODEL_CONFIG CHECKPOINT --benchmark THIS_FILE
benchmark_type = 'low_shot'
image_size = 224
shots = (1, 2, 5, 10)
seeds = (0, 1, 2)
C = 1.0  # inverse L2 strength of LogisticRegression
max_iter = 1000
batch_size = 128
test_pipeline = [
    dict(type='ResizeEdge', scale=image_size, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=image_size),
    dict(type='PackInputs'),
]
train_dataset = dict(type='ZeroShotBenchmarkDataset', key='imagenet1k',
                     data_root='data/imagenet/train/', data_format='imagefolder',
                     folder_labels='wnid', pipeline=test_pipeline)
test_dataset = dict(type='ZeroShotBenchmarkDataset', key='imagenet1k',
                    data_root='data/imagenet/val/', data_format='imagefolder',
                    folder_labels='wnid', pipeline=test_pipeline)
