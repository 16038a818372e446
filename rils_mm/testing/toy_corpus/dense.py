"""Toy detection / segmentation sets in the real COCO, LVIS v1 and ADE20K formats.

The same scenes as the image-text corpus (:func:`corpus_scene`), rendered with
the annotations the shapes define: every visible object is an instance of its
``'<colour> <shape>'`` category (box = tight box of its visible mask; segmentation
= its polygon when unoccluded, else the compressed RLE of the visible part), and
the semantic map labels each pixel ``0`` (background, ADE20K's ignored "other")
or ``k + 1`` for category ``k``. Output is byte-identical for identical arguments.

Layouts (what mmdet's ``CocoDataset`` / ``LVISV1Dataset`` and mmseg's
``ADE20KDataset``-style loaders read)::

    coco/  train2017/000000000001.jpg ...  val2017/...
           annotations/instances_train2017.json  instances_val2017.json
    lvis/  train2017/... val2017/...           (LVIS v1 finds images via coco_url)
           annotations/lvis_v1_train.json  lvis_v1_val.json
    ade/   images/training/ADE_train_00000001.jpg  images/validation/...
           annotations/training/ADE_train_00000001.png  annotations/validation/...
"""
import dataclasses
import json
import os
import os.path as osp
from typing import Dict, List

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from .render import object_polygon, render_instance_masks, render_scene, render_semantic_mask
from .scene import get_classnames
from .writer import corpus_scene

__all__ = ['toy_coco_categories', 'generate_toy_coco', 'generate_toy_lvis',
           'generate_toy_ade']

_SPLITS = (('train', 'train2017'), ('val', 'val2017'))


def toy_coco_categories() -> List[dict]:
    """COCO categories: ids 1..K in :func:`get_classnames` order."""
    return [dict(id=i + 1, name=name, supercategory=name.split()[1])
            for i, name in enumerate(get_classnames())]


def _save_jpeg(img: Image.Image, path: str, quality: int = 95) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    img.save(path, format='JPEG', quality=quality)


def _instances(scene, size: int, image_id: int, next_ann_id: int) -> List[dict]:
    classes = get_classnames()
    anns = []
    for obj, visible in zip(scene.objects, render_instance_masks(scene, size)):
        area = int(visible.sum())
        if area == 0:  # fully occluded
            continue
        ys, xs = np.nonzero(visible)
        x0, y0 = int(xs.min()), int(ys.min())
        bbox = [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1]
        full = render_instance_masks(dataclasses.replace(scene, objects=[obj]), size)[0]
        if np.array_equal(full, visible):
            segm = [[round(c, 2) for xy in object_polygon(obj, size) for c in xy]]
        else:
            rle = mask_utils.encode(np.asfortranarray(visible.astype(np.uint8)))
            segm = dict(size=[int(s) for s in rle['size']],
                        counts=rle['counts'].decode('ascii'))
        anns.append(dict(id=next_ann_id + len(anns), image_id=image_id,
                         category_id=classes.index(obj.category) + 1, bbox=bbox,
                         area=area, segmentation=segm, iscrowd=0))
    return anns


def generate_toy_coco(out_dir: str, num_train: int = 16, num_val: int = 8,
                      image_size: int = 64, seed: int = 0) -> Dict[str, str]:
    """Write a toy COCO instances set; return its paths (``root``, ``train_ann``,
    ``val_ann``, ``train_img``, ``val_img``)."""
    paths = dict(root=out_dir)
    for split, folder in _SPLITS:
        num = num_train if split == 'train' else num_val
        images, anns = [], []
        for index in range(num):
            image_id = index + 1
            scene, _ = corpus_scene(seed, split, index)
            name = f'{image_id:012d}.jpg'
            _save_jpeg(render_scene(scene, image_size), osp.join(out_dir, folder, name))
            images.append(dict(id=image_id, file_name=name, width=image_size,
                               height=image_size))
            anns += _instances(scene, image_size, image_id, len(anns) + 1)
        coco = dict(info=dict(description=f'rils_mm toy COCO ({split}, seed {seed})'),
                    licenses=[], images=images, annotations=anns,
                    categories=toy_coco_categories())
        ann = osp.join(out_dir, 'annotations', f'instances_{folder}.json')
        os.makedirs(osp.dirname(ann), exist_ok=True)
        with open(ann, 'w') as f:
            json.dump(coco, f)
        paths[f'{split}_ann'] = ann
        paths[f'{split}_img'] = osp.join(out_dir, folder)
    return paths


def generate_toy_lvis(out_dir: str, num_train: int = 16, num_val: int = 8,
                      image_size: int = 64, seed: int = 0) -> Dict[str, str]:
    """Write the toy set in the LVIS v1 format: ``coco_url`` per image, exhaustive
    ``neg_category_ids`` (categories absent from the image), empty
    ``not_exhaustive_category_ids``, and a ``frequency`` per category
    (``'r'`` <= 10 training images, ``'c'`` <= 100, else ``'f'``, as LVIS defines)."""
    paths = generate_toy_coco(out_dir, num_train, num_val, image_size, seed)
    cats = toy_coco_categories()
    with open(paths['train_ann']) as f:
        train = json.load(f)
    images_of = {c['id']: set() for c in cats}
    for a in train['annotations']:
        images_of[a['category_id']].add(a['image_id'])
    for c in cats:
        n = len(images_of[c['id']])
        c.update(synset=c['name'].replace(' ', '_') + '.n.01', synonyms=[c['name']],
                 def_='', image_count=n, instance_count=n,
                 frequency='r' if n <= 10 else 'c' if n <= 100 else 'f')
        c['def'] = c.pop('def_')
    for split, folder in _SPLITS:
        with open(paths[f'{split}_ann']) as f:
            coco = json.load(f)
        present = {i['id']: set() for i in coco['images']}
        for a in coco['annotations']:
            present[a['image_id']].add(a['category_id'])
        for img in coco['images']:
            img['coco_url'] = f'http://images.cocodataset.org/{folder}/{img["file_name"]}'
            img['neg_category_ids'] = sorted({c['id'] for c in cats} - present[img['id']])
            img['not_exhaustive_category_ids'] = []
        coco['categories'] = cats
        ann = osp.join(out_dir, 'annotations', f'lvis_v1_{split}.json')
        with open(ann, 'w') as f:
            json.dump(coco, f)
        os.remove(paths[f'{split}_ann'])
        paths[f'{split}_ann'] = ann
    return paths


def generate_toy_ade(out_dir: str, num_train: int = 16, num_val: int = 8,
                     image_size: int = 64, seed: int = 0) -> Dict[str, str]:
    """Write a toy semantic segmentation set in the ADE20K layout (JPEG images,
    uint8 PNG label maps with 0 = ignored background, ``k + 1`` = class ``k``);
    load it with ``reduce_zero_label=True`` and ``metainfo=dict(classes=get_classnames())``."""
    paths = dict(root=out_dir)
    for split, folder in (('train', 'training'), ('val', 'validation')):
        num = num_train if split == 'train' else num_val
        tag = 'train' if split == 'train' else 'val'
        for index in range(num):
            scene, _ = corpus_scene(seed, split, index)
            name = f'ADE_{tag}_{index + 1:08d}'
            _save_jpeg(render_scene(scene, image_size),
                       osp.join(out_dir, 'images', folder, name + '.jpg'))
            seg = osp.join(out_dir, 'annotations', folder, name + '.png')
            os.makedirs(osp.dirname(seg), exist_ok=True)
            Image.fromarray(render_semantic_mask(scene, image_size), 'L').save(seg)
        paths[f'{split}_img'] = osp.join(out_dir, 'images', folder)
        paths[f'{split}_seg'] = osp.join(out_dir, 'annotations', folder)
    return paths
