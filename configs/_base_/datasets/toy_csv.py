# The toy corpus as JPEG files + CSV (tools/make_toy_corpus.py): 64 px images of coloured
# shapes with captions, and a held-out zero-shot split. `tools/quickstart.sh` writes it to data/toy.
data_root = 'data/toy/'
image_size = 64
context_length = 32
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=image_size, crop_ratio_range=(0.5, 1.0)),
    dict(type='TokenizeText', context_length=context_length),
    dict(type='PackImageTextInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=image_size, edge='short'),
    dict(type='CenterCrop', crop_size=image_size),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=64,
    num_workers=0,
    # DefaultSampler that can start an epoch part-way (exact mid-epoch resume)
    sampler=dict(type='ResumableSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='ImageTextDataset',
        data_root=data_root,
        ann_file='train.csv',
        img_key='filepath',
        caption_key='caption',
        pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=128,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='ZeroShotClsDataset',
        data_root=data_root,
        ann_file='val.csv',
        classnames='classnames.txt',
        templates='templates.txt',
        pipeline=test_pipeline),
)
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
val_cfg = dict()
test_cfg = dict()
