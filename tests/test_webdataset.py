"""Tests for WebImageTextDataset (real tar shards in the img2dataset layout)."""
import io
import json
import tarfile
from collections import Counter
from types import SimpleNamespace
from unittest.mock import patch

import numpy as np
import open_clip
import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from mmpretrain.registry import DATASETS, HOOKS, TRANSFORMS
from mmpretrain.structures import DataSample
from PIL import Image
from torch.utils.data import DataLoader

from rils_mm.datasets.transforms import get_clip_tokenizer
from rils_mm.datasets.webdataset import WebImageTextDataset
from rils_mm.engine.hooks import WebDatasetEpochHook
from rils_mm.engine.hooks.data_skip_hook import DataSkipCounterHook
from rils_mm.testing import ImageToyModel, write_tar_shard
from rils_mm.testing.shards import add_tar_member

PIPELINE = [dict(type='TokenizeText'), dict(type='PackImageTextInputs')]


@pytest.fixture(scope='module', autouse=True)
def tokenizer_loaded():
    # Build the tokenizer before DataLoader workers fork, so that they do not
    # each import open_clip again.
    get_clip_tokenizer()


def encode(rgb, fmt='JPEG', size=(8, 6)) -> bytes:
    buf = io.BytesIO()
    Image.new('RGB', size, rgb).save(buf, format=fmt)
    return buf.getvalue()


def make_shards(folder, sizes):
    """Shards of good samples; caption 'sample <shard> <i>'."""
    urls = []
    for s, n in enumerate(sizes):
        members = []
        for i in range(n):
            key = f'{s:03d}{i:03d}'
            members += [(f'{key}.jpg', encode((s * 20 % 256, i * 30, 90))),
                        (f'{key}.txt', f'sample {s} {i}'.encode()),
                        (f'{key}.json', json.dumps({'key': key}).encode())]
        urls.append(write_tar_shard(folder / f'train-{s:06d}.tar', members))
    return urls


def keys_of(samples):
    return [s['data_samples'].img_path.split('#')[1] for s in samples]


def run_loader(ds, num_workers, **kw):
    loader = DataLoader(ds, batch_size=None, num_workers=num_workers, **kw)
    return list(loader)


@pytest.mark.slow  # loader workers
def test_epoch_mode_2_ranks_2_workers_covers_every_sample_once(tmp_path):
    make_shards(tmp_path, [3] * 8)
    pattern = str(tmp_path / 'train-{000000..000007}.tar')
    all_keys = {f'{s:03d}{i:03d}' for s in range(8) for i in range(3)}
    per_epoch = {}
    for epoch in (0, 1):
        seen = []
        for rank in (0, 1):
            ds = WebImageTextDataset(
                pattern, num_samples=24, pipeline=PIPELINE, rank=rank,
                world_size=2, shuffle_buffer=4)
            assert len(ds) == 12
            ds.set_epoch(epoch)
            samples = run_loader(ds, num_workers=2)
            assert len(samples) == 12
            seen += keys_of(samples)
        assert Counter(seen) == Counter(all_keys)  # each exactly once
        per_epoch[epoch] = seen
    assert per_epoch[0] != per_epoch[1]

    # Reproducible: same seed and epoch -> same sequence; other seed differs.
    def sequence(seed, epoch=1):
        ds = WebImageTextDataset(pattern, num_samples=24, pipeline=PIPELINE,
                                 rank=0, world_size=2, seed=seed,
                                 shuffle_buffer=4)
        ds.set_epoch(epoch)
        return keys_of(run_loader(ds, num_workers=2))

    assert sequence(0) == per_epoch[1][:12]
    assert sequence(1) != per_epoch[1][:12]


def test_shard_order_per_epoch_and_auto_advance(tmp_path):
    urls = make_shards(tmp_path, [2] * 6)

    def shard_order(samples):
        order = []
        for s in samples:
            shard = s['data_samples'].img_path.split('#')[0]
            if not order or order[-1] != shard:
                order.append(shard)
        return order

    ds = WebImageTextDataset(urls, num_samples=12, pipeline=PIPELINE,
                             shuffle_buffer=0)
    epochs = [list(ds) for _ in range(3)]  # __iter__ auto-advances the epoch
    orders = [shard_order(e) for e in epochs]
    assert all(sorted(o) == sorted(urls) for o in orders)
    assert orders[0] != orders[1] and orders[1] != orders[2]
    # Within a shard, samples keep their order when shuffle_buffer=0.
    assert keys_of(epochs[0])[:2] == [keys_of(epochs[0])[0][:3] + '000',
                                      keys_of(epochs[0])[0][:3] + '001']
    fresh = WebImageTextDataset(urls, num_samples=12, pipeline=PIPELINE,
                                shuffle_buffer=0)
    fresh.set_epoch(2)
    assert shard_order(list(fresh)) == orders[2]
    fixed = WebImageTextDataset(urls, num_samples=12, pipeline=PIPELINE,
                                shuffle_buffer=0, shuffle_shards=False)
    assert shard_order(list(fixed)) == urls == shard_order(list(fixed))


@pytest.mark.slow  # loader workers
def test_set_epoch_reaches_persistent_workers(tmp_path):
    urls = make_shards(tmp_path, [2] * 4)
    kw = dict(num_samples=8, pipeline=PIPELINE, shuffle_buffer=3)
    ds = WebImageTextDataset(urls, **kw)
    loader = DataLoader(ds, batch_size=None, num_workers=2,
                        persistent_workers=True)
    first = keys_of(list(loader))
    second = keys_of(list(loader))  # auto-advanced to epoch 1 in the workers
    ds.set_epoch(7)
    seventh = keys_of(list(loader))

    def reference(epoch):
        ref = WebImageTextDataset(urls, **kw)
        ref.set_epoch(epoch)
        return keys_of(run_loader(ref, num_workers=2))

    assert first == reference(0)
    assert second == reference(1)
    assert seventh == reference(7)
    assert len({tuple(first), tuple(second), tuple(seventh)}) == 3


def test_uneven_shards_give_equal_epochs(tmp_path):
    urls = make_shards(tmp_path, [5, 1, 3, 3])
    counts = []
    for rank in (0, 1):
        ds = WebImageTextDataset(urls, num_samples=12, pipeline=PIPELINE,
                                 rank=rank, world_size=2, shuffle_buffer=0)
        for epoch in range(3):
            ds.set_epoch(epoch)
            counts.append(len(list(ds)))
    assert counts == [6] * 6


@pytest.mark.slow  # loader workers
def test_resampled_mode_yields_declared_count(tmp_path):
    urls = make_shards(tmp_path, [3, 3, 3])
    for rank in (0, 1):
        ds = WebImageTextDataset(urls, num_samples=51, pipeline=PIPELINE,
                                 resampled=True, rank=rank, world_size=2)
        assert len(ds) == 25
        samples = run_loader(ds, num_workers=2)
        assert len(samples) == 25  # more than the 9 distinct samples
        assert set(keys_of(samples)) <= {f'{s:03d}{i:03d}' for s in range(3)
                                         for i in range(3)}
    # With batch_size every worker ends on a full batch: len(loader) is exact.
    ds = WebImageTextDataset(urls, num_samples=50, pipeline=PIPELINE,
                             resampled=True, rank=0, world_size=2,
                             batch_size=4)
    assert len(ds) == 24 and ds.worker_share(0, 2) == 12
    assert ds.worker_share(1, 2) == 12
    loader = DataLoader(ds, batch_size=4, num_workers=2,
                        collate_fn=pseudo_collate)
    batches = list(loader)
    assert len(batches) == len(loader) == 6
    assert all(len(b['data_samples']) == 4 for b in batches)


def test_broken_members_are_skipped_and_counted(tmp_path):
    good = encode((255, 0, 0))
    members = [
        ('a0.jpg', good), ('a0.txt', b'first good'),
        ('b1.jpg', good[:len(good) // 2]), ('b1.txt', b'truncated'),
        ('b2.jpg', b'plain text renamed to jpg'), ('b2.txt', b'text file'),
        ('b3.txt', b'no image member'), ('b3.json', b'{}'),
        ('b4.jpg', good),  # no caption member
        ('b5.jpg', good), ('b5.txt', b'   \n'),
        ('b6.jpg', good), ('b6.txt', b'\xff\xfe bad utf8'),
        ('c7.png', encode((0, 0, 255), 'PNG')), ('c7.txt', b'second good'),
    ]
    url = write_tar_shard(tmp_path / 'broken.tar', members)
    ds = DATASETS.build(
        dict(type='WebImageTextDataset', urls=url, num_samples=2,
             pipeline=PIPELINE, shuffle_buffer=0))
    first, second = list(ds)
    assert first['data_samples'].num_skipped == 0
    assert first['data_samples'].skip_reasons == []
    meta = second['data_samples'].metainfo
    assert meta['img_path'] == f'{url}#c7'
    assert torch.equal(second['data_samples'].text_tokens,
                       open_clip.tokenize(['second good'])[0])
    assert second['inputs'][0].eq(255).all()  # blue PNG -> BGR channel 0
    assert meta['num_skipped'] == 6
    reasons = meta['skip_reasons']
    expected = [('corrupt image', 'b1'), ('corrupt image', 'b2'),
                ('missing image', 'b3'), ('missing caption', 'b4'),
                ('empty caption', 'b5'), ('not UTF-8', 'b6')]
    for reason, (kind, key) in zip(reasons, expected):
        assert reason.startswith(f'{kind}: {url}#{key}'), reason
    assert reasons[1].endswith('(cannot identify image file)')  # no reprs
    assert reasons[5].endswith('(byte 0xff at offset 0)')
    assert meta['skip_kinds'] == {'corrupt image': 2, 'missing image': 1, 'missing caption': 1,
                                  'empty caption': 1, 'not UTF-8': 1}
    assert not meta['is_repeat']


def test_mostly_broken_stream_raises(tmp_path):
    members = []
    for i in range(30):
        members += [(f'{i:04d}.jpg', b'garbage'), (f'{i:04d}.txt', b'cap')]
    url = write_tar_shard(tmp_path / 'bad.tar', members)
    ds = WebImageTextDataset(url, num_samples=5, pipeline=PIPELINE,
                             shuffle_buffer=0, max_consecutive_failures=10)
    with pytest.raises(RuntimeError, match='consecutive samples failed') as e:
        list(ds)
    assert f'{url}#0010' in str(e.value)  # the 11th failure names its key

    # A shard that is not a tar at all, and shards without samples, also end
    # with a clear error instead of looping forever.
    not_tar = tmp_path / 'not_tar.tar'
    not_tar.write_bytes(b'definitely not a tar file' * 100)
    with pytest.raises(RuntimeError, match='not_tar.tar'):
        list(WebImageTextDataset(str(not_tar), num_samples=5,
                                 pipeline=PIPELINE))
    empty = write_tar_shard(tmp_path / 'empty.tar', [])
    with pytest.raises(RuntimeError, match='yielded no samples'):
        list(WebImageTextDataset(empty, num_samples=5, pipeline=PIPELINE))


def test_decoded_image_matches_load_image_from_file(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (10, 14, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format='PNG')
    (tmp_path / 'x.png').write_bytes(buf.getvalue())
    url = write_tar_shard(tmp_path / 's.tar', [('x.png', buf.getvalue()),
                                           ('x.txt', b'noise')])
    ds = WebImageTextDataset(url, num_samples=1, pipeline=PIPELINE)
    (out, ) = list(ds)
    for backend in ('cv2', 'pillow'):
        load = TRANSFORMS.build(
            dict(type='LoadImageFromFile', imdecode_backend=backend))
        ref = load(dict(img_path=str(tmp_path / 'x.png')))['img']
        assert torch.equal(out['inputs'], torch.from_numpy(
            np.ascontiguousarray(ref.transpose(2, 0, 1))))
    assert out['inputs'].dtype == torch.uint8
    assert torch.equal(out['inputs'][0], torch.from_numpy(rgb[..., 2]))


def test_decode_random_resized_crop_first_gets_the_encoded_bytes(tmp_path):
    """With DecodeRandomResizedCrop first, the reader hands it the bytes: its plain
    path equals reader-decoding + RandomResizedCrop, its draft path decodes at a
    reduced scale, and a truncated JPEG is still skipped and counted."""
    rng = np.random.default_rng(0)
    members = []
    for i in range(4):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(
            buf, format='JPEG', quality=90)
        data = buf.getvalue()
        if i == 1:
            data = data[:len(data) // 2]  # a truncated download
        members += [(f'{i:04d}.jpg', data), (f'{i:04d}.txt', f'caption {i}'.encode())]
    url = write_tar_shard(tmp_path / 's.tar', members)

    def read(first):
        np.random.seed(0)
        ds = WebImageTextDataset(url, num_samples=3, pipeline=[first, *PIPELINE],
                                 shuffle_buffer=0)
        return ds, list(ds)

    _, ref = read(dict(type='RandomResizedCrop', scale=32))
    ds, plain = read(dict(type='DecodeRandomResizedCrop', scale=32, draft=False))
    assert ds.decode_in_pipeline
    assert keys_of(plain) == keys_of(ref) == ['0000', '0002', '0003']
    for a, b in zip(plain, ref):
        assert torch.equal(a['inputs'], b['inputs'])
    _, draft = read(dict(type='DecodeRandomResizedCrop', scale=32))
    assert keys_of(draft) == ['0000', '0002', '0003']
    assert all(s['inputs'].shape == (3, 32, 32) for s in draft)
    for samples in (ref, plain, draft):
        meta = samples[1]['data_samples'].metainfo
        assert meta['num_skipped'] == 1
        assert meta['skip_reasons'][0].startswith(f'corrupt image: {url}#0001')
    assert not torch.equal(draft[0]['inputs'], plain[0]['inputs'])  # reduced decode
    with pytest.raises(ValueError, match=r'pipeline\[1\] is DecodeRandomResizedCrop'):
        WebImageTextDataset(url, num_samples=3, pipeline=[
            dict(type='TokenizeText'), dict(type='DecodeRandomResizedCrop', scale=32),
            dict(type='PackImageTextInputs')])


def test_url_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='None of the 2 shards'):
        WebImageTextDataset(str(tmp_path / 'x-{0..1}.tar'), num_samples=2)
    urls = make_shards(tmp_path, [2])
    with patch('rils_mm.datasets.webdataset.urls.print_log') as log:
        ds = WebImageTextDataset([urls[0], str(tmp_path / 'gone.tar')],
                                 num_samples=2, pipeline=PIPELINE)
    assert ds.urls == urls and 'gone.tar' in log.call_args[0][0]
    # Fewer shards than rank x worker slots in epoch mode: clear error.
    ds = WebImageTextDataset(urls, num_samples=4, pipeline=PIPELINE, rank=1,
                             world_size=2)
    with pytest.raises(ValueError, match='cannot be split'):
        list(ds)
    with pytest.raises(ValueError, match='no samples per rank'):
        WebImageTextDataset(urls, num_samples=3, batch_size=4, rank=0,
                            world_size=2)


@pytest.fixture
def mmpretrain_scope():
    # Runner.build_dataloader resolves types in the default scope, which an
    # mmpretrain config sets with default_scope = 'mmpretrain'.
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        yield


@pytest.mark.slow  # loader workers
def test_mmengine_build_dataloader_and_epoch_hook(tmp_path, mmpretrain_scope):
    make_shards(tmp_path, [4] * 4)
    cfg = dict(
        batch_size=4,
        num_workers=2,
        persistent_workers=True,
        sampler=None,
        dataset=dict(
            type='WebImageTextDataset',
            urls=str(tmp_path / 'train-{000000..000003}.tar'),
            num_samples=16,
            batch_size=4,
            pipeline=PIPELINE))
    loader = Runner.build_dataloader(cfg, seed=0)
    assert isinstance(loader.dataset, WebImageTextDataset)
    assert len(loader) == 4
    batches = list(loader)
    assert len(batches) == 4
    assert all(isinstance(s, DataSample) for b in batches
               for s in b['data_samples'])
    assert sorted(s.img_path.split('#')[1] for b in batches
                  for s in b['data_samples']) == sorted(
                      f'{s:03d}{i:03d}' for s in range(4) for i in range(4))
    # The `sampler` key is mandatory for mmengine's build_dataloader.
    with pytest.raises(KeyError, match='sampler'):
        Runner.build_dataloader({k: v for k, v in cfg.items()
                                 if k != 'sampler'})

    def batch_keys(batches):
        return [s.img_path.split('#')[1] for b in batches
                for s in b['data_samples']]

    epoch0 = batch_keys(batches)
    hook = HOOKS.build(dict(type='WebDatasetEpochHook'))
    assert isinstance(hook, WebDatasetEpochHook)
    runner = SimpleNamespace(
        train_loop=SimpleNamespace(dataloader=loader), epoch=3)
    hook.before_train_epoch(runner)  # reaches the live persistent workers
    got = batch_keys(list(loader))
    ref_loader = Runner.build_dataloader(cfg)
    ref_loader.dataset.set_epoch(3)
    assert got == batch_keys(list(ref_loader))
    assert got != epoch0 and sorted(got) == sorted(epoch0)


@pytest.mark.slow  # a Runner, loader workers
def test_runner_trains_two_epochs_with_hooks(tmp_path):
    make_shards(tmp_path, [4] * 4)
    # One extra, broken sample in the first shard.
    with tarfile.open(tmp_path / 'train-000000.tar', 'a') as tar:
        add_tar_member(tar, 'zz_bad.jpg', b'oops!')
        add_tar_member(tar, 'zz_bad.txt', b'bad')
    model = ImageToyModel(image_shape=(3, 6, 8))  # make_shards writes 8 x 6 JPEGs
    runner = Runner(
        model=model,
        work_dir=str(tmp_path / 'work'),
        default_scope='mmpretrain',
        train_dataloader=dict(
            batch_size=4,
            num_workers=2,
            persistent_workers=False,
            sampler=None,
            dataset=dict(
                type='WebImageTextDataset',
                urls=str(tmp_path / 'train-{000000..000003}.tar'),
                num_samples=16,
                batch_size=4,
                shuffle_buffer=8,
                pipeline=PIPELINE)),
        train_cfg=dict(by_epoch=True, max_epochs=2),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        default_hooks=dict(checkpoint=None),
        custom_hooks=[
            dict(type='WebDatasetEpochHook'),
            dict(type='DataSkipCounterHook', min_samples=1000)
        ],
        randomness=dict(seed=0))
    runner.train()
    assert all(isinstance(s.text_tokens, torch.Tensor) for b in model.seen for s in b)
    seen = [[s.img_path.split('#')[1] for s in b] for b in model.seen]
    assert len(seen) == 8 and all(len(b) == 4 for b in seen)
    epoch0 = [k for b in seen[:4] for k in b]
    epoch1 = [k for b in seen[4:] for k in b]
    expected = sorted(f'{s:03d}{i:03d}' for s in range(4) for i in range(4))
    assert sorted(epoch0) == expected == sorted(epoch1)
    assert epoch0 != epoch1  # the hook made the workers reshuffle
    assert runner.message_hub.get_info('train/data_used') == 16
    assert runner.message_hub.get_info('train/data_skipped') == 1
    skip_hooks = [h for h in runner.hooks
                  if isinstance(h, DataSkipCounterHook)]
    assert len(skip_hooks) == 1
