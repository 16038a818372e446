"""Regression suite over both data sets: every kind of bad sample at once.

Each bad sample is skipped, counted by kind and named (file / key); odd but valid
images (CMYK, greyscale, alpha, palette, 16-bit) are decoded and used; the run
finishes, and the counts are in the final log and in the checkpoint.
"""
import io
import json
import logging
import os.path as osp
import struct
import tarfile
import zlib

import numpy as np
import pytest
import torch
from mmengine.logging import MMLogger
from mmengine.runner import Runner
from PIL import Image

from rils_mm.datasets.transforms import get_clip_tokenizer
from rils_mm.testing import ImageToyModel, write_tar_shard
from rils_mm.utils.checkpoint import load_from_local, register_checkpoint_safety

register_checkpoint_safety()
PIPELINE = [dict(type='RandomResizedCrop', scale=16), dict(type='TokenizeText', context_length=8),
            dict(type='PackImageTextInputs')]


def encode(img, fmt):
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def good_images():
    rng = np.random.default_rng(0)
    return [encode(Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)), 'JPEG')
            for _ in range(6)]


def odd_valid_images():
    """Valid images in modes that need converting to 3-channel uint8."""
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    return {
        'cmyk': encode(Image.fromarray(rgb).convert('CMYK'), 'JPEG'),
        'grey': encode(Image.fromarray(rgb).convert('L'), 'PNG'),
        'rgba': encode(Image.fromarray(rgb).convert('RGBA'), 'PNG'),
        'la': encode(Image.fromarray(rgb).convert('LA'), 'PNG'),
        'palette': encode(Image.fromarray(rgb).convert('P'), 'PNG'),
        'grey16': encode(Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)), 'PNG'),
    }


def bomb_png(width=20000, height=20000):
    def chunk(kind, data):
        return (struct.pack('>I', len(data)) + kind + data
                + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 0,
                                                              0, 0, 0))
            + chunk(b'IDAT', zlib.compress(b'\x00' * 64)) + chunk(b'IEND', b''))


def bad_images():
    jpeg, png = good_images()[0], odd_valid_images()['grey']
    return {
        'random': np.random.default_rng(2).integers(0, 256, 500, dtype=np.uint8).tobytes(),
        'cut_jpeg': jpeg[:len(jpeg) // 2],
        'cut_png': png[:len(png) // 2],
    }


def _train(work_dir, name, dataloader):
    torch.manual_seed(0)
    runner = Runner(
        model=ImageToyModel(image_shape=(3, 16, 16)), work_dir=str(work_dir), experiment_name=name,
        train_dataloader=dataloader,
        optim_wrapper=dict(type='FiniteStepOptimWrapper', optimizer=dict(type='SGD', lr=0.1)),
        train_cfg=dict(type='ResumableEpochBasedTrainLoop', max_epochs=1),
        default_hooks=dict(checkpoint=dict(type='AtomicCheckpointHook', interval=1)),
        custom_hooks=[dict(type='DataSkipCounterHook', min_samples=1, num_examples=30)],
        default_scope='mmpretrain')
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    MMLogger.get_current_instance().addHandler(handler)
    try:
        runner.train()
    finally:
        MMLogger.get_current_instance().removeHandler(handler)
    (line, ) = [r.getMessage() for r in records if r.getMessage().startswith('data: ')]
    ckpt = load_from_local(osp.join(str(work_dir), 'epoch_1.pth'))
    return line, ckpt['message_hub']['runtime_info']


@pytest.fixture(scope='module', autouse=True)
def tokenizer_loaded():
    get_clip_tokenizer()


@pytest.mark.slow  # a Runner
def test_fuzz_annotation_file_data_set(tmp_path):
    rows = []
    for i, data in enumerate(good_images()):
        (tmp_path / f'good{i}.jpg').write_bytes(data)
        rows.append(json.dumps(dict(filepath=f'good{i}.jpg', caption=f'good {i}')).encode())
    for name, data in {**odd_valid_images(), **bad_images()}.items():
        (tmp_path / f'{name}.img').write_bytes(data)
        rows.append(json.dumps(dict(filepath=f'{name}.img', caption=name)).encode())
    (tmp_path / 'bomb.png').write_bytes(bomb_png())
    rows.append(b'{"filepath": "bomb.png", "caption": "bomb"}')
    rows.append(b'{"filepath": "gone.jpg", "caption": "missing file"}')
    rows.append(b'{"filepath": "good0.jpg", "caption": "caf\xe9"}')  # not UTF-8
    rows.append(b'{"filepath": "good0.jpg", "caption": "   "}')
    rows.append(json.dumps(dict(filepath='good0.jpg', caption='x' * (10 << 20))).encode())
    rows.append(b'{"filepath": "good0.jpg"}')  # no caption key
    rows.append(b'{"caption": "no image key"}')
    rows.append(b'{"filepath": "good0.jpg", "caption": ')  # cut-off JSON
    (tmp_path / 'ann.jsonl').write_bytes(b'\n'.join(rows) + b'\n')

    line, info = _train(tmp_path / 'work', 'fuzz_csv', dict(
        dataset=dict(type='ImageTextDataset', ann_file=str(tmp_path / 'ann.jsonl'),
                     pipeline=[dict(type='LoadImageFromFile')] + PIPELINE),
        sampler=dict(type='ResumableSampler', shuffle=True), batch_size=4, num_workers=0,
        collate_fn=dict(type='pseudo_collate')))
    runtime = {'corrupt image': 3, 'image too large': 1, 'missing image': 1}
    load_time = {'not UTF-8': 1, 'empty caption': 2, 'caption too long': 1,
                 'missing image path': 1, 'invalid row': 1}
    assert info['train/data_skipped_by_kind'] == {**runtime, **load_time}
    assert info['train/data_used'] == 12  # 6 good + 6 odd but valid
    assert info['train/data_skipped'] == 5 and info['train/data_dropped_rows'] == 6
    assert info['train/data_repeats'] == 5
    assert line.startswith('data: 12 distinct samples used, 5 skipped, 6 rows dropped at load '
                           'time, 5 repeats (47.8% bad) this epoch; skipped by kind: ')
    for named in ('random.img', 'cut_jpeg.img', 'cut_png.img', 'bomb.png', 'gone.jpg',
                  'ann.jsonl:18: not UTF-8', 'ann.jsonl:20: caption too long',
                  'ann.jsonl:22: missing image path'):
        assert named in line, named


@pytest.mark.slow  # a Runner
def test_fuzz_webdataset(tmp_path):
    good = good_images()
    # shard 0: random bytes, not a tar
    (tmp_path / 's0.tar').write_bytes(bad_images()['random'] * 4)
    # shard 1: 5 good samples, then cut off in the middle of the 6th image
    members = []
    for i in range(6):
        members += [(f'b{i}.jpg', good[i]), (f'b{i}.txt', f'b {i}'.encode())]
    write_tar_shard(tmp_path / 's1.tar', members)
    with tarfile.open(tmp_path / 's1.tar') as tar:
        info = tar.getmember('b5.jpg')
    data = (tmp_path / 's1.tar').read_bytes()
    (tmp_path / 's1.tar').write_bytes(data[:info.offset_data + info.size // 2])
    # shard 2: every kind of bad member between good and odd-but-valid samples
    members = []
    for i in range(6):
        members += [(f'c{i}.jpg', good[i]), (f'c{i}.txt', f'c {i}'.encode())]
    for name, img in bad_images().items():
        members += [(f'{name}.jpg', img), (f'{name}.txt', name.encode())]
    members += [('bomb.png', bomb_png()), ('bomb.txt', b'bomb')]
    members += [('nocap.jpg', good[0]), ('noimg.txt', b'no image')]
    members += [('latin1.jpg', good[0]), ('latin1.txt', b'caf\xe9')]
    members += [('blank.jpg', good[0]), ('blank.txt', b'  \n')]
    members += [('huge.jpg', good[0]), ('huge.txt', b'x' * (10 << 20))]
    members += [('d0.jpg', good[2]), ('d0.txt', b'good')]  # (<= 10 reasons per sample)
    members += [('twice.jpg', good[0]), ('twice.txt', b'twice'), ('twice.jpg', good[1])]
    members += [('c0.jpg', good[0]), ('c0.txt', b'key seen before')]  # duplicate key
    for name, img in odd_valid_images().items():  # (skips are reported with the next good one)
        members += [(f'{name}.png', img), (f'{name}.txt', name.encode())]
    write_tar_shard(tmp_path / 's2.tar', members)
    urls = [str(tmp_path / f's{i}.tar') for i in range(3)]

    line, info = _train(tmp_path / 'work', 'fuzz_wds', dict(
        dataset=dict(type='WebImageTextDataset', urls=urls, num_samples=18, batch_size=1,
                     shuffle_buffer=0, shuffle_shards=False, pipeline=PIPELINE),
        sampler=None, batch_size=1, num_workers=0, collate_fn=dict(type='pseudo_collate')))
    kinds = {'unreadable shard': 1, 'truncated shard': 1, 'corrupt image': 3,
             'image too large': 1, 'missing image': 1, 'missing caption': 1, 'not UTF-8': 1,
             'empty caption': 1, 'caption too long': 1, 'duplicate member': 1,
             'duplicate key': 1}
    assert info['train/data_skipped_by_kind'] == kinds
    # 5 (shard 1) + 7 good + 6 odd but valid (shard 2): all distinct, no repeats
    assert info['train/data_used'] == 18 and info['train/data_repeats'] == 0
    assert info['train/data_skipped'] == 13
    assert line.startswith('data: 18 distinct samples used, 13 skipped, 0 repeats (41.9% bad)')
    s1, s2 = urls[1], urls[2]
    for named in (f'unreadable shard: {urls[0]}', f'truncated shard: {s1}#b5',
                  f'corrupt image: {s2}#random.jpg', f'image too large: {s2}#bomb.png',
                  f'missing caption: {s2}#nocap', f'missing image: {s2}#noimg',
                  f'not UTF-8: {s2}#latin1.txt', f'empty caption: {s2}#blank',
                  f'caption too long: {s2}#huge', f'duplicate member: {s2}#twice.jpg',
                  f'duplicate key: {s2}#c0'):
        assert named in line, named
