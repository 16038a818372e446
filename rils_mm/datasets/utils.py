"""Shared pieces of the image-text data sets: annotation files and skip accounting.

:class:`~rils_mm.datasets.ImageTextDataset`, :class:`~rils_mm.datasets.ZeroShotClsDataset`
and :class:`~rils_mm.datasets.WebImageTextDataset` read annotation rows and describe bad
samples the same way, so that :class:`~rils_mm.engine.hooks.DataSkipCounterHook` counts
them alike.
"""
import csv
import json
import os.path as osp
import re
from typing import Dict, List, Optional, Sequence, Tuple

from .transforms import InvalidCaptionError

__all__ = [
    'AnnotationKeyError', 'read_annotation_rows', 'resolve_image_root',
    'describe_failure', 'short_message', 'attach_skip_info', 'MAX_REASONS_PER_SAMPLE'
]

#: At most this many skip reasons are kept per returned sample.
MAX_REASONS_PER_SAMPLE = 10


class AnnotationKeyError(KeyError):
    """A required column / key is missing from an annotation file.

    Unlike a bare ``KeyError`` its message is printed without extra quotes.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ''


def _annotation_format(path: str) -> str:
    ext = osp.splitext(path)[1].lower()
    formats = {'.csv': 'csv', '.tsv': 'tsv', '.jsonl': 'jsonl', '.json': 'json'}
    if ext not in formats:
        raise ValueError(f'Unsupported annotation file {path!r}: the extension '
                         f'must be one of {sorted(formats)}')
    return formats[ext]


def read_annotation_rows(
        path: str,
        required_keys: Sequence[str]) -> Tuple[List[Tuple[int, Dict]], List]:
    """Read an annotation file into ``(line_number, row_dict)`` pairs.

    ``.csv`` (comma) and ``.tsv`` (tab) files need a header row; ``.jsonl`` has one
    JSON object per line (blank lines ignored); ``.json`` holds a list of objects.

    Args:
        path (str): Annotation file.
        required_keys (Sequence[str]): Keys that must exist as columns (CSV/TSV)
            or in at least one object (JSON/JSONL).

    Returns:
        tuple: ``(rows, unparsable)``, where ``rows`` is a list of
        ``(line_number, dict)`` and ``unparsable`` lists ``(line_number,
        reason)`` of JSON lines that are not objects.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        AnnotationKeyError: If a required key is missing; the message names the
            file, the missing key and the keys that exist.
        ValueError: If the extension is not supported or the file is empty.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'Annotation file not found: {path!r}')
    fmt = _annotation_format(path)
    rows: List[Tuple[int, Dict]] = []
    unparsable: List[Tuple[int, str]] = []
    if fmt in ('csv', 'tsv'):
        with open(path, newline='', encoding='utf-8-sig') as f:
            reader = csv.DictReader(f, delimiter='\t' if fmt == 'tsv' else ',')
            columns = [c for c in (reader.fieldnames or []) if c is not None]
            if not columns:
                raise ValueError(f'Annotation file {path!r} is empty (no '
                                 'header row)')
            _check_keys(path, required_keys, columns, 'column')
            for row in reader:
                rows.append((reader.line_num, row))
    else:
        with open(path, encoding='utf-8-sig') as f:
            if fmt == 'json':
                objs = json.load(f)
                if not isinstance(objs, list):
                    raise ValueError(f'{path!r} must hold a JSON list of '
                                     f'objects, got {type(objs).__name__}')
                items = list(enumerate(objs, start=1))
            else:
                items = []
                for line_no, line in enumerate(f, start=1):
                    if not line.strip():
                        continue
                    try:
                        items.append((line_no, json.loads(line)))
                    except json.JSONDecodeError as e:
                        unparsable.append((line_no, f'invalid JSON ({e.msg})'))
        seen_keys: Dict[str, None] = {}
        for line_no, obj in items:
            if isinstance(obj, dict):
                rows.append((line_no, obj))
                seen_keys.update(dict.fromkeys(obj))
            else:
                unparsable.append(
                    (line_no, f'not a JSON object ({type(obj).__name__})'))
        if not rows and not unparsable:
            raise ValueError(f'Annotation file {path!r} has no rows')
        if rows:
            _check_keys(path, required_keys, list(seen_keys), 'key')
    return rows, unparsable


def _check_keys(path: str, required: Sequence[str], existing: List[str],
                what: str) -> None:
    for key in required:
        if key not in existing:
            raise AnnotationKeyError(
                f'Annotation file {path!r} has no {what} {key!r}; its '
                f'{what}s are {existing}. Set the dataset\'s key arguments '
                '(e.g. img_key / caption_key) to match the file.')


def resolve_image_root(ann_file: str, data_root: str, img_prefix: str) -> str:
    """Folder that relative image paths are joined to.

    ``data_prefix['img_path']`` (already joined to ``data_root`` by mmengine)
    wins, then ``data_root``, then the folder of the annotation file.
    """
    if img_prefix:
        return img_prefix
    if data_root:
        return data_root
    return osp.dirname(osp.abspath(ann_file))


def short_message(exc: BaseException, limit: int = 160) -> str:
    """First line of ``str(exc)`` without object reprs, at most ``limit``
    characters (the exception's type name if the message is empty)."""
    msg = str(exc).strip()
    msg = msg.splitlines()[0] if msg else ''
    msg = re.sub(r'\s*<[^<>]* at 0x[0-9a-fA-F]+>', '', msg).strip()
    return msg[:limit] or type(exc).__name__


def describe_failure(exc: Optional[BaseException], img_path: str) -> str:
    """Turn a pipeline failure into a short, human-readable skip reason."""
    if exc is None:
        return f'pipeline returned None: {img_path}'
    msg = short_message(exc)
    if isinstance(exc, InvalidCaptionError):
        return f'bad caption: {img_path} ({msg})'
    if isinstance(exc, FileNotFoundError):
        return f'missing image: {img_path}'
    if isinstance(exc, AssertionError) and 'failed to load image' in msg:
        # mmcv's cv2 backend returns None for undecodable bytes, which
        # LoadImageFromFile turns into this AssertionError.
        return f'corrupt image: {img_path} (cannot decode)'
    if isinstance(exc, OSError):  # PIL: OSError / UnidentifiedImageError
        return f'corrupt image: {img_path} ({msg})'
    return f'pipeline error: {img_path} ({type(exc).__name__}: {msg})'


def attach_skip_info(data: dict, num_skipped: int, reasons: List[str]) -> dict:
    """Write ``num_skipped`` / ``skip_reasons`` into the packed sample."""
    data_samples = data.get('data_samples') if isinstance(data, dict) else None
    if data_samples is not None and hasattr(data_samples, 'set_metainfo'):
        data_samples.set_metainfo(
            dict(
                num_skipped=int(num_skipped),
                skip_reasons=list(reasons[:MAX_REASONS_PER_SAMPLE])))
    return data
