"""Bad data a new user meets, one defect at a time (issue: nothing lost under bad data).

Each test writes the defect in the real format (CSV / JSONL files, PNG bytes, tar
shards) and checks that the sample is skipped, counted by kind and named, and that
nothing else changes.
"""
import csv
import io
import logging
import struct
import tarfile
import zlib

import numpy as np
import pytest
import torch
from mmengine.logging import MMLogger
from mmpretrain.registry import TRANSFORMS
from PIL import Image

from rils_mm.datasets import ImageTextDataset, WebImageTextDataset
from rils_mm.datasets.transforms import get_clip_tokenizer
from rils_mm.datasets.utils import short_message
from rils_mm.testing import write_tar_shard

PIPELINE = [dict(type='TokenizeText'), dict(type='PackImageTextInputs')]
CSV_PIPELINE = [dict(type='LoadImageFromFile')] + PIPELINE


@pytest.fixture(scope='module', autouse=True)
def tokenizer_loaded():
    get_clip_tokenizer()


def jpeg(rgb=(10, 200, 30), size=(8, 6)) -> bytes:
    buf = io.BytesIO()
    Image.new('RGB', size, rgb).save(buf, format='JPEG')
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that *claims* width x height (a decompression bomb's header) with a
    tiny, incomplete IDAT: refusing it must not need decoding it."""
    def chunk(kind, data):
        return (struct.pack('>I', len(data)) + kind + data
                + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))
    ihdr = struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr)
            + chunk(b'IDAT', zlib.compress(b'\x00' * 64)) + chunk(b'IEND', b''))


def keys_of(samples):
    return [s['data_samples'].img_path.split('#')[1] for s in samples]


# --------------------------------------------------------------- CSV / JSONL
@pytest.mark.parametrize('fmt', ['csv', 'jsonl'])
def test_non_utf8_caption_drops_only_its_row_naming_file_and_line(tmp_path, fmt):
    (tmp_path / 'a.jpg').write_bytes(jpeg())
    if fmt == 'csv':
        lines = [b'filepath,caption', b'a.jpg,good one', b'a.jpg,caf\xe9 latin-1',
                 b'a.jpg,good two']
    else:
        lines = [b'{"filepath": "a.jpg", "caption": "good one"}',
                 b'{"filepath": "a.jpg", "caption": "caf\xe9 latin-1"}',
                 b'{"filepath": "a.jpg", "caption": "good two"}']
    ann = tmp_path / f'ann.{fmt}'
    ann.write_bytes(b'\n'.join(lines) + b'\n')
    ds = ImageTextDataset(str(ann), pipeline=CSV_PIPELINE)
    assert [ds.get_data_info(i)['text'] for i in range(len(ds))] == ['good one', 'good two']
    assert ds.num_invalid_rows == 1
    assert ds.invalid_row_kinds == {'not UTF-8': 1}
    bad_line = 3 if fmt == 'csv' else 2
    (example, ) = ds.invalid_row_examples
    assert example.startswith(f'{ann}:{bad_line}: not UTF-8')
    assert "'caption' is not valid UTF-8 (byte 0xe9 at character 3)" in example


def test_csv_caption_over_128_kib_trains_like_jsonl(tmp_path):
    (tmp_path / 'a.jpg').write_bytes(jpeg())
    long_caption = 'a red square ' * 11000  # 143,000 characters > csv's 131,072
    too_long = 'x' * 300_000
    with open(tmp_path / 'ann.csv', 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerows([('filepath', 'caption'), ('a.jpg', long_caption),
                          ('a.jpg', 'short'), ('a.jpg', too_long)])
    limit_before = csv.field_size_limit()
    ds = ImageTextDataset(str(tmp_path / 'ann.csv'), pipeline=CSV_PIPELINE)
    assert csv.field_size_limit() == limit_before  # restored
    assert len(ds) == 2 and ds.get_data_info(0)['text'] == long_caption
    assert ds.invalid_row_kinds == {'caption too long': 1}
    assert 'has 300000 characters, more than max_caption_chars=262144' in \
        ds.invalid_row_examples[0]
    tokens = ds[0]['data_samples'].text_tokens
    assert tokens.shape == (77, ) and ds[0]['data_samples'].num_skipped == 0


def test_csv_path_refuses_decompression_bombs_from_the_header(tmp_path):
    (tmp_path / 'a.jpg').write_bytes(jpeg())
    (tmp_path / 'bomb.png').write_bytes(png_header_only(20000, 20000))  # 400 MP
    (tmp_path / 'big.png').write_bytes(png_header_only(300, 200))
    (tmp_path / 'ann.csv').write_text(
        'filepath,caption\nbomb.png,boom\na.jpg,fine\nbig.png,too big here\n')
    ds = ImageTextDataset(str(tmp_path / 'ann.csv'), pipeline=CSV_PIPELINE)
    meta = ds[0]['data_samples'].metainfo
    assert meta['num_skipped'] == 1 and meta['is_repeat']
    (reason, ) = meta['skip_reasons']
    assert reason.startswith(f'image too large: {tmp_path}/bomb.png')
    assert meta['skip_kinds'] == {'image too large': 1}
    # A stricter limit applies to both data set kinds alike.
    ds = ImageTextDataset(str(tmp_path / 'ann.csv'), pipeline=CSV_PIPELINE,
                          max_image_pixels=50_000)
    (reason, ) = ds[2]['data_samples'].skip_reasons
    assert reason == (f'image too large: {tmp_path}/big.png (300 x 200 = 60000 pixels, '
                      'more than max_image_pixels=50000 (decompression bomb?))')


# ------------------------------------------------------------------ WebDataset
def test_webdataset_decodes_16bit_grey_png_like_the_csv_path(tmp_path):
    grey16 = (np.arange(12 * 10, dtype=np.uint16).reshape(12, 10) * 531).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(grey16).save(buf, format='PNG')
    assert Image.open(io.BytesIO(buf.getvalue())).mode.startswith('I;16')
    (tmp_path / 'g.png').write_bytes(buf.getvalue())
    url = write_tar_shard(tmp_path / 's.tar', [('g.png', buf.getvalue()), ('g.txt', b'grey')])
    (out, ) = list(WebImageTextDataset(url, num_samples=1, pipeline=PIPELINE))
    ref = TRANSFORMS.build(dict(type='LoadImageFromFile'))(
        dict(img_path=str(tmp_path / 'g.png')))['img']  # the CSV path (cv2)
    assert torch.equal(out['inputs'], torch.from_numpy(ref.transpose(2, 0, 1).copy()))
    # Scaled (value >> 8), not clipped to white.
    assert torch.equal(out['inputs'][0], torch.from_numpy((grey16 >> 8).astype(np.uint8)))


def test_webdataset_refuses_the_same_bomb(tmp_path):
    url = write_tar_shard(tmp_path / 's.tar', [
        ('a.png', png_header_only(20000, 20000)), ('a.txt', b'boom'),
        ('b.jpg', jpeg()), ('b.txt', b'fine')])
    (out, ) = list(WebImageTextDataset(url, num_samples=1, pipeline=PIPELINE))
    (reason, ) = out['data_samples'].skip_reasons
    assert reason.startswith(f'image too large: {url}#a.png')


def _good_members(keys):
    members = []
    for k in keys:
        members += [(f'{k}.jpg', jpeg()), (f'{k}.txt', f'caption {k}'.encode())]
    return members


def test_truncated_shard_counts_the_loss_and_marks_the_repeats(tmp_path):
    members = _good_members([f'{i:03d}' for i in range(10)])
    path = tmp_path / 'cut.tar'
    write_tar_shard(path, members)
    data = path.read_bytes()
    # Cut in the middle of 006.jpg's data: 000-005 complete, 006 incomplete,
    # 007-009 are not in the file any more.
    with tarfile.open(path) as tar:
        info = tar.getmember('006.jpg')
    path.write_bytes(data[:info.offset_data + info.size // 2])
    logger = MMLogger.get_current_instance()
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        ds = WebImageTextDataset(str(path), num_samples=10, pipeline=PIPELINE,
                                 shuffle_buffer=0)
        out = list(ds)
    finally:
        logger.removeHandler(handler)
    assert len(out) == 10  # the epoch has its declared length ...
    metas = [o['data_samples'].metainfo for o in out]
    distinct = [k for k, m in zip(keys_of(out), metas) if not m['is_repeat']]
    repeats = [k for k, m in zip(keys_of(out), metas) if m['is_repeat']]
    # ... but only 6 distinct samples, and the 4 repeats say so.
    assert distinct == [f'{i:03d}' for i in range(6)]
    assert len(repeats) == 4 and set(repeats) <= set(distinct)
    reasons = [r for m in metas for r in m['skip_reasons']]
    assert reasons == [f'truncated shard: {path}#006 (incomplete sample)']
    assert sum(m['num_skipped'] for m in metas) == 1
    messages = [r.getMessage() for r in records]
    assert any('truncated shard' in m and 'cut off at member 006.jpg' in m for m in messages)
    assert any('gave 6 good samples, fewer than its share of 10; 4 samples are repeats'
               in m for m in messages), messages


def test_num_samples_larger_than_the_shards_warns_with_the_repeat_count(tmp_path):
    url = write_tar_shard(tmp_path / 's.tar', _good_members(['a', 'b', 'c']))
    logger = MMLogger.get_current_instance()
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        out = list(WebImageTextDataset(url, num_samples=12, pipeline=PIPELINE,
                                       shuffle_buffer=0))
    finally:
        logger.removeHandler(handler)
    assert len(out) == 12
    assert sum(not o['data_samples'].is_repeat for o in out) == 3
    (warning, ) = [r.getMessage() for r in records if 'repeats' in r.getMessage()]
    assert 'gave 3 good samples, fewer than its share of 12; 9 samples are repeats' in warning
    assert 'num_samples=12 is more than the shards hold' in warning


def test_duplicate_keys_are_counted_once_and_never_read_twice(tmp_path):
    members = _good_members(['a0', 'a1'])
    members += [('b.jpg', jpeg()), ('b.txt', b'caption b'), ('b.jpg', jpeg((1, 2, 3)))]
    members += _good_members(['a2', 'a0', 'a3'])  # a0 comes back later
    url = write_tar_shard(tmp_path / 'dup.tar', members)
    out = list(WebImageTextDataset(url, num_samples=4, pipeline=PIPELINE, shuffle_buffer=0))
    assert keys_of(out) == ['a0', 'a1', 'a2', 'a3']
    assert not any(o['data_samples'].is_repeat for o in out)
    reasons = [r for o in out for r in o['data_samples'].skip_reasons]
    assert reasons == [f'duplicate member: {url}#b.jpg (twice in one sample)',
                       f'duplicate key: {url}#a0 (appears again later in the shard; read once)']
    assert sum(o['data_samples'].num_skipped for o in out) == 2  # b and the 2nd a0


def test_skip_reasons_carry_no_stream_reprs(tmp_path):
    not_tar = tmp_path / 'x.tar'
    not_tar.write_bytes(b'this is not a tar file at all' * 40)
    good = write_tar_shard(tmp_path / 'g.tar', _good_members(['k']))
    out = list(WebImageTextDataset([str(not_tar), good], num_samples=1, pipeline=PIPELINE,
                                   shuffle_shards=False))
    (reason, ) = out[0]['data_samples'].skip_reasons
    assert reason.startswith(f'unreadable shard: {not_tar} (not a tar file')
    assert '<' not in reason and '@' not in reason
    # webdataset-style exceptions: the stream and URL appended to args / message
    stream = io.BufferedReader(io.BytesIO(b''))
    exn = ValueError('a.jpg: duplicate file name in tar file jpg', stream, 'url')
    assert short_message(exn) == 'a.jpg: duplicate file name in tar file jpg'
    exn = tarfile.ReadError(f'unexpected end of data @ {stream}')
    assert short_message(exn) == 'unexpected end of data'
