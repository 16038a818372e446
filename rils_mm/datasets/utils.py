"""Shared pieces of the image-text data sets: annotation files and skip accounting.

:class:`~rils_mm.datasets.ImageTextDataset`, :class:`~rils_mm.datasets.ZeroShotClsDataset`
and :class:`~rils_mm.datasets.WebImageTextDataset` read annotation rows and describe bad
samples the same way, so that :class:`~rils_mm.engine.hooks.DataSkipCounterHook` counts
them alike.
"""
import contextlib
import csv
import json
import os.path as osp
import re
import warnings
from collections import Counter
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from PIL import Image

from ..utils.seeding import int_seed, seeded_generators  # noqa: F401 (re-exported)
from .transforms import InvalidCaptionError

__all__ = [
    'AnnotationKeyError', 'ImageTooLargeError', 'read_annotation_rows', 'resolve_image_root',
    'describe_failure', 'short_message', 'attach_skip_info', 'skip_kind', 'check_image_pixels',
    'MAX_REASONS_PER_SAMPLE', 'DEFAULT_MAX_IMAGE_PIXELS', 'int_seed', 'seeded_generators'
]

#: At most this many skip reasons are kept per returned sample.
MAX_REASONS_PER_SAMPLE = 10

#: Largest image (width x height) decoded by default: PIL's own refusal threshold
#: (``2 * PIL.Image.MAX_IMAGE_PIXELS``, about 179 megapixels), for both data set kinds.
DEFAULT_MAX_IMAGE_PIXELS = 2 * Image.MAX_IMAGE_PIXELS

# Lone surrogates that ``errors='surrogateescape'`` makes of bytes that are not UTF-8.
_UNDECODABLE = re.compile('[\udc80-\udcff]')


class ImageTooLargeError(OSError):
    """An image has more pixels than the data set's ``max_image_pixels``."""


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
        with open(path, newline='', encoding='utf-8-sig',
                  errors='surrogateescape') as f, _csv_field_limit():
            reader = csv.DictReader(f, delimiter='\t' if fmt == 'tsv' else ',')
            columns = [c for c in (reader.fieldnames or []) if c is not None]
            if not columns:
                raise ValueError(f'Annotation file {path!r} is empty (no '
                                 'header row)')
            _check_keys(path, required_keys, columns, 'column')
            try:
                for row in reader:
                    rows.append((reader.line_num, row))
            except csv.Error as e:
                raise ValueError(f'Annotation file {path!r}, line {reader.line_num}: '
                                 f'malformed {fmt.upper()} ({e})') from e
    else:
        with open(path, encoding='utf-8-sig', errors='surrogateescape') as f:
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
    return _drop_undecodable(rows, unparsable, required_keys)


def _drop_undecodable(rows: List[Tuple[int, Dict]], unparsable: List,
                      keys: Sequence[str]) -> Tuple[List[Tuple[int, Dict]], List]:
    """Move rows whose ``keys`` hold bytes that are not UTF-8 to ``unparsable``.

    Files are read with ``errors='surrogateescape'``, so one bad byte spoils only
    its row (named by line, column and byte) instead of the whole file.
    """
    good = []
    for line_no, row in rows:
        bad = None
        for key in keys:
            value = row.get(key)
            match = _UNDECODABLE.search(value) if isinstance(value, str) else None
            if match:
                byte = ord(match.group()) - 0xdc00
                bad = (f'{key!r} is not valid UTF-8 (byte 0x{byte:02x} at character '
                       f'{match.start()})')
                break
        if bad:
            unparsable.append((line_no, bad))
        else:
            good.append((line_no, row))
    return good, unparsable


@contextlib.contextmanager
def _csv_field_limit() -> Iterator[None]:
    """Lift the ``csv`` module's 128 KiB field limit while reading (captions of
    any length parse as in JSONL; the data sets decide what is too long).

    The limit is a C ``long``: ``sys.maxsize`` overflows it on Windows, so the
    largest value that fits is found by halving."""
    old = csv.field_size_limit()
    limit = 2**63 - 1
    while True:
        try:
            csv.field_size_limit(limit)
            break
        except OverflowError:
            limit //= 2
    try:
        yield
    finally:
        csv.field_size_limit(old)


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
    """First line of an exception's message without object reprs, at most
    ``limit`` characters (the exception's type name if the message is empty).

    webdataset appends the open stream and the URL to ``exc.args`` (or `` @
    <_io.BufferedReader ...>`` to the message); only the first argument and no
    ``<...>`` object repr is kept.
    """
    args = getattr(exc, 'args', ())
    if isinstance(exc, OSError) and len(args) == 2 and isinstance(args[1], str):
        msg = str(exc)  # (errno, strerror): str() shows them well
    elif len(args) > 1 and isinstance(args[0], str):
        msg = args[0]
    else:
        msg = str(exc)
    msg = msg.strip()
    msg = msg.splitlines()[0] if msg else ''
    msg = re.sub(r'\s*(@\s*)?<(_io\.|[^<>]* at 0x)[^<>]*>', '', msg).strip()
    return msg[:limit] or type(exc).__name__


def skip_kind(reason: str) -> str:
    """The kind of a skip reason: the words before its first colon
    (``'corrupt image: a.jpg (...)'`` -> ``'corrupt image'``)."""
    head, sep, _ = reason.partition(':')
    return head.strip() if sep and head.strip() else 'other'


def check_image_pixels(source, max_pixels: Optional[int], where: str = '') -> None:
    """Refuse an image with more than ``max_pixels`` pixels from its header.

    Opening with PIL reads only the header, so a decompression bomb (a small
    file that decodes to gigabytes) is refused before any decoding. Files PIL
    cannot identify are left to the decoder (it reports them).

    Args:
        source (str | file): Path or binary file object.
        max_pixels (int, optional): Limit on width x height; ``None`` disables.
        where (str): Name used in the message. Defaults to ``source``.

    Raises:
        ImageTooLargeError: If the image is larger than ``max_pixels``.
        FileNotFoundError: If ``source`` is a path that does not exist.
    """
    if max_pixels is None:
        return
    where = where or str(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', Image.DecompressionBombWarning)
            with Image.open(source) as img:
                width, height = img.size
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(f'{where}: {short_message(e)}') from e
    except (Image.UnidentifiedImageError, SyntaxError, ValueError, EOFError):
        return
    except OSError as e:
        if isinstance(e, FileNotFoundError):
            raise
        return
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f'{where}: {width} x {height} = {width * height} pixels, more than '
            f'max_image_pixels={max_pixels} (decompression bomb?)')


def describe_failure(exc: Optional[BaseException], img_path: str) -> str:
    """Turn a pipeline failure into a short, human-readable skip reason."""
    if exc is None:
        return f'pipeline returned None: {img_path}'
    msg = short_message(exc)
    if isinstance(exc, InvalidCaptionError):
        return f'bad caption: {img_path} ({msg})'
    if isinstance(exc, ImageTooLargeError):
        return f'image too large: {img_path} ({msg.split(": ", 1)[-1]})'
    if isinstance(exc, FileNotFoundError):
        return f'missing image: {img_path}'
    if isinstance(exc, AssertionError) and 'failed to load image' in msg:
        # mmcv's cv2 backend returns None for undecodable bytes, which
        # LoadImageFromFile turns into this AssertionError.
        return f'corrupt image: {img_path} (cannot decode)'
    if isinstance(exc, OSError):  # PIL: OSError / UnidentifiedImageError
        return f'corrupt image: {img_path} ({msg})'
    return f'pipeline error: {img_path} ({type(exc).__name__}: {msg})'


def attach_skip_info(data: dict,
                     num_skipped: int,
                     reasons: List[str],
                     is_repeat: bool = False,
                     kinds: Optional[Dict[str, int]] = None) -> dict:
    """Write the skip accounting into the packed sample's metainfo.

    Args:
        data (dict): Packed sample (``data_samples`` gets the metainfo).
        num_skipped (int): Bad samples reported with this one.
        reasons (list[str]): Their reasons (at most
            :data:`MAX_REASONS_PER_SAMPLE` are kept).
        is_repeat (bool): This sample stands in for a bad one (map-style data
            sets) or is read a second time because the shards ran out
            (WebDataset); it is then not counted as a distinct used sample.
        kinds (dict, optional): ``{kind: count}`` of all ``num_skipped``
            (default: counted from ``reasons``).
    """
    data_samples = data.get('data_samples') if isinstance(data, dict) else None
    if data_samples is not None and hasattr(data_samples, 'set_metainfo'):
        if kinds is None:
            kinds = dict(Counter(skip_kind(r) for r in reasons))
        data_samples.set_metainfo(
            dict(
                num_skipped=int(num_skipped),
                skip_reasons=list(reasons[:MAX_REASONS_PER_SAMPLE]),
                skip_kinds=dict(kinds),
                is_repeat=bool(is_repeat)))
    return data
