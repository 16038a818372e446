"""Tests for the deterministic toy image-text corpus (rils_mm.testing.toy_corpus)."""
import csv
import importlib.util
import io
import json
import os
import os.path as osp
import re
import tarfile

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


from rils_mm.testing import toy_corpus as tc  # noqa: E402

SMALL = dict(num_train=40, num_val=20, shard_size=16)


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp('toy') / 'corpus'
    return tc.generate_toy_corpus(str(out), **SMALL)


def _all_files(root):
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = osp.join(dirpath, name)
            with open(path, 'rb') as f:
                out[osp.relpath(path, root)] = f.read()
    return out


def _read_csv(path):
    with open(path, newline='', encoding='utf-8') as f:
        return list(csv.DictReader(f))


def _read_jsonl(path):
    with open(path, encoding='utf-8') as f:
        return [json.loads(line) for line in f if line.strip()]


def _read_tars(paths):
    """Samples from tar shards, grouped by key, in member order."""
    samples = []
    for path in paths:
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                key, ext = member.name.split('.', 1)
                data = tar.extractfile(member).read()
                if not samples or samples[-1]['__key__'] != key:
                    samples.append({'__key__': key})
                samples[-1][ext] = data
    return samples


def test_returned_info_and_layout(corpus):
    root = corpus['root']
    assert osp.isabs(root)
    for key in ('train_csv', 'train_jsonl', 'val_csv', 'classnames', 'templates',
                'meta'):
        assert osp.isabs(corpus[key]) and osp.isfile(corpus[key]), key
    assert corpus['num_train'] == 40 and corpus['num_val'] == 20
    assert len(corpus['shards']) == 3  # ceil(40 / 16)
    assert [osp.basename(p) for p in corpus['shards']] == [
        'train-000000.tar', 'train-000001.tar', 'train-000002.tar'
    ]
    assert corpus['shard_pattern'] == osp.join(root, 'shards',
                                               'train-{000000..000002}.tar')
    assert len(os.listdir(osp.join(root, 'train', 'images'))) == 40
    assert len(os.listdir(osp.join(root, 'val', 'images'))) == 20
    with open(corpus['meta'], encoding='utf-8') as f:
        meta = json.load(f)
    assert meta['args'] == dict(num_train=40, num_val=20, image_size=64, seed=0,
                                shard_size=16, jpeg_quality=90)
    assert meta['classes'] == corpus['classes']
    assert meta['num_train'] == 40 and meta['num_val'] == 20 and meta['seed'] == 0


def test_same_seed_byte_identical(tmp_path):
    a = tc.generate_toy_corpus(str(tmp_path / 'a'), **SMALL)
    b = tc.generate_toy_corpus(str(tmp_path / 'b'), **SMALL)
    files_a, files_b = _all_files(a['root']), _all_files(b['root'])
    assert len(files_a) == 40 + 20 + 3 + 6
    assert files_a.keys() == files_b.keys()
    for rel in files_a:
        assert files_a[rel] == files_b[rel], rel


def test_different_seed_differs(tmp_path, corpus):
    other = tc.generate_toy_corpus(str(tmp_path / 'other'), seed=1, **SMALL)
    files_a, files_b = _all_files(corpus['root']), _all_files(other['root'])
    assert files_a.keys() == files_b.keys()
    images = [r for r in files_a if r.endswith('.jpg')]
    assert sum(files_a[r] != files_b[r] for r in images) == len(images)
    caps_a = [r['caption'] for r in _read_csv(corpus['train_csv'])]
    caps_b = [r['caption'] for r in _read_csv(other['train_csv'])]
    assert caps_a != caps_b
    # Train and val are different streams of the same seed.
    assert files_a['train/images/000000.jpg'] != files_a['val/images/000000.jpg']


def test_jpegs_decode_rgb_of_requested_size(tmp_path):
    info = tc.generate_toy_corpus(str(tmp_path / 's48'), image_size=48, **SMALL)
    paths = [r['filepath'] for r in _read_csv(info['train_csv'])]
    paths += [r['filepath'] for r in _read_csv(info['val_csv'])]
    assert len(paths) == 60
    for rel in paths:
        assert not osp.isabs(rel)
        with Image.open(osp.join(info['root'], rel)) as img:
            assert img.format == 'JPEG'
            img.load()
            assert img.mode == 'RGB' and img.size == (48, 48)


def test_csv_jsonl_and_shards_agree(corpus):
    root = corpus['root']
    rows = _read_csv(corpus['train_csv'])
    records = _read_jsonl(corpus['train_jsonl'])
    assert len(rows) == len(records) == 40
    classes = corpus['classes']
    expected = []
    for i, (row, rec) in enumerate(zip(rows, records)):
        assert row['filepath'] == rec['filepath'] == f'train/images/{i:06d}.jpg'
        assert row['caption'] == rec['caption'] and row['caption']
        dominant = [o for o in rec['objects'] if o['dominant']]
        assert 1 <= len(dominant) <= 3
        assert len({(o['colour'], o['shape']) for o in dominant}) == 1
        assert rec['label'] == classes.index(
            f"{dominant[0]['colour']} {dominant[0]['shape']}")
        with open(osp.join(root, row['filepath']), 'rb') as f:
            expected.append((f'{i:06d}', f.read(), row['caption'], rec['objects']))

    # 1) plain tarfile: member names, order and bytes.
    samples = _read_tars(corpus['shards'])
    assert [s['__key__'] for s in samples] == [k for k, *_ in expected]
    for sample, (key, jpg, caption, objects) in zip(samples, expected):
        assert set(sample) == {'__key__', 'jpg', 'txt', 'json'}
        assert sample['jpg'] == jpg
        assert sample['txt'].decode('utf-8') == caption
        meta = json.loads(sample['json'])
        assert meta['caption'] == caption and meta['key'] == key
        assert meta['objects'] == objects
    with tarfile.open(corpus['shards'][0]) as tar:
        assert len(tar.getmembers()) == 16 * 3
    with tarfile.open(corpus['shards'][-1]) as tar:
        assert len(tar.getmembers()) == (40 - 32) * 3

    # 2) webdataset with the brace pattern.
    import webdataset as wds
    ds = wds.WebDataset(corpus['shard_pattern'], shardshuffle=False)
    wsamples = list(ds)
    assert len(wsamples) == 40
    for sample, (key, jpg, caption, _) in zip(wsamples, expected):
        assert sample['__key__'] == key
        assert sample['jpg'] == jpg
        assert sample['txt'].decode('utf-8') == caption
    decoded = next(iter(
        wds.WebDataset(corpus['shard_pattern'], shardshuffle=False)
        .decode('pil').to_tuple('jpg', 'txt')))
    assert decoded[0].mode == 'RGB' and decoded[0].size == (64, 64)
    assert decoded[1] == expected[0][2]


def _colour_pixels(img, rgb, tol=70):
    arr = np.asarray(img, dtype=np.int32)
    return int((np.abs(arr - np.asarray(rgb)).max(-1) < tol).sum())


def test_val_labels(tmp_path):
    info = tc.generate_toy_corpus(str(tmp_path / 'val'), num_train=4, num_val=64,
                                  shard_size=4)
    rows = _read_csv(info['val_csv'])
    assert len(rows) == 64
    labels = [int(r['label']) for r in rows]
    num_classes = len(info['classes'])
    assert all(0 <= lb < num_classes for lb in labels)
    assert set(labels) == set(range(num_classes))  # class-balanced blocks
    assert np.bincount(labels).tolist() == [64 // num_classes] * num_classes
    # The label's colour is really present in the image.
    for row, lb in zip(rows, labels):
        colour = info['classes'][lb].split()[0]
        with Image.open(osp.join(info['root'], row['filepath'])) as img:
            assert _colour_pixels(img.convert('RGB'), tc.COLOURS[colour]) >= 60, row


def test_classnames_and_templates_files(corpus):
    with open(corpus['classnames'], encoding='utf-8') as f:
        names = f.read().splitlines()
    assert names == corpus['classes'] == tc.get_classnames()
    assert len(names) == len(set(names)) == 16
    for name in names:
        colour, shape = name.split(' ')
        assert colour in tc.COLOURS and shape in tc.SHAPES
    with open(corpus['templates'], encoding='utf-8') as f:
        templates = f.read().splitlines()
    assert 6 <= len(templates) == len(set(templates))
    for tpl in templates:
        assert tpl.count('{}') == 1
        assert tpl.format('red circle').count('red circle') == 1


def test_captions_varied_and_grounded(corpus):
    records = _read_jsonl(corpus['train_jsonl'])
    captions = [r['caption'] for r in records]
    assert len(set(captions)) >= 0.9 * len(captions)
    openings = {' '.join(c.lower().split()[:2]) for c in captions}
    assert len(openings) >= 6
    count_words = {2: 'two', 3: 'three'}
    for rec in records:
        text = rec['caption'].lower()
        words = set(re.findall(r"[a-z]+", text))
        dominant = [o for o in rec['objects'] if o['dominant']]
        colour, shape = dominant[0]['colour'], dominant[0]['shape']
        assert colour in words, text
        forms = [w for pair in tc.SHAPE_WORDS[shape] for w in pair]
        assert any(re.search(rf'\b{form}\b', text) for form in forms), text
        if len(dominant) > 1:
            assert count_words[len(dominant)] in words, text
            plurals = [pair[1] for pair in tc.SHAPE_WORDS[shape]]
            assert any(re.search(rf'\b{p}\b', text) for p in plurals), text


def test_captions_varied_on_larger_sample():
    rng = np.random.default_rng(123)
    captions = [
        tc.make_caption(tc.sample_scene(rng), rng) for _ in range(400)
    ]
    assert len(set(captions)) >= 380
    assert len({' '.join(c.lower().split()[:2]) for c in captions}) >= 10
    assert any('background' in c or 'backdrop' in c for c in captions)
    assert any(re.search(r'\b(top|bottom|left|right|middle|centre|center)\b', c)
               for c in captions)
    assert any('small' in c or 'tiny' in c or 'little' in c for c in captions)


def test_idempotent_and_regenerates(tmp_path):
    out = str(tmp_path / 'idem')
    first = tc.generate_toy_corpus(out, **SMALL)
    paths = [osp.join(d, n) for d, _, ns in os.walk(out) for n in ns]
    old = 1_000_000_000
    for p in paths:
        os.utime(p, ns=(old, old))
    second = tc.generate_toy_corpus(out, **SMALL)
    assert second == first
    for p in paths:
        assert os.stat(p).st_mtime_ns == old, p

    # Changed arguments -> regenerated, stale shards/images removed.
    before = _all_files(out)
    third = tc.generate_toy_corpus(out, num_train=20, num_val=10, shard_size=16,
                                   seed=3)
    after = _all_files(out)
    assert third['num_train'] == 20 and len(third['shards']) == 2
    assert sorted(os.listdir(osp.join(out, 'shards'))) == [
        'train-000000.tar', 'train-000001.tar'
    ]
    assert len(os.listdir(osp.join(out, 'train', 'images'))) == 20
    assert len(os.listdir(osp.join(out, 'val', 'images'))) == 10
    assert after['train/images/000000.jpg'] != before['train/images/000000.jpg']
    with open(third['meta'], encoding='utf-8') as f:
        assert json.load(f)['args']['seed'] == 3

    # A corrupted/incomplete output (missing index file) is regenerated too.
    os.remove(third['train_csv'])
    fourth = tc.generate_toy_corpus(out, num_train=20, num_val=10, shard_size=16,
                                    seed=3)
    assert osp.isfile(fourth['train_csv'])
    assert _all_files(out) == after


@pytest.mark.parametrize('size', [64, 96])
def test_instance_masks_agree_with_bboxes(size):
    rng = np.random.default_rng(7)
    classes = tc.get_classnames()
    for _ in range(60):
        scene = tc.sample_scene(rng)
        masks = tc.render_instance_masks(scene, size)
        assert len(masks) == len(scene.objects) >= 1
        total = np.zeros((size, size), int)
        img = np.asarray(tc.render_scene(scene, size), dtype=np.float64)
        for obj, mask in zip(scene.objects, masks):
            assert mask.dtype == bool and mask.shape == (size, size)
            x, y, w, h = tc.object_bbox(obj, size)
            ys, xs = np.nonzero(mask)
            assert len(xs) > 0
            assert [xs.min(), ys.min(), xs.max() - xs.min() + 1,
                    ys.max() - ys.min() + 1] == [x, y, w, h]
            assert 0 <= x and 0 <= y and x + w <= size and y + h <= size
            # The rendered image shows the object's colour inside its mask.
            inner = mask.copy()
            inner[1:-1, 1:-1] &= (mask[:-2, 1:-1] & mask[2:, 1:-1]
                                  & mask[1:-1, :-2] & mask[1:-1, 2:])
            mean = img[inner].mean(0)
            assert np.abs(mean - np.asarray(obj.rgb)).max() < 25
            total += mask
            if obj.is_dominant:
                assert max(w, h) >= size / 5
                assert obj.category == scene.category
            else:
                assert obj.category != scene.category
        assert total.max() == 1  # objects do not overlap
        sem = tc.render_semantic_mask(scene, size)
        for obj, mask in zip(scene.objects, masks):
            assert (sem[mask] == classes.index(obj.category) + 1).all()
        assert (sem[total == 0] == 0).all()


def test_corpus_bboxes_match_recreated_scenes(corpus):
    records = _read_jsonl(corpus['train_jsonl'])
    for i, rec in enumerate(records):
        scene, caption_rng = tc.corpus_scene(0, 'train', i)
        assert tc.make_caption(scene, caption_rng) == rec['caption']
        masks = tc.render_instance_masks(scene, 64)
        assert len(masks) == len(rec['objects'])
        for obj, mask, stored in zip(scene.objects, masks, rec['objects']):
            assert (obj.shape, obj.colour) == (stored['shape'], stored['colour'])
            ys, xs = np.nonzero(mask)
            assert stored['bbox'] == [int(xs.min()), int(ys.min()),
                                      int(xs.max() - xs.min() + 1),
                                      int(ys.max() - ys.min() + 1)]


def test_sampling_is_deterministic_and_uses_no_global_state():
    np.random.seed(0)
    import random
    random.seed(0)
    a = tc.sample_scene(np.random.default_rng(5))
    np.random.seed(99)
    random.seed(99)
    b = tc.sample_scene(np.random.default_rng(5))
    assert a == b
    assert a != tc.sample_scene(np.random.default_rng(6))
    ia = io.BytesIO()
    tc.render_scene(a, 64).save(ia, format='PNG')
    ib = io.BytesIO()
    tc.render_scene(b, 64).save(ib, format='PNG')
    assert ia.getvalue() == ib.getvalue()


def test_invalid_arguments(tmp_path):
    with pytest.raises(ValueError):
        tc.generate_toy_corpus(str(tmp_path / 'x'), num_train=0)
    with pytest.raises(ValueError):
        tc.generate_toy_corpus(str(tmp_path / 'x'), shard_size=0)
    with pytest.raises(ValueError):
        tc.sample_scene(np.random.default_rng(0), category=('purple', 'circle'))
    assert not osp.exists(tmp_path / 'x')


def test_cli(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location(
        '_make_toy_corpus', osp.join(REPO_ROOT, 'tools', 'make_toy_corpus.py'))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    out = str(tmp_path / 'cli')
    info = cli.main([out, '--num-train', '10', '--num-val', '5', '--shard-size',
                     '4', '--image-size', '32', '--seed', '2'])
    text = capsys.readouterr().out
    assert 'generated' in text and '10 image-caption pairs' in text
    assert info['shard_pattern'] in text and 'red circle' in text
    assert len(info['shards']) == 3
    with Image.open(osp.join(out, 'val', 'images', '000000.jpg')) as img:
        assert img.size == (32, 32)
    cli.main([out, '--num-train', '10', '--num-val', '5', '--shard-size', '4',
              '--image-size', '32', '--seed', '2'])
    assert 'reused' in capsys.readouterr().out
