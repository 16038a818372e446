"""Tests for ImageTextDataset, ZeroShotClsDataset and the text transforms."""
import csv
import io
import json
import os.path as osp
from unittest.mock import patch

import numpy as np
import open_clip
import pytest
import torch
from mmpretrain.registry import DATASETS, TRANSFORMS
from mmpretrain.structures import DataSample
from PIL import Image

from rils_mm.datasets import ImageTextDataset
from rils_mm.datasets.transforms import (
    InvalidCaptionError,
    PackImageTextInputs,
    TokenizeText,
    decode_image_bgr,
)
from rils_mm.datasets.utils import AnnotationKeyError
from rils_mm.datasets.zero_shot import ZeroShotClsDataset

RGB_COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0),
               (0, 255, 255), (255, 0, 255), (128, 128, 128), (255, 255, 255)]

PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=16, edge='short'),
    dict(type='CenterCrop', crop_size=16),
    dict(type='TokenizeText'),
    dict(type='PackImageTextInputs'),
]


def jpeg_bytes(rgb, size=(20, 24)) -> bytes:
    buf = io.BytesIO()
    Image.new('RGB', size, rgb).save(buf, format='JPEG', quality=95)
    return buf.getvalue()


def write_csv(path, rows, header=('filepath', 'caption'), delimiter=','):
    with open(path, 'w', newline='', encoding='utf-8') as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def make_images(folder, n):
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        name = f'img{i}.jpg'
        (folder / name).write_bytes(jpeg_bytes(RGB_COLOURS[i % 8]))
        names.append(name)
    return names


@pytest.fixture
def broken_set(tmp_path):
    """6 rows: good, truncated JPEG, text file named .jpg, missing, good,
    good."""
    img_dir = tmp_path / 'images'
    make_images(img_dir, 3)  # img0, img1, img2 are good
    good = jpeg_bytes((10, 20, 30))
    (img_dir / 'truncated.jpg').write_bytes(good[:len(good) // 2])
    (img_dir / 'text.jpg').write_text('this is not an image\n')
    rows = [
        ('images/img0.jpg', 'caption zero'),
        ('images/truncated.jpg', 'a truncated picture'),
        ('images/text.jpg', 'a text file'),
        ('images/missing.jpg', 'no such file'),
        ('images/img1.jpg', 'caption one'),
        ('images/img2.jpg', 'caption two'),
    ]
    return write_csv(tmp_path / 'ann.csv', rows)


def test_csv_tsv_jsonl_loading_and_path_joining(tmp_path):
    make_images(tmp_path / 'data' / 'imgs', 3)
    abs_img = str(tmp_path / 'data' / 'imgs' / 'img2.jpg')
    rows = [('imgs/img0.jpg', 'zero'), ('imgs/img1.jpg', 'one, with comma'),
            (abs_img, 'two')]
    data = tmp_path / 'data'
    csv_file = write_csv(data / 'a.csv', rows)
    tsv_file = write_csv(
        data / 'a.tsv', rows, header=('path', 'text'), delimiter='\t')
    jsonl_file = data / 'a.jsonl'
    jsonl_file.write_text(''.join(
        json.dumps(dict(filepath=p, caption=c)) + '\n\n' for p, c in rows))

    # Relative paths are joined to the annotation file's folder ...
    ds = ImageTextDataset(csv_file)
    expected = [str(data / 'imgs/img0.jpg'), str(data / 'imgs/img1.jpg'),
                abs_img]
    assert [ds.get_data_info(i)['img_path'] for i in range(3)] == expected
    assert [ds.get_data_info(i)['text'] for i in range(3)] == [
        'zero', 'one, with comma', 'two'
    ]
    # ... or to data_root (which also prefixes a relative ann_file).
    ds = ImageTextDataset(
        'a.tsv', data_root=str(data), img_key='path', caption_key='text')
    assert [osp.normpath(ds.get_data_info(i)['img_path'])
            for i in range(3)] == expected
    assert ds.get_data_info(1)['text'] == 'one, with comma'
    ds = DATASETS.build(dict(type='ImageTextDataset', ann_file=str(jsonl_file)))
    assert isinstance(ds, ImageTextDataset) and len(ds) == 3
    assert ds.get_data_info(0)['img_path'] == expected[0]
    assert ds.num_invalid_rows == 0
    assert osp.isfile(tsv_file)


def test_missing_file_and_column_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.csv'):
        ImageTextDataset(str(tmp_path / 'nope.csv'))
    ann = write_csv(tmp_path / 'a.csv', [('x.jpg', 'c')],
                    header=('image', 'caption'))
    with pytest.raises(KeyError) as e:
        ImageTextDataset(ann)
    msg = str(e.value)
    assert isinstance(e.value, AnnotationKeyError)
    assert 'a.csv' in msg and "'filepath'" in msg and "'image'" in msg
    jsonl = tmp_path / 'b.jsonl'
    jsonl.write_text(json.dumps(dict(filepath='x.jpg', text='c')) + '\n')
    with pytest.raises(KeyError, match=r"b\.jsonl.*'caption'.*'text'"):
        ImageTextDataset(str(jsonl))
    (tmp_path / 'a.txt').write_text('filepath,caption\nx.jpg,c\n')
    with pytest.raises(ValueError, match=r"a\.txt.*extension"):
        ImageTextDataset(str(tmp_path / 'a.txt'))


def test_invalid_rows_counted_and_logged(tmp_path):
    make_images(tmp_path, 5)
    jsonl = tmp_path / 'ann.jsonl'
    lines = [json.dumps(dict(filepath=f'img{i}.jpg', caption=f'c{i}'))
             for i in range(5)]
    lines += [
        json.dumps(dict(filepath='img0.jpg', caption='   ')),
        json.dumps(dict(filepath='img0.jpg', caption=7)),
        json.dumps(dict(caption='no image field')),
        '{broken json',
    ]
    jsonl.write_text('\n'.join(lines) + '\n')
    with patch('rils_mm.datasets.image_text.print_log') as log:
        ds = ImageTextDataset(str(jsonl))
    assert len(ds) == 5 and ds.num_invalid_rows == 4
    assert log.call_count == 1
    assert '4 of 9' in log.call_args[0][0] and 'ann.jsonl' in log.call_args[0][0]

    # More than half invalid: clear error naming the file.
    rows = [('img0.jpg', 'ok'), ('img1.jpg', ''), ('', 'no path'),
            ('img2.jpg', ' ')]
    ann = write_csv(tmp_path / 'bad.csv', rows)
    with pytest.raises(ValueError, match=r'bad\.csv.*3 of 4 rows'):
        ImageTextDataset(ann)


def test_pipeline_output_contract(tmp_path):
    make_images(tmp_path, 1)  # pure red image
    caption = 'A Red Square, photographed from above!'
    ann = write_csv(tmp_path / 'a.csv', [('img0.jpg', caption)])
    ds = ImageTextDataset(ann, pipeline=PIPELINE)
    out = ds[0]
    inputs, sample = out['inputs'], out['data_samples']
    assert inputs.dtype == torch.uint8 and inputs.shape == (3, 16, 16)
    # BGR order: red is in the last channel.
    assert inputs[2].float().mean() > 240 and inputs[0].float().mean() < 15
    assert isinstance(sample, DataSample)
    assert 'text_tokens' in sample.keys()  # a data field, moved by .to()
    tokens = sample.to('cpu').text_tokens
    assert tokens.dtype == torch.long and tokens.shape == (77, )
    assert torch.equal(tokens, open_clip.tokenize([caption])[0])
    assert sample.metainfo['num_skipped'] == 0
    assert sample.metainfo['skip_reasons'] == []
    assert sample.metainfo['img_path'] == str(tmp_path / 'img0.jpg')


@pytest.mark.parametrize('backend', ['cv2', 'pillow'])
def test_bad_samples_skipped_deterministically(broken_set, backend):
    pipeline = [dict(PIPELINE[0], imdecode_backend=backend)] + PIPELINE[1:]
    ds = ImageTextDataset(broken_set, pipeline=pipeline)
    assert len(ds) == 6
    good = ds[0]['data_samples']
    assert good.img_path.endswith('img0.jpg') and good.num_skipped == 0

    out = ds[1]  # truncated, text, missing -> img1
    meta = out['data_samples'].metainfo
    assert meta['img_path'].endswith('img1.jpg')
    assert torch.equal(out['data_samples'].text_tokens,
                       open_clip.tokenize(['caption one'])[0])
    # the requested index's own failure is reported (the others report theirs)
    assert meta['num_skipped'] == 1
    reasons = meta['skip_reasons']
    assert len(reasons) == 1
    assert reasons[0].startswith('corrupt image: ')
    assert reasons[0].split(' (')[0].endswith('truncated.jpg')
    r2, r3 = ds[2]['data_samples'].skip_reasons, ds[3]['data_samples'].skip_reasons
    assert r2[0].startswith('corrupt image: ') and 'text.jpg' in r2[0]
    assert r3[0].startswith('missing image: ') and r3[0].endswith('missing.jpg')
    # Iterating the whole data set never crashes, and over one pass every bad
    # sample is counted exactly once.
    samples = [ds[i]['data_samples'] for i in range(len(ds))]
    assert [osp.basename(s.img_path) for s in samples] == [
        'img0.jpg', 'img1.jpg', 'img1.jpg', 'img1.jpg', 'img1.jpg', 'img2.jpg'
    ]
    assert [s.num_skipped for s in samples] == [0, 1, 1, 1, 0, 0]


def test_skip_wraps_around_to_start(tmp_path):
    make_images(tmp_path, 2)
    ann = write_csv(tmp_path / 'a.csv', [('img0.jpg', 'zero'),
                                         ('img1.jpg', 'one'),
                                         ('gone.jpg', 'gone')])
    ds = ImageTextDataset(ann, pipeline=PIPELINE)
    sample = ds[2]['data_samples']
    assert sample.img_path.endswith('img0.jpg') and sample.num_skipped == 1
    assert 'gone.jpg' in sample.skip_reasons[0]


def test_mostly_broken_dataset_raises(tmp_path):
    make_images(tmp_path, 1)
    rows = [('img0.jpg', 'good')] + [(f'gone{i}.jpg', f'c{i}')
                                     for i in range(8)]
    ann = write_csv(tmp_path / 'a.csv', rows)
    ds = ImageTextDataset(ann, pipeline=PIPELINE, max_refetch=5)
    with pytest.raises(RuntimeError, match='mostly broken') as e:
        ds[1]
    assert 'gone4.jpg' in str(e.value) and 'missing image' in str(e.value)
    assert 'gone5.jpg' not in str(e.value)
    # With enough refetches the good sample (after wrapping) is found.
    ds = ImageTextDataset(ann, pipeline=PIPELINE, max_refetch=100)
    sample = ds[1]['data_samples']
    assert sample.img_path.endswith('img0.jpg') and sample.num_skipped == 1
    assert sum(ds[i]['data_samples'].num_skipped for i in range(len(ds))) == 8


def test_pipeline_failures_become_skip_reasons(tmp_path):
    make_images(tmp_path, 2)
    ann = write_csv(tmp_path / 'a.csv', [('img0.jpg', 'zero'),
                                         ('img1.jpg', 'one')])

    def reject_zero(results):
        if results['text'] == 'zero':
            raise InvalidCaptionError('no zeros please')
        return results

    ds = ImageTextDataset(ann, pipeline=PIPELINE[:1] + [reject_zero] +
                          PIPELINE[1:])
    sample = ds[0]['data_samples']
    assert sample.img_path.endswith('img1.jpg')
    assert sample.skip_reasons == [
        f"bad caption: {tmp_path / 'img0.jpg'} (no zeros please)"
    ]


def test_tokenize_text():
    t = TRANSFORMS.build(dict(type='TokenizeText'))
    assert isinstance(t, TokenizeText)
    out = t(dict(text='a photo of a cat'))
    assert out['text_tokens'].dtype == torch.long
    assert torch.equal(out['text_tokens'],
                       open_clip.tokenize(['a photo of a cat'])[0])
    long_caption = ' '.join(['word'] * 200)
    tokens = t(dict(text=long_caption))['text_tokens']
    assert torch.equal(tokens, open_clip.tokenize([long_caption])[0])
    assert tokens[-1] == open_clip.tokenize(['x'])[0].max()  # EOT kept
    short = TokenizeText(context_length=8, text_key='caption', out_key='tok')
    assert short(dict(caption='hello world'))['tok'].shape == (8, )
    for bad in ('', '   ', None, 3, ['a']):
        with pytest.raises(InvalidCaptionError, match='non-empty str'):
            t(dict(text=bad, img_path='x.jpg'))


def test_pack_image_text_inputs_and_decode():
    rgb = np.zeros((5, 7, 3), np.uint8)
    rgb[..., 0] = 200  # red
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format='PNG')
    bgr = decode_image_bgr(buf.getvalue())
    assert bgr.shape == (5, 7, 3) and bgr.flags.c_contiguous
    assert (bgr[..., 2] == 200).all() and (bgr[..., 0] == 0).all()
    with pytest.raises(OSError):
        decode_image_bgr(b'not an image')
    packed = PackImageTextInputs()(
        dict(img=bgr, text_tokens=torch.arange(77), img_path='p',
             num_skipped=2, skip_reasons=['r'], unrelated=1))
    assert packed['inputs'].shape == (3, 5, 7)
    assert packed['inputs'][2].eq(200).all()
    ds = packed['data_samples']
    assert ds.num_skipped == 2 and ds.skip_reasons == ['r']
    assert 'unrelated' not in ds.metainfo
    with pytest.raises(KeyError, match='TokenizeText'):
        PackImageTextInputs()(dict(img=bgr))


def _write_zero_shot(tmp_path, labels, templates='a photo of a {}.\n{} art\n'):
    names = make_images(tmp_path / 'val', len(labels))
    ann = write_csv(tmp_path / 'val.csv',
                    [(f'val/{n}', lab) for n, lab in zip(names, labels)],
                    header=('filepath', 'label'))
    (tmp_path / 'classes.txt').write_text('cat\ndog\nbird\n\n')
    (tmp_path / 'templates.txt').write_text(templates)
    return ann


def test_zero_shot_dataset(tmp_path):
    ann = _write_zero_shot(tmp_path, [0, 2, 1])
    ds = DATASETS.build(
        dict(
            type='ZeroShotClsDataset',
            ann_file=ann,
            classnames=str(tmp_path / 'classes.txt'),
            templates=str(tmp_path / 'templates.txt'),
            pipeline=[
                dict(type='LoadImageFromFile'),
                dict(type='ResizeEdge', scale=16, edge='short'),
                dict(type='CenterCrop', crop_size=16),
                dict(type='PackInputs'),
            ]))
    assert isinstance(ds, ZeroShotClsDataset)
    assert ds.metainfo['classes'] == ('cat', 'dog', 'bird')
    assert ds.metainfo['templates'] == ('a photo of a {}.', '{} art')
    assert ds.CLASSES == ('cat', 'dog', 'bird')
    assert ds.get_gt_labels().tolist() == [0, 2, 1]
    out = ds[1]
    assert out['inputs'].shape == (3, 16, 16)
    assert out['data_samples'].gt_label.tolist() == [2]
    assert out['data_samples'].img_path == str(tmp_path / 'val' / 'img1.jpg')
    # Lists work too, relative to data_root.
    ds = ZeroShotClsDataset(
        'val.csv', classnames=['a', 'b', 'c'], templates=['{}'],
        data_root=str(tmp_path))
    assert len(ds) == 3 and ds.templates == ('{}', )


def test_zero_shot_dataset_errors(tmp_path):
    ann = _write_zero_shot(tmp_path, [0, 3])
    kw = dict(classnames=str(tmp_path / 'classes.txt'),
              templates=str(tmp_path / 'templates.txt'))
    with pytest.raises(ValueError, match=r"val\.csv' line 3: label 3 out of"):
        ZeroShotClsDataset(ann, **kw)
    ann = _write_zero_shot(tmp_path, [0, 1], templates='a photo of a {}.\nx\n')
    with pytest.raises(ValueError, match=r"Template #1 'x'.*templates\.txt"):
        ZeroShotClsDataset(ann, **kw)
    ann = _write_zero_shot(tmp_path, [0, 'dog'])
    with pytest.raises(ValueError, match="'label' must be an integer"):
        ZeroShotClsDataset(ann, **kw)
    with pytest.raises(KeyError, match=r"val\.csv.*'target'.*'label'"):
        ZeroShotClsDataset(
            _write_zero_shot(tmp_path, [0]), label_key='target', **kw)
    with pytest.raises(FileNotFoundError, match='nothere.txt'):
        ZeroShotClsDataset(ann, classnames=str(tmp_path / 'nothere.txt'),
                           templates=['{}'])


def test_toy_corpus_readable(tmp_path):
    from rils_mm.testing import generate_toy_corpus
    info = generate_toy_corpus(
        str(tmp_path / 'toy'), num_train=6, num_val=4, image_size=32,
        shard_size=3)
    ds = ImageTextDataset(info['train_csv'], pipeline=PIPELINE)
    assert len(ds) == 6 and ds.num_invalid_rows == 0
    assert ds[5]['data_samples'].num_skipped == 0
    ds = ImageTextDataset(info['train_jsonl'])
    assert len(ds) == 6
    zs = ZeroShotClsDataset(info['val_csv'], classnames=info['classnames'],
                            templates=info['templates'])
    assert len(zs) == 4 and len(zs.CLASSES) == len(info['classes'])
