"""Zero-shot classification data set: labelled images plus class names and prompt
templates.

The class names and templates travel in the data set's ``metainfo`` (``classes`` and
``templates``) so that a zero-shot head / metric can build its text classifier from
``runner.val_dataloader.dataset.metainfo``.
"""
import os.path as osp
from typing import List, Sequence, Union

from mmengine.fileio import list_from_file
from mmpretrain.datasets.base_dataset import BaseDataset
from mmpretrain.registry import DATASETS

from .utils import read_annotation_rows, resolve_image_root

__all__ = ['ZeroShotClsDataset']


def _read_lines(value: Union[str, Sequence[str]], what: str) -> List[str]:
    """A list of non-empty stripped strings from a text file or a sequence."""
    if isinstance(value, str):
        if not osp.isfile(value):
            raise FileNotFoundError(f'{what} file not found: {value!r}')
        items = [line.strip() for line in list_from_file(value)]
        items = [line for line in items if line]
        source = value
    elif isinstance(value, (list, tuple)):
        items = list(value)
        source = f'the {what} list'
        for i, item in enumerate(items):
            if not isinstance(item, str) or not item.strip():
                raise ValueError(f'{what} #{i} in {source} must be a '
                                 f'non-empty str, got {item!r}')
    else:
        raise TypeError(f'{what} must be a file path or a list of str, got '
                        f'{type(value).__name__}')
    if not items:
        raise ValueError(f'No {what} found in {source!r}')
    return items


@DATASETS.register_module()
class ZeroShotClsDataset(BaseDataset):
    """Images with integer labels for zero-shot classification.

    The annotation file (CSV/TSV/JSONL, see
    :func:`~rils_mm.datasets.utils.read_annotation_rows`) has an image path
    column ``img_key`` and an integer class index column ``label_key``. Relative
    image paths are joined to ``data_prefix`` / ``data_root`` / the annotation
    file's folder (first non-empty). Each data info is
    ``dict(img_path=..., gt_label=int)``, so the standard pipeline
    ``LoadImageFromFile -> ResizeEdge -> CenterCrop -> PackInputs`` yields
    ``gt_label`` in the data samples.

    ``metainfo`` is ``{'classes': tuple(classnames), 'templates':
    tuple(templates)}``.

    Args:
        ann_file (str): Annotation file.
        classnames (str | Sequence[str]): Text file with one class name per
            line (blank lines ignored), or the names themselves. Line / item
            ``i`` is the name of label ``i``.
        templates (str | Sequence[str]): Text file with one prompt template per
            line, or the templates themselves; each must contain ``'{}'``
            (e.g. ``'a photo of a {}.'``).
        data_root (str): Root of ``ann_file`` and of relative image paths.
            Defaults to ''.
        img_key (str): Image path column. Defaults to 'filepath'.
        label_key (str): Label column. Defaults to 'label'.
        pipeline (Sequence): Transform configs or callables. Defaults to ().
        test_mode (bool): Defaults to True (evaluation data set).
        **kwargs: Other arguments of :class:`mmpretrain.datasets.BaseDataset`.
    """

    def __init__(self,
                 ann_file: str,
                 classnames: Union[str, Sequence[str]],
                 templates: Union[str, Sequence[str]],
                 data_root: str = '',
                 img_key: str = 'filepath',
                 label_key: str = 'label',
                 pipeline: Sequence = (),
                 test_mode: bool = True,
                 **kwargs) -> None:
        classes = _read_lines(self._maybe_join(classnames, data_root),
                              'classnames')
        template_list = _read_lines(
            self._maybe_join(templates, data_root), 'templates')
        for i, tpl in enumerate(template_list):
            if '{}' not in tpl:
                src = templates if isinstance(templates, str) else 'list'
                raise ValueError(f'Template #{i} {tpl!r} (from {src}) has no '
                                 "'{}' placeholder for the class name")
        self.img_key = img_key
        self.label_key = label_key
        metainfo = dict(kwargs.pop('metainfo', None) or {})
        metainfo.update(classes=tuple(classes), templates=tuple(template_list))
        super().__init__(
            ann_file=ann_file,
            metainfo=metainfo,
            data_root=data_root,
            pipeline=pipeline,
            test_mode=test_mode,
            **kwargs)

    @staticmethod
    def _maybe_join(value, data_root):
        if isinstance(value, str) and data_root and not osp.isabs(value) \
                and not osp.isfile(value):
            return osp.join(data_root, value)
        return value

    def load_data_list(self) -> List[dict]:
        """Read ``(img_path, gt_label)`` pairs and validate the labels."""
        rows, unparsable = read_annotation_rows(self.ann_file,
                                                (self.img_key, self.label_key))
        if unparsable:
            line_no, why = unparsable[0]
            raise ValueError(f'{self.ann_file!r} line {line_no}: {why}')
        root = resolve_image_root(self.ann_file, self.data_root,
                                  self.img_prefix)
        num_classes = len(self._metainfo['classes'])
        data_list = []
        for line_no, row in rows:
            img = row.get(self.img_key)
            if not isinstance(img, str) or not img.strip():
                raise ValueError(f'{self.ann_file!r} line {line_no}: missing '
                                 f'{self.img_key!r}')
            raw = row.get(self.label_key)
            try:
                if isinstance(raw, (bool, float)):
                    raise ValueError
                label = int(str(raw).strip())
            except (TypeError, ValueError):
                raise ValueError(f'{self.ann_file!r} line {line_no}: '
                                 f'{self.label_key!r} must be an integer '
                                 f'class index, got {raw!r}') from None
            if not 0 <= label < num_classes:
                raise ValueError(f'{self.ann_file!r} line {line_no}: label '
                                 f'{label} out of range [0, {num_classes}) '
                                 f'({num_classes} classnames)')
            img = img.strip()
            data_list.append(
                dict(
                    img_path=img if osp.isabs(img) else osp.join(root, img),
                    gt_label=label))
        if not data_list:
            raise ValueError(f'Annotation file {self.ann_file!r} has no rows')
        return data_list

    @property
    def templates(self) -> tuple:
        """The prompt templates."""
        return self._metainfo['templates']

    def extra_repr(self) -> List[str]:
        """Extra lines for ``repr``."""
        return super().extra_repr() + [
            f'Number of templates: \t{len(self.templates)}'
        ]
