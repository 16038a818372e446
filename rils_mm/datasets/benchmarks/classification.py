"""Zero-shot classification benchmarks (paper Tables 6 and 8) read from the files
they ship as: an ImageFolder tree, a torchvision data set's own layout, WebDataset
shards as clip-benchmark writes them, or CUB-200-2011's text files."""
import os.path as osp
import tarfile
from typing import List, Optional, Sequence

import numpy as np
from mmpretrain.datasets.base_dataset import BaseDataset
from mmpretrain.registry import DATASETS

from ..transforms import decode_image_bgr
from .layouts import (
    WDS_IMAGE_EXTS,
    clean_torchvision_classname,
    cub_classname,
    image_folder,
    import_class,
    labels_of,
    pil_to_bgr,
    read_bytes,
)

__all__ = ['ZeroShotBenchmarkDataset']


@DATASETS.register_module()
class ZeroShotBenchmarkDataset(BaseDataset):
    """A zero-shot classification benchmark read from the files it ships as.

    ``metainfo`` holds ``classes`` and ``templates`` (``{}`` placeholder) for
    :class:`ZeroShotClassifierHook`.

    Class names: ``classnames`` (a list) if given; else ``classnames_file``
    (a JSON ``{key: [names]}``); else, except for WebDataset shards,
    clip-benchmark's shipped ``en_classnames.json`` when it has ``key``;
    else the data set's own names (folder names, torchvision's ``classes``,
    ``classnames.txt`` of the shards, CUB's ``classes.txt``). Templates:
    ``templates`` / ``templates_file`` / the shards'
    ``zeroshot_classification_templates.txt`` / clip-benchmark's shipped
    templates (see :func:`rils_mm.evaluation.load_templates`).

    Args:
        key (str): clip-benchmark's name of the data set (``'cifar10'``,
            ``'fgvc_aircraft'``, ``'imagenet1k'``, ...), used to look up the
            metadata.
        data_root (str): where the data set lies.
        data_format (str): one of

            * ``'imagefolder'``: ``data_root/<class>/<image>``; labels follow
              ``folder_labels``.
            * ``'torchvision'``: ``dataset_cls`` (a torchvision.datasets name
              or a dotted path, e.g. clip-benchmark's
              ``clip_benchmark.datasets.objectnet.ObjectNetDataset``) built
              with ``root=data_root``, ``download=False`` and
              ``dataset_kwargs``.
            * ``'wds'``: clip-benchmark's WebDataset export
              (``data_root/<split>/nshards.txt``, ``0.tar`` ...; ``.cls``
              labels).
            * ``'cub200'``: ``data_root/CUB_200_2011`` (or ``data_root``
              itself) with ``images.txt``, ``image_class_labels.txt``,
              ``train_test_split.txt``, ``classes.txt``.
        split (str): ``'test'`` / ``'train'`` (wds, cub200). Defaults to
            'test'.
        folder_labels (str): for ``imagefolder``: ``'sorted'`` (class = rank
            of the folder name), ``'wnid'`` (folders are ImageNet WordNet ids;
            label = ImageNet class index, or index within ``wnid_subset``) or
            ``'index'`` (folders are class indices, as ImageNet-V2 ships).
        wnid_subset (str, optional): ``'imagenet-a'`` / ``'imagenet-r'``: the
            200-class subset (labels and class names restricted to it).
        classnames, classnames_file, templates, templates_file: overrides.
        dataset_cls (str): for ``torchvision``.
        dataset_kwargs (dict): for ``torchvision``.
        label_offset (int): subtracted from every label (torchvision's
            CLEVR labels are object counts 3-10). Defaults to 0.
        pipeline (Sequence): transforms after decoding.
    """

    def __init__(self,
                 key: str,
                 data_root: str,
                 data_format: str = 'imagefolder',
                 split: str = 'test',
                 folder_labels: str = 'sorted',
                 wnid_subset: Optional[str] = None,
                 classnames: Optional[Sequence[str]] = None,
                 classnames_file: Optional[str] = None,
                 templates: Optional[Sequence[str]] = None,
                 templates_file: Optional[str] = None,
                 dataset_cls: Optional[str] = None,
                 dataset_kwargs: Optional[dict] = None,
                 label_offset: int = 0,
                 pipeline: Sequence = (),
                 test_mode: bool = True,
                 **kwargs) -> None:
        formats = ('imagefolder', 'torchvision', 'wds', 'cub200')
        if data_format not in formats:
            raise ValueError(f'data_format must be one of {formats}, got '
                             f'{data_format!r}')
        if folder_labels not in ('sorted', 'wnid', 'index'):
            raise ValueError("folder_labels must be 'sorted', 'wnid' or "
                             f"'index', got {folder_labels!r}")
        self.key = key
        self.data_format = data_format
        self.split = split
        self.folder_labels = folder_labels
        self.wnid_subset = wnid_subset
        self.dataset_cls = dataset_cls
        self.dataset_kwargs = dict(dataset_kwargs or {})
        self.label_offset = label_offset
        self._tv = None
        self._own_classes: Optional[List[str]] = None
        self._own_templates: Optional[List[str]] = None
        self._cls_args = (classnames, classnames_file, templates,
                          templates_file)
        super().__init__(
            ann_file='',
            data_root=data_root,
            pipeline=pipeline,
            test_mode=test_mode,
            **kwargs)

    # ------------------------------------------------------------ metadata
    def _resolve_metainfo(self) -> None:
        from rils_mm.evaluation.benchmark_meta import (
            imagenet_subset_wnids,
            load_classnames,
            load_templates,
        )
        classnames, classnames_file, templates, templates_file = \
            self._cls_args
        if classnames is not None:
            classes = list(classnames)
        elif classnames_file is not None:
            classes = load_classnames(self.key, classnames_file)
        elif self.data_format == 'wds' and self._own_classes:
            classes = self._own_classes
        else:
            classes = load_classnames(self.key) or self._own_classes
            if classes is not None and self.wnid_subset is not None and \
                    len(classes) == 1000:
                from rils_mm.evaluation.benchmark_meta import imagenet_wnids
                keep = set(imagenet_subset_wnids(self.wnid_subset))
                classes = [
                    c for c, w in zip(classes, imagenet_wnids()) if w in keep
                ]
        if not classes:
            raise ValueError(
                f'no class names for {self.key!r} ({self.data_root!r}): give '
                'classnames= or classnames_file=')
        if templates is not None:
            tpl = [t.replace('{c}', '{}') for t in templates]
        elif templates_file is not None:
            tpl = load_templates(self.key, templates_file)
        elif self.data_format == 'wds' and self._own_templates:
            tpl = [t.replace('{c}', '{}') for t in self._own_templates]
        else:
            tpl = load_templates(self.key)
        self._metainfo.update(classes=tuple(classes), templates=tuple(tpl))

    # ------------------------------------------------------------ readers
    def load_data_list(self) -> List[dict]:
        reader = getattr(self, f'_load_{self.data_format}')
        data_list = reader()
        self._resolve_metainfo()
        num_classes = len(self._metainfo['classes'])
        for info in data_list:
            info['gt_label'] -= self.label_offset
            if not 0 <= info['gt_label'] < num_classes:
                raise ValueError(
                    f'{self.data_root!r}: label {info["gt_label"]} of '
                    f'{info.get("img_path", info)} is outside the '
                    f'{num_classes} class names of {self.key!r}')
        return data_list

    def _load_imagefolder(self) -> List[dict]:
        from rils_mm.evaluation.benchmark_meta import imagenet_subset_wnids, imagenet_wnids
        folders, samples = image_folder(self.data_root)
        if self.folder_labels == 'sorted':
            self._own_classes = [f.replace('_', ' ') for f in folders]
            mapping = list(range(len(folders)))
        elif self.folder_labels == 'index':
            try:
                mapping = [int(f) for f in folders]
            except ValueError:
                raise ValueError(
                    f'{self.data_root!r}: folder_labels="index" needs folders '
                    f'named by class index, found {folders[:5]}') from None
        else:
            wnids = imagenet_subset_wnids(self.wnid_subset) \
                if self.wnid_subset else imagenet_wnids()
            index = {w: i for i, w in enumerate(wnids)}
            unknown = [f for f in folders if f not in index]
            if unknown:
                raise ValueError(
                    f'{self.data_root!r}: folders {unknown[:5]} are not '
                    + (f'{self.wnid_subset} ' if self.wnid_subset else '')
                    + 'ImageNet WordNet ids (folder_labels="wnid")')
            mapping = [index[f] for f in folders]
        return [dict(img_path=p, gt_label=mapping[i]) for p, i in samples]

    def _load_torchvision(self) -> List[dict]:
        if not self.dataset_cls:
            raise ValueError('data_format="torchvision" needs dataset_cls, '
                             'e.g. "CIFAR10"')
        cls = import_class(self.dataset_cls)
        kwargs = dict(self.dataset_kwargs)
        import inspect
        params = inspect.signature(cls.__init__).parameters
        if 'download' in params:
            kwargs.setdefault('download', False)
        if 'transform' in params:
            kwargs.setdefault('transform', None)
        try:
            self._tv = cls(root=self.data_root, **kwargs)
        except (RuntimeError, FileNotFoundError) as e:
            raise FileNotFoundError(
                f'{self.dataset_cls} could not read {self.data_root!r} '
                f'({e}); lay the data set out as torchvision expects '
                '(nothing is downloaded)') from None
        names = getattr(self._tv, 'classes', None) or getattr(
            self._tv, 'categories', None)
        if names:
            self._own_classes = [
                clean_torchvision_classname(self.key, n) for n in names
            ]
        return [
            dict(source_index=i, gt_label=label)
            for i, label in enumerate(labels_of(self._tv))
        ]

    def _load_wds(self) -> List[dict]:
        split_dir = osp.join(self.data_root, self.split)
        nshards_file = osp.join(split_dir, 'nshards.txt')
        if not osp.isfile(nshards_file):
            raise FileNotFoundError(
                f'{nshards_file!r} not found: expected clip-benchmark\'s '
                'WebDataset layout <root>/<split>/nshards.txt, 0.tar, ...')
        with open(nshards_file) as f:
            nshards = int(f.read().strip())
        for name, attr in (('classnames.txt', '_own_classes'),
                           ('zeroshot_classification_templates.txt',
                            '_own_templates')):
            path = osp.join(self.data_root, name)
            if osp.isfile(path):
                with open(path, encoding='utf-8') as f:
                    lines = [ln.strip() for ln in f.read().splitlines()]
                setattr(self, attr, [ln for ln in lines if ln])
        data_list = []
        for s in range(nshards):
            tar_path = osp.join(split_dir, f'{s}.tar')
            if not osp.isfile(tar_path):
                raise FileNotFoundError(f'shard {tar_path!r} missing '
                                        f'(nshards.txt says {nshards})')
            samples = {}
            with tarfile.open(tar_path) as tar:
                for m in tar:
                    if not m.isfile():
                        continue
                    base = osp.basename(m.name)
                    key, _, ext = base.partition('.')
                    entry = samples.setdefault(key, {})
                    if ext == 'cls':
                        entry['cls'] = int(
                            tar.extractfile(m).read().decode().strip())
                    elif ext.lower() in WDS_IMAGE_EXTS:
                        entry.setdefault(
                            'img', (ext.lower(), m.offset_data, m.size))
            for key in sorted(samples):  # clip-benchmark keys are zero-padded
                entry = samples[key]
                if 'img' not in entry or 'cls' not in entry:
                    raise ValueError(
                        f'{tar_path!r}: sample {key!r} lacks an image '
                        f'({"/".join(WDS_IMAGE_EXTS)}) or a .cls label')
                _, offset, size = entry['img']
                data_list.append(
                    dict(
                        img_path=f'{tar_path}::{key}',
                        tar_offset=(tar_path, offset, size),
                        gt_label=entry['cls']))
        return data_list

    def _load_cub200(self) -> List[dict]:
        root = self.data_root
        if osp.isdir(osp.join(root, 'CUB_200_2011')):
            root = osp.join(root, 'CUB_200_2011')

        def table(name):
            path = osp.join(root, name)
            if not osp.isfile(path):
                raise FileNotFoundError(f'CUB-200-2011 file {path!r} missing')
            with open(path) as f:
                rows = [ln.split(maxsplit=1) for ln in f if ln.strip()]
            return {int(k): v.strip() for k, v in rows}

        images = table('images.txt')
        labels = table('image_class_labels.txt')
        is_train = table('train_test_split.txt')
        classes = table('classes.txt')
        self._own_classes = [
            cub_classname(classes[k]) for k in sorted(classes)
        ]
        want = '1' if self.split == 'train' else '0'
        return [
            dict(
                img_path=osp.join(root, 'images', images[i]),
                gt_label=int(labels[i]) - 1) for i in sorted(images)
            if is_train[i] == want
        ]

    # ------------------------------------------------------------ access
    def get_data_info(self, idx: int) -> dict:
        info = super().get_data_info(idx)
        if 'source_index' in info:
            img = pil_to_bgr(self._tv[info['source_index']][0])
        elif 'tar_offset' in info:
            path, offset, size = info['tar_offset']
            with open(path, 'rb') as f:
                f.seek(offset)
                img = decode_image_bgr(f.read(size))
        else:
            img = decode_image_bgr(read_bytes(info['img_path']))
        info.update(img=img, img_shape=img.shape[:2], ori_shape=img.shape[:2])
        return info

    def get_labels(self) -> np.ndarray:
        """Labels of all samples, without decoding any image."""
        return np.array([
            BaseDataset.get_data_info(self, i)['gt_label']
            for i in range(len(self))
        ])

    @property
    def templates(self) -> tuple:
        return self._metainfo['templates']
