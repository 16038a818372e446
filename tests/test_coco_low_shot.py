"""The low-shot COCO sampler (paper Table 5): seeded, deterministic, keeps every
category it can, and writes annotation files mmdet reads."""
import itertools
import json
import runpy

import numpy as np
import pytest

from rils_mm.datasets.coco_low_shot import low_shot_coco, low_shot_name, sample_coco_images

ROOT = __file__.rsplit('/tests/', 1)[0]


def synthetic_coco(num_images=200, num_common=5, num_rare=6, seed=0):
    """Common categories everywhere; each rare one in exactly one image; some
    images unannotated."""
    rng = np.random.default_rng(seed)
    cats = [dict(id=100 + c, name=f'c{c}') for c in range(num_common + num_rare)]
    images = [dict(id=1000 + i, file_name=f'{i:012d}.jpg', width=64, height=64)
              for i in range(num_images)]
    anns = []
    for i in range(num_images - 10):  # the last 10 images have no annotation
        for c in rng.choice(num_common, size=int(rng.integers(1, 3)), replace=False):
            anns.append(dict(id=len(anns) + 1, image_id=1000 + i, category_id=100 + int(c),
                             bbox=[0, 0, 4, 4], area=16, iscrowd=0))
    rare_images = rng.choice(num_images - 10, size=num_rare, replace=False)
    for r, i in enumerate(rare_images):
        anns.append(dict(id=len(anns) + 1, image_id=1000 + int(i),
                         category_id=100 + num_common + r, bbox=[0, 0, 4, 4], area=16,
                         iscrowd=0))
    return dict(info={}, licenses=[], images=images, annotations=anns, categories=cats)


def categories_of(coco, image_ids):
    ids = set(image_ids)
    return {a['category_id'] for a in coco['annotations'] if a['image_id'] in ids}


@pytest.mark.parametrize('fraction', [0.01, 0.02, 0.05, 0.1, 0.2, 0.5])
def test_fraction_of_annotated_images_with_every_category(fraction):
    coco = synthetic_coco()
    ids = sample_coco_images(coco, fraction, seed=0)
    assert len(ids) == max(1, round(fraction * 190)) == len(set(ids))
    annotated = {a['image_id'] for a in coco['annotations']}
    assert set(ids) <= annotated
    if len(ids) >= 6:  # enough images for the 6 single-image rare categories
        assert categories_of(coco, ids) == {c['id'] for c in coco['categories']}


def test_keeps_as_many_categories_as_any_subset_of_that_size():
    coco = synthetic_coco(num_images=40, num_common=2, num_rare=5, seed=3)
    ann_ids = sorted({a['image_id'] for a in coco['annotations']})
    for n in (1, 2, 3, 4):
        ids = sample_coco_images(coco, n / len(ann_ids), seed=1)
        best = max(len(categories_of(coco, s)) for s in itertools.combinations(ann_ids, n))
        assert len(ids) == n and len(categories_of(coco, ids)) == best


def test_seeded_and_deterministic():
    coco = synthetic_coco()
    a = sample_coco_images(coco, 0.2, seed=0)
    assert a == sample_coco_images(coco, 0.2, seed=0)
    assert a != sample_coco_images(coco, 0.2, seed=1)
    # the file content is the same bytes for the same arguments
    assert json.dumps(low_shot_coco(coco, 0.2, 0)) == json.dumps(low_shot_coco(coco, 0.2, 0))


def test_output_file_keeps_label_space_and_all_annotations_of_chosen_images(
        tmp_path, capsys):
    coco = synthetic_coco()
    src = tmp_path / 'instances_train2017.json'
    src.write_text(json.dumps(coco))
    tool = runpy.run_path(f'{ROOT}/tools/dataset_converters/coco_low_shot.py')
    tool['main']([str(src), '--out-dir', str(tmp_path / 'out'), '--fractions', '0.1', '0.5',
                  '--seed', '7'])
    out = capsys.readouterr().out.split()
    assert [p.rsplit('/', 1)[1] for p in out] == [
        'instances_train2017_10pct_seed7.json', 'instances_train2017_50pct_seed7.json']
    assert low_shot_name('instances_train2017.json', 0.01, 0) == \
        'instances_train2017_1pct_seed0.json'
    sub = json.loads(open(out[0]).read())
    assert sub['categories'] == coco['categories']
    chosen = {img['id'] for img in sub['images']}
    assert chosen == set(sample_coco_images(coco, 0.1, seed=7))
    assert sub['annotations'] == [a for a in coco['annotations'] if a['image_id'] in chosen]
    assert sub['info']['low_shot'] == dict(fraction=0.1, seed=7, num_images=19)


def test_bad_input_names_the_file_and_key(tmp_path):
    with pytest.raises(KeyError, match=r'x\.json.*"annotations"'):
        sample_coco_images(dict(images=[], categories=[]), 0.1, source='x.json')
    coco = synthetic_coco()
    coco['annotations'][0]['image_id'] = 5
    with pytest.raises(KeyError, match='image_id 5'):
        sample_coco_images(coco, 0.1)
    with pytest.raises(ValueError, match='fraction'):
        sample_coco_images(synthetic_coco(), 0.0)
