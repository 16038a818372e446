"""Benchmark metadata (clip-benchmark's shipped files) and the readers of the
evaluation sets in the layouts they ship in, on tiny files written here."""
import json
import os
import os.path as osp
import struct

import numpy as np
import pytest
import torch
from mmpretrain.registry import DATASETS
from PIL import Image

import rils_mm  # noqa: F401
from rils_mm.evaluation import (
    TABLE6_DATASETS,
    imagenet_subset_wnids,
    imagenet_wnids,
    load_classnames,
    load_templates,
)
from rils_mm.evaluation.benchmark_meta import clip_benchmark_metadata_dir

PIPELINE = [
    dict(type='ResizeEdge', scale=16, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=16),
    dict(type='PackInputs'),
]


def _image(seed, size=(20, 24)):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8))


def _shipped(name):
    with open(osp.join(clip_benchmark_metadata_dir(), name)) as f:
        return json.load(f)


def test_templates_and_classnames_come_from_clip_benchmark_files():
    templates = _shipped('en_zeroshot_classification_templates.json')
    classnames = _shipped('en_classnames.json')
    assert load_templates('cifar10') == [t.replace('{c}', '{}') for t in templates['cifar10']]
    assert load_templates('cifar10')[0].format('cat') == templates['cifar10'][0].format(c='cat')
    assert load_classnames('flowers') == classnames['flowers']
    assert len(load_classnames('imagenet1k')) == 1000
    # no shipped names: the data set's own names are used (torchvision's, folders)
    assert load_classnames('cifar10') is None
    # clip-benchmark's fallback: ImageNet's templates; CUB: SLIP's bird prompt
    assert load_templates('no_such_set') == load_templates('imagenet1k')
    assert load_templates('cub200') == ['a photo of a {}, a type of bird.']
    # every Table 6 key resolves to templates, with a placeholder
    for key, metric in TABLE6_DATASETS.values():
        assert all('{}' in t for t in load_templates(key))
        assert metric in ('top1', 'mean_per_class')
    assert [k for k, (_, m) in TABLE6_DATASETS.items() if m == 'mean_per_class'] == [
        'aircraft', 'pets', 'caltech101', 'flowers']


def test_any_json_of_the_same_shape_is_accepted(tmp_path):
    path = tmp_path / 'mine.json'
    path.write_text(json.dumps({'toy': ['a {c} drawing.', 'art of the {c}.']}))
    assert load_templates('toy', str(path)) == ['a {} drawing.', 'art of the {}.']
    names = tmp_path / 'names.json'
    names.write_text(json.dumps({'toy': ['red', 'blue']}))
    assert load_classnames('toy', str(names)) == ['red', 'blue']
    with pytest.raises(KeyError, match='other'):
        load_classnames('other', str(names))
    bad = tmp_path / 'bad.json'
    bad.write_text(json.dumps({'toy': {'red': ['a red thing']}}))
    with pytest.raises(ValueError, match='class-specific'):
        load_templates('toy', str(bad))
    bad.write_text(json.dumps({'toy': ['no placeholder']}))
    with pytest.raises(ValueError, match='placeholder'):
        load_templates('toy', str(bad))


def test_imagenet_a_r_subsets_from_clip_benchmark():
    wnids = imagenet_wnids()
    assert len(wnids) == 1000 and wnids == sorted(wnids)
    for name in ('imagenet-a', 'imagenet-r'):
        sub = imagenet_subset_wnids(name)
        assert len(sub) == 200 and len(set(sub)) == 200
        assert set(sub) <= set(wnids)
        assert sub == [w for w in wnids if w in set(sub)]  # ImageNet order
    assert imagenet_subset_wnids('imagenet-a') != imagenet_subset_wnids('imagenet-r')


def _write_folder(root, folders, per_class=2):
    expected = []
    for c, name in enumerate(folders):
        os.makedirs(osp.join(root, name))
        for j in range(per_class):
            path = osp.join(root, name, f'{j}.png')
            _image(100 * c + j).save(path)
            expected.append((path, c))
    return expected


def test_image_folder_sorted_and_pipeline(tmp_path):
    root = str(tmp_path / 'resisc')
    _write_folder(root, ['airplane', 'baseball_diamond', 'beach'])
    ds = DATASETS.build(dict(type='ZeroShotBenchmarkDataset', key='resisc45', data_root=root,
                             pipeline=PIPELINE))
    assert ds.metainfo['classes'] == ('airplane', 'baseball diamond', 'beach')
    assert ds.metainfo['templates'] == tuple(load_templates('resisc45'))
    assert len(ds) == 6 and ds.get_labels().tolist() == [0, 0, 1, 1, 2, 2]
    item = ds[3]
    assert item['inputs'].shape == (3, 16, 16) and item['inputs'].dtype == torch.uint8
    assert int(item['data_samples'].gt_label) == 1
    # decoded like LoadImageFromFile(pillow): BGR of the file's pixels
    raw = ds.get_data_info(3)['img']
    assert np.array_equal(raw, np.asarray(Image.open(osp.join(root, 'baseball_diamond',
                                                              '1.png')))[..., ::-1])


def test_imagenet_r_folders_use_the_200_class_subset(tmp_path):
    sub = imagenet_subset_wnids('imagenet-r')
    picked = [sub[5], sub[0], sub[199]]
    root = str(tmp_path / 'imagenet-r')
    _write_folder(root, picked, per_class=1)
    ds = DATASETS.build(dict(type='ZeroShotBenchmarkDataset', key='imagenet1k', data_root=root,
                             folder_labels='wnid', wnid_subset='imagenet-r', pipeline=PIPELINE))
    all_names = load_classnames('imagenet1k')
    wnids = imagenet_wnids()
    assert len(ds.metainfo['classes']) == 200
    assert ds.metainfo['classes'][5] == all_names[wnids.index(sub[5])]
    # folders are read in sorted order: sub[0] < sub[5] < sub[199]
    assert ds.get_labels().tolist() == [0, 5, 199]
    # a folder outside the subset is an error naming it
    os.makedirs(osp.join(root, 'n00000000'))
    _image(0).save(osp.join(root, 'n00000000', 'x.png'))
    with pytest.raises(ValueError, match='n00000000'):
        DATASETS.build(dict(type='ZeroShotBenchmarkDataset', key='imagenet1k', data_root=root,
                            folder_labels='wnid', wnid_subset='imagenet-r'))


def test_imagenet_v2_index_folders(tmp_path):
    root = str(tmp_path / 'v2')
    _write_folder(root, ['0', '10', '2'], per_class=1)
    ds = DATASETS.build(dict(type='ZeroShotBenchmarkDataset', key='imagenet1k', data_root=root,
                             folder_labels='index'))
    # sorted folder names are '0', '10', '2'; labels are the numbers themselves
    assert ds.get_labels().tolist() == [0, 10, 2]
    assert len(ds.metainfo['classes']) == 1000


def _write_idx(path, array):
    dtype_code = {1: 0x08}[array.dtype.itemsize]
    with open(path, 'wb') as f:
        f.write(struct.pack('>BBBB', 0, 0, dtype_code, array.ndim))
        f.write(struct.pack(f'>{array.ndim}I', *array.shape))
        f.write(array.astype(np.uint8).tobytes())


def test_torchvision_layout_mnist(tmp_path):
    raw = tmp_path / 'MNIST' / 'raw'
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    test_images = rng.integers(0, 255, (5, 28, 28), dtype=np.uint8)
    test_labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    _write_idx(raw / 't10k-images-idx3-ubyte', test_images)
    _write_idx(raw / 't10k-labels-idx1-ubyte', test_labels)
    _write_idx(raw / 'train-images-idx3-ubyte', test_images[:2])
    _write_idx(raw / 'train-labels-idx1-ubyte', test_labels[:2])
    ds = DATASETS.build(dict(type='ZeroShotBenchmarkDataset', key='mnist', data_root=str(tmp_path),
                             data_format='torchvision', dataset_cls='MNIST',
                             dataset_kwargs=dict(train=False), pipeline=PIPELINE))
    assert ds.get_labels().tolist() == [3, 1, 4, 1, 5]
    assert ds.metainfo['classes'] == tuple(load_classnames('mnist'))  # shipped names win
    img = ds.get_data_info(2)['img']
    assert img.shape == (28, 28, 3)
    assert np.array_equal(img[..., 0], test_images[2])  # grey -> 3 equal channels
    assert ds[2]['inputs'].shape == (3, 16, 16)
    with pytest.raises(FileNotFoundError, match='nothing is downloaded'):
        DATASETS.build(dict(type='ZeroShotBenchmarkDataset', key='mnist',
                            data_root=str(tmp_path / 'empty'), data_format='torchvision',
                            dataset_cls='MNIST'))


def test_clip_benchmark_webdataset_shards(tmp_path):
    from clip_benchmark.webdataset_builder import PIL_to_bytes, convert_dataset

    class Toy(list):
        classes = ['red circle', 'blue square', 'green star']
        templates = ['a drawing of a {c}.', 'a {c}.']

    images = [_image(i) for i in range(7)]
    labels = [2, 0, 1, 1, 0, 2, 2]
    out = str(tmp_path / 'wds')
    convert_dataset(Toy(zip(images, labels)), 'test', out, transform=PIL_to_bytes('png'),
                    image_format='png', max_count=3, verbose=False)
    assert open(osp.join(out, 'test', 'nshards.txt')).read().strip() == '3'
    ds = DATASETS.build(dict(type='ZeroShotBenchmarkDataset', key='toy', data_root=out,
                             data_format='wds', pipeline=PIPELINE))
    assert ds.get_labels().tolist() == labels
    assert ds.metainfo['classes'] == tuple(Toy.classes)
    assert ds.metainfo['templates'] == ('a drawing of a {}.', 'a {}.')
    for i in (0, 4, 6):  # lossless PNG: pixels survive exactly
        assert np.array_equal(ds.get_data_info(i)['img'], np.asarray(images[i])[..., ::-1])
    os.remove(osp.join(out, 'test', '1.tar'))
    with pytest.raises(FileNotFoundError, match='1.tar'):
        DATASETS.build(dict(type='ZeroShotBenchmarkDataset', key='toy', data_root=out,
                            data_format='wds'))


def test_cub200_files(tmp_path):
    root = tmp_path / 'CUB_200_2011'
    (root / 'images').mkdir(parents=True)
    classes = ['001.Black_footed_Albatross', '002.Laysan_Albatross']
    rows = [(1, classes[0] + '/a.jpg', 1, 0), (2, classes[0] + '/b.jpg', 1, 1),
            (3, classes[1] + '/c.jpg', 2, 0), (4, classes[1] + '/d.jpg', 2, 1)]
    for _, rel, _, _ in rows:
        (root / 'images' / rel).parent.mkdir(exist_ok=True)
        _image(len(rel)).save(root / 'images' / rel)
    (root / 'images.txt').write_text(''.join(f'{i} {rel}\n' for i, rel, _, _ in rows))
    (root / 'image_class_labels.txt').write_text(''.join(f'{i} {c}\n' for i, _, c, _ in rows))
    (root / 'train_test_split.txt').write_text(''.join(f'{i} {t}\n' for i, _, _, t in rows))
    (root / 'classes.txt').write_text(''.join(f'{i + 1} {c}\n' for i, c in enumerate(classes)))
    ds = DATASETS.build(dict(type='ZeroShotBenchmarkDataset', key='cub200',
                             data_root=str(tmp_path), data_format='cub200', split='test'))
    assert ds.metainfo['classes'] == ('Black footed Albatross', 'Laysan Albatross')
    assert ds.metainfo['templates'] == ('a photo of a {}, a type of bird.', )
    assert ds.get_labels().tolist() == [0, 1]  # the two images with is_training_image 0
    assert ds.get_data_info(1)['img_path'].endswith('c.jpg')


def test_karpathy_retrieval_json(tmp_path):
    os.makedirs(tmp_path / 'val2014')
    images = []
    for i, split in enumerate(['test', 'train', 'test']):
        name = f'COCO_val2014_{i:012d}.jpg'
        _image(i).save(tmp_path / 'val2014' / name)
        images.append(dict(filepath='val2014', filename=name, split=split,
                           sentences=[dict(raw=f'caption {j} of image {i}') for j in range(6)]))
    (tmp_path / 'dataset_coco.json').write_text(json.dumps(dict(images=images)))
    pipeline = PIPELINE[:2] + [
        dict(type='TokenizeCaptions', context_length=12),
        dict(type='PackImageTextInputs', tokens_key='text_tokens'),
    ]
    ds = DATASETS.build(dict(type='KarpathyRetrievalDataset', data_root=str(tmp_path),
                             ann_file='dataset_coco.json', pipeline=pipeline))
    assert len(ds) == 2
    info = ds.get_data_info(1)
    assert info['img_path'] == osp.join(str(tmp_path), 'val2014', images[2]['filename'])
    assert info['captions'] == [f'caption {j} of image 2' for j in range(5)]
    item = ds[1]
    import open_clip
    assert torch.equal(item['data_samples'].text_tokens,
                       open_clip.tokenize(info['captions'], context_length=12))
    images[0]['sentences'] = images[0]['sentences'][:4]
    (tmp_path / 'dataset_coco.json').write_text(json.dumps(dict(images=images)))
    with pytest.raises(ValueError, match='4 captions, expected 5'):
        DATASETS.build(dict(type='KarpathyRetrievalDataset', data_root=str(tmp_path),
                            ann_file='dataset_coco.json'))


def test_benchmark_configs_cover_tables_6_7_8_with_their_metrics():
    import glob

    from mmengine.config import Config
    from mmpretrain.registry import METRICS

    from rils_mm.evaluation.paper_results import TABLE6_COLUMNS
    root = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'configs', 'benchmarks')
    zero_shot = {osp.basename(p)[:-3]: Config.fromfile(p)
                 for p in glob.glob(osp.join(root, 'zero_shot', '*.py'))}
    assert sorted(zero_shot) == sorted(TABLE6_COLUMNS) == sorted(TABLE6_DATASETS)
    for name, cfg in zero_shot.items():
        key, metric = TABLE6_DATASETS[name]
        assert cfg.benchmark_type == 'zero_shot'
        assert cfg.test_dataloader.dataset.key == key
        assert DATASETS.get(cfg.test_dataloader.dataset.type) is not None
        assert cfg.test_evaluator.type == 'ZeroShotAccuracy'
        assert cfg.test_evaluator.main_metric == metric
        assert METRICS.get(cfg.test_evaluator.type) is not None
        assert cfg.test_dataloader.dataset.pipeline[0].interpolation == 'bicubic'
    ood = sorted(osp.basename(p)[:-3] for p in glob.glob(osp.join(root, 'ood', '*.py')))
    assert ood == ['imagenet_a', 'imagenet_r', 'imagenet_sketch', 'imagenetv2', 'objectnet']
    for name in ood:
        cfg = Config.fromfile(osp.join(root, 'ood', name + '.py'))
        assert cfg.test_evaluator.main_metric == 'top1'
    assert Config.fromfile(osp.join(root, 'ood', 'imagenet_a.py')).test_dataloader.dataset \
        .wnid_subset == 'imagenet-a'
    for name in ('coco_karpathy_5k', 'flickr30k_karpathy_1k'):
        cfg = Config.fromfile(osp.join(root, 'retrieval', name + '.py'))
        assert cfg.benchmark_type == 'retrieval'
        assert cfg.test_dataloader.dataset.num_captions == 5
        assert cfg.test_evaluator.topk == (1, 5, 10)
