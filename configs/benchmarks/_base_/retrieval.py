# Zero-shot image-text retrieval (paper Table 7): Karpathy test splits, 5 original captions
# per image (no prompt), images resized and centre-cropped to the model's input size;
# Recall@1/5/10 image->text and text->image over the whole split.
benchmark_type = 'retrieval'
image_size = 224
test_pipeline = [
    dict(type='ResizeEdge', scale=image_size, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=image_size),
    dict(type='TokenizeCaptions', context_length=77, text_key='captions'),
    dict(type='PackImageTextInputs', tokens_key='text_tokens'),
]
test_dataloader = dict(
    batch_size=64,
    num_workers=4,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='KarpathyRetrievalDataset', split='test', num_captions=5,
                 pipeline=test_pipeline),
)
test_evaluator = dict(type='ImageTextRetrievalRecall', topk=(1, 5, 10))
