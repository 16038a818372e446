# The quick-start model (rils_vittiny_toy.py) trained from the toy corpus's WebDataset
# shards instead of its CSV: the same reader, pipeline and loader settings as the LAION
# configs (configs/_base_/datasets/laion_wds.py), at toy size. tools/quickstart.py and
# tools/make_toy_corpus.py write the shards next to the CSV, in img2dataset's layout
# (KEY.jpg, KEY.txt, KEY.json):
#
#   python tools/make_toy_corpus.py data/toy
#   python tools/train.py configs/rils/rils_vittiny_toy_wds.py
#
# For your own img2dataset download, point `urls` at its shards and set `num_samples` to the
# number of pairs it holds (img2dataset prints it; it is the sum of the "successes" in the
# *_stats.json files next to the tars), e.g.
#   --cfg-options train_dataloader.dataset.urls='data/laion/{00000..00099}.tar' \
#                 train_dataloader.dataset.num_samples=812345
_base_ = ['./rils_vittiny_toy.py']

data_root = 'data/toy/'
image_size = 64
context_length = 32
batch_size = 64
# No loading transform: WebImageTextDataset decodes each image itself (BGR, like
# LoadImageFromFile), and a sample's caption comes from its .txt member.
train_pipeline = [
    dict(type='RandomResizedCrop', scale=image_size, crop_ratio_range=(0.5, 1.0)),
    dict(type='TokenizeText', context_length=context_length),
    dict(type='PackImageTextInputs'),
]
train_dataloader = dict(
    _delete_=True,
    batch_size=batch_size,
    num_workers=0,  # LAION: 10 workers, persistent; >= 1 shard per rank and worker
    sampler=None,  # required and None: the data set splits shards by rank and worker
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='WebImageTextDataset',
        urls=data_root + 'shards/train-{000000..000003}.tar',  # 4 shards x 500 pairs
        num_samples=2000,  # pairs per epoch over all ranks
        batch_size=batch_size,  # whole batches only, so len(dataloader) is exact
        resampled=False,  # one pass over the shards per epoch (True: draw shards)
        shuffle_buffer=500,
        pipeline=train_pipeline),
)
