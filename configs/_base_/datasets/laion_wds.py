# LAION-400M image-text pairs as img2dataset WebDataset shards (10,000 pairs per shard).
# L-20M = the first 20 M pairs = shards 00000..01999 (paper Sec. 3.3). Point `data_root`
# at your shards; set `num_samples` to what your download actually holds.
data_root = 'data/laion400m/'
# No loading transform: the reader decodes each image itself (BGR, like LoadImageFromFile).
# Where decoding limits the data loader, use type='DecodeRandomResizedCrop' (same arguments)
# instead: the reader then passes the JPEG bytes and it decodes only at the scale the crop
# needs (3.5x per core on LAION-sized JPEGs; pixels differ by the DCT downscaling, manual
# docs/en/user_guides/data.md). The default is the paper's PIL decode + crop.
train_pipeline = [
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.5, 1.0)),
    dict(type='TokenizeText', context_length=77),
    dict(type='PackImageTextInputs'),
]
train_dataloader = dict(
    batch_size=128,
    num_workers=10,
    persistent_workers=True,
    pin_memory=True,
    sampler=None,  # required and None: the data set splits shards by rank and worker
    dataset=dict(
        type='WebImageTextDataset',
        urls=data_root + '{00000..01999}.tar',
        num_samples=20_000_000,
        batch_size=128,  # whole batches per worker, so len(dataloader) is exact
        resampled=False,
        shuffle_buffer=1000,
        pipeline=train_pipeline),
)
