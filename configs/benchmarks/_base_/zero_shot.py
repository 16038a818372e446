# Zero-shot classification protocol (paper Tables 6 and 8): CLIP's prompt ensemble from
# the data set's class names and templates (clip-benchmark's shipped metadata), images
# resized (short side, bicubic) and centre-cropped to the model's input size (224 for the
# paper models; tools/test.py --benchmark fits it to the model's img_size).
# Use: python tools/test.py MODEL_CONFIG CHECKPOINT --benchmark THIS_FILE --data-root DIR
benchmark_type = 'zero_shot'
image_size = 224
test_pipeline = [
    dict(type='ResizeEdge', scale=image_size, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=image_size),
    dict(type='PackInputs'),
]
test_dataloader = dict(
    batch_size=128,
    num_workers=4,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='ZeroShotBenchmarkDataset', pipeline=test_pipeline),
)
test_evaluator = dict(type='ZeroShotAccuracy', main_metric='top1')
