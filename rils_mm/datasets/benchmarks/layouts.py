"""The file layouts downstream benchmarks ship in: ImageFolder trees, torchvision
data sets, class-name clean-ups (clip-benchmark's), images to BGR arrays."""
import importlib
import os
import os.path as osp
from typing import List

import numpy as np

__all__ = [
    'pil_to_bgr',
    'read_bytes',
    'image_folder',
    'labels_of',
    'import_class',
    'cub_classname',
    'clean_torchvision_classname',
    'IMG_EXTENSIONS',
    'WDS_IMAGE_EXTS'
]

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif',
                  '.tiff', '.webp')
WDS_IMAGE_EXTS = ('webp', 'png', 'jpg', 'jpeg')  # clip-benchmark's order


def pil_to_bgr(img) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(img.convert('RGB'))[..., ::-1])


def read_bytes(path: str) -> bytes:
    with open(path, 'rb') as f:
        return f.read()


def image_folder(root: str) -> tuple:
    """``(sorted class folder names, [(path, folder index)])`` of an
    ImageFolder tree (torchvision's rules: one sub-folder a class, files with
    an image extension, anywhere below it)."""
    if not osp.isdir(root):
        raise FileNotFoundError(f'image folder not found: {root!r}')
    folders = sorted(e.name for e in os.scandir(root) if e.is_dir())
    if not folders:
        raise ValueError(f'{root!r} has no class sub-folders (expected '
                         'root/<class>/<image>)')
    samples = []
    for i, name in enumerate(folders):
        for dirpath, _, files in sorted(os.walk(osp.join(root, name))):
            for fname in sorted(files):
                if fname.lower().endswith(IMG_EXTENSIONS):
                    samples.append((osp.join(dirpath, fname), i))
    if not samples:
        raise ValueError(f'{root!r} has no images with extensions '
                         f'{IMG_EXTENSIONS}')
    return folders, samples


def labels_of(ds) -> List[int]:
    """Integer labels of a torchvision-style data set without decoding its
    images (the attribute torchvision's class keeps them in)."""
    label_map = getattr(ds, 'label_map', None)
    if label_map is not None and hasattr(ds, 'samples'):
        # clip-benchmark's ObjectNetDataset: label = rank of the image's folder
        # among ObjectNet's classes that map to ImageNet
        return [
            int(label_map[osp.basename(osp.dirname(p))]) for p, _ in ds.samples
        ]
    for attr in ('targets', '_labels', 'labels', 'y'):
        value = getattr(ds, attr, None)
        if value is not None and len(value) == len(ds):
            return [int(v) for v in value]
    for attr in ('samples', '_samples'):
        value = getattr(ds, attr, None)
        if value is not None and len(value) == len(ds):
            return [int(s[1]) for s in value]
    # last resort: index the data set (decodes every image once)
    return [int(ds[i][1]) for i in range(len(ds))]


def import_class(name: str):
    if '.' not in name:
        import torchvision.datasets as tvd
        if not hasattr(tvd, name):
            raise KeyError(f'torchvision.datasets has no {name!r}')
        return getattr(tvd, name)
    module, _, attr = name.rpartition('.')
    return getattr(importlib.import_module(module), attr)


def cub_classname(folder: str) -> str:
    """``'001.Black_footed_Albatross'`` -> ``'Black footed Albatross'``."""
    return folder.split('.', 1)[-1].replace('_', ' ')


def clean_torchvision_classname(key: str, name: str) -> str:
    # clip-benchmark's clean-ups of torchvision's names (datasets/builder.py)
    if key == 'food101':
        return name.replace('_', ' ')
    if key == 'sun397':
        return name.replace('_', ' ').replace('/', ' ')
    return name
