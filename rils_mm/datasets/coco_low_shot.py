"""Low-shot COCO (paper Sec. 4.2, Table 5): a seeded fraction of the annotated
train2017 images, written as a new annotation file.

Selection, for ``n = max(1, round(fraction * A))`` of the ``A`` annotated images:

1. *cover*: greedily add the image showing the most categories not yet covered
   (ties broken by a seeded random order) until every category that appears in
   the training set is covered or ``n`` images are taken, so each subset keeps
   every category it can;
2. *fill*: the remaining ``n - |cover|`` images are drawn uniformly at random
   (seeded) from the rest.

The output has the same ``info`` / ``licenses`` / ``categories`` (so the label
space does not change), the selected ``images`` in their original order, and all
their ``annotations``. Same input, fraction and seed give the same bytes.
"""
import json
import os
import os.path as osp
from collections import defaultdict
from typing import Dict, List, Sequence

import numpy as np

__all__ = ['LOW_SHOT_FRACTIONS', 'sample_coco_images', 'low_shot_coco', 'low_shot_name',
           'write_low_shot_files']

#: The sampling ratios of Table 5.
LOW_SHOT_FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)


def _check_coco(coco: dict, source: str) -> None:
    for key in ('images', 'annotations', 'categories'):
        if key not in coco:
            raise KeyError(f'{source}: not a COCO instances file, missing the '
                           f'"{key}" list (expected keys images/annotations/categories)')
    img_ids = {img['id'] for img in coco['images']}
    for ann in coco['annotations']:
        if ann.get('image_id') not in img_ids:
            raise KeyError(f'{source}: annotation {ann.get("id")} refers to image_id '
                           f'{ann.get("image_id")!r}, which is not in "images"')


def sample_coco_images(coco: dict, fraction: float, seed: int = 0,
                       source: str = '<coco dict>') -> List[int]:
    """Return the sorted ids of the selected images (see module docstring).

    Args:
        coco (dict): a COCO instances annotation dict.
        fraction (float): in ``(0, 1]``, of the annotated images.
        seed (int): seed of the numpy generator. Defaults to 0.
        source (str): name used in error messages.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f'fraction must be in (0, 1], got {fraction}')
    _check_coco(coco, source)
    cats_of: Dict[int, set] = defaultdict(set)
    for ann in coco['annotations']:
        cats_of[ann['image_id']].add(ann['category_id'])
    annotated = sorted(cats_of)
    if not annotated:
        raise ValueError(f'{source}: no image has an annotation')
    n = max(1, int(round(fraction * len(annotated))))
    rng = np.random.default_rng(seed)
    order = [annotated[i] for i in rng.permutation(len(annotated))]
    uncovered = set().union(*cats_of.values())
    chosen: List[int] = []
    taken = set()
    while uncovered and len(chosen) < n:
        best, gain = None, 0
        for img_id in order:  # first of the best in the seeded order wins ties
            g = len(cats_of[img_id] & uncovered)
            if g > gain and img_id not in taken:
                best, gain = img_id, g
        chosen.append(best)
        taken.add(best)
        uncovered -= cats_of[best]
    rest = [i for i in order if i not in taken]
    chosen += rest[:n - len(chosen)]  # ``order`` is already a seeded shuffle
    return sorted(chosen)


def low_shot_coco(coco: dict, fraction: float, seed: int = 0,
                  source: str = '<coco dict>') -> dict:
    """The sub-sampled annotation dict (see :func:`sample_coco_images`)."""
    keep = set(sample_coco_images(coco, fraction, seed, source))
    out = {k: v for k, v in coco.items() if k not in ('images', 'annotations')}
    out['images'] = [img for img in coco['images'] if img['id'] in keep]
    out['annotations'] = [a for a in coco['annotations'] if a['image_id'] in keep]
    out.setdefault('info', {})
    out['info'] = dict(out['info'], low_shot=dict(fraction=fraction, seed=seed,
                                                  num_images=len(keep)))
    return out


def low_shot_name(ann_file: str, fraction: float, seed: int) -> str:
    """``instances_train2017.json`` -> ``instances_train2017_1pct_seed0.json``."""
    stem = ann_file[:-5] if ann_file.endswith('.json') else ann_file
    pct = f'{fraction * 100:g}'.replace('.', 'p')
    return f'{stem}_{pct}pct_seed{seed}.json'


def write_low_shot_files(ann_file: str, out_dir: str,
                         fractions: Sequence[float] = LOW_SHOT_FRACTIONS,
                         seed: int = 0) -> List[str]:
    """Write one annotation file per fraction into ``out_dir``; return the paths."""
    with open(ann_file) as f:
        try:
            coco = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f'{ann_file}: not valid JSON ({e})') from e
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for fraction in fractions:
        sub = low_shot_coco(coco, fraction, seed, source=ann_file)
        path = osp.join(out_dir, low_shot_name(osp.basename(ann_file), fraction, seed))
        with open(path, 'w') as f:
            json.dump(sub, f, separators=(',', ':'))
        paths.append(path)
    return paths
