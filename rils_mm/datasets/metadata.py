"""Metadata tables of image-text corpora: CSV / TSV / JSONL / JSON and parquet.

img2dataset writes a parquet table beside every shard it downloads (``00000.parquet``
beside ``00000.tar`` with ``--output_format webdataset``, beside the folder ``00000/``
holding ``KEY.jpg`` / ``KEY.txt`` / ``KEY.json`` with ``--output_format files``). Its
columns are the input's (``url``, ``caption``, any ``--save_additional_columns``)
followed by ``key``, ``status`` (``success``, ``failed_to_download``,
``failed_to_resize``), ``error_message``, ``width``, ``height``, ``original_width``,
``original_height`` (int32) and optionally ``exif`` and a hash column. Every input
row is in the table, failed downloads too; only successful samples are in the tar or
the folder.

One reader per format: :func:`read_parquet_rows` here (read row group by row group in
record batches of :data:`PARQUET_BATCH_ROWS` rows, only the columns asked for, so reading a
table of any length needs the memory of one batch; :func:`iter_parquet_rows`
yields rows lazily), :func:`~rils_mm.datasets.utils.read_annotation_rows` for the
text formats; :func:`read_metadata_rows` picks by extension.
"""
import glob
import os.path as osp
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from .utils import AnnotationKeyError, read_annotation_rows
from .webdataset.urls import local_path

__all__ = [
    'PARQUET_BATCH_ROWS', 'IMG2DATASET_SUCCESS', 'is_parquet', 'parquet_columns',
    'iter_parquet_rows', 'read_parquet_rows', 'read_metadata_rows', 'metadata_files',
    'img2dataset_image_path', 'count_successes', 'shard_num_samples'
]

#: Rows per record batch when a parquet table is read.
PARQUET_BATCH_ROWS = 65536
#: Extensions :func:`~rils_mm.datasets.utils.read_annotation_rows` reads.
TEXT_FORMATS = ('.csv', '.tsv', '.jsonl', '.json')
#: img2dataset's ``status`` of a downloaded sample.
IMG2DATASET_SUCCESS = 'success'


def is_parquet(path: str) -> bool:
    """Whether ``path`` names a parquet file (by extension)."""
    return osp.splitext(path)[1].lower() == '.parquet'


def _open_parquet(path: str):
    import pyarrow.parquet as pq
    if not osp.isfile(path):
        raise FileNotFoundError(f'Metadata file not found: {path!r}')
    try:
        return pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError for a bad file
        raise ValueError(f'{path!r} is not a readable parquet file ({e})') from e


def _iter_batches(pf, columns: List[str], batch_size: int = PARQUET_BATCH_ROWS):
    """Record batches of ``columns``, one row group at a time: over a whole file,
    ``iter_batches`` reads ahead (pyarrow 25: its Arrow memory peaked at 176 MiB
    on a 10 M-row, 214 MiB table, against 24 MiB row group by row group)."""
    for group in range(pf.num_row_groups):
        yield from pf.iter_batches(batch_size=batch_size, columns=columns,
                                   row_groups=[group])


def parquet_columns(path: str) -> List[str]:
    """Column names of a parquet file, read from its footer only."""
    return list(_open_parquet(path).schema_arrow.names)


def iter_parquet_rows(path: str,
                      columns: Sequence[str],
                      batch_size: int = PARQUET_BATCH_ROWS) -> Iterator[Tuple[int, Dict]]:
    """Yield ``(row_number, {column: value})`` of a parquet file, from 1.

    Only ``columns`` are read, one record batch of ``batch_size`` rows at a time
    (``pyarrow.parquet.ParquetFile.iter_batches``, row group by row group), so
    memory does not grow with the table's length.

    Raises:
        AnnotationKeyError: If a column is missing; the message names the file,
            the column and the columns that exist.
    """
    pf = _open_parquet(path)
    names = list(pf.schema_arrow.names)
    missing = [c for c in columns if c not in names]
    if missing:
        raise AnnotationKeyError(
            f'Parquet file {path!r} has no column {missing[0]!r}; its columns are '
            f'{names}. Set the dataset\'s key arguments (e.g. img_key / caption_key) '
            'to match the file.')
    row = 0
    for batch in _iter_batches(pf, list(columns), batch_size):
        values = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
        for items in zip(*values):
            row += 1
            yield row, dict(zip(columns, items))


def read_parquet_rows(path: str,
                      required_keys: Sequence[str],
                      optional_keys: Sequence[str] = ()) -> Tuple[List[Tuple[int, Dict]], List]:
    """Read the ``required_keys`` and present ``optional_keys`` columns of a
    parquet file into ``(row_number, dict)`` pairs (the contract of
    :func:`~rils_mm.datasets.utils.read_annotation_rows`; parquet has no
    unparsable rows, so the second list is empty).

    Raises:
        AnnotationKeyError: If a required column is missing.
        ValueError: If the file holds no rows or is not parquet.
    """
    names = parquet_columns(path)
    columns = list(dict.fromkeys(
        list(required_keys) + [k for k in optional_keys if k in names]))
    rows = list(iter_parquet_rows(path, columns))
    if not rows:
        raise ValueError(f'Parquet file {path!r} has no rows')
    return rows, []


def read_metadata_rows(path: str,
                       required_keys: Sequence[str],
                       optional_keys: Sequence[str] = ()) -> Tuple[List[Tuple[int, Dict]], List]:
    """Rows of a metadata table of any supported format (by extension):
    ``.parquet`` (:func:`read_parquet_rows`), ``.csv`` / ``.tsv`` / ``.jsonl`` /
    ``.json`` (:func:`~rils_mm.datasets.utils.read_annotation_rows`, which
    keeps every column)."""
    if is_parquet(path):
        return read_parquet_rows(path, required_keys, optional_keys)
    ext = osp.splitext(path)[1].lower()
    if ext not in TEXT_FORMATS:
        raise ValueError(f'Unsupported annotation file {path!r}: the extension must '
                         f'be one of {list(TEXT_FORMATS) + [".parquet"]}')
    return read_annotation_rows(path, required_keys)


def metadata_files(ann_file: str) -> List[str]:
    """The tables of ``ann_file``: the file itself, or for a directory (an
    img2dataset output folder) its ``*.parquet`` files in name order.

    Raises:
        FileNotFoundError: If it does not exist or the directory has no parquet.
    """
    if osp.isdir(ann_file):
        files = sorted(glob.glob(osp.join(ann_file, '*.parquet')))
        if not files:
            raise FileNotFoundError(
                f'Annotation directory {ann_file!r} has no *.parquet files (an '
                'img2dataset output folder has one per shard)')
        return files
    if not osp.isfile(ann_file):
        raise FileNotFoundError(f'Annotation file not found: {ann_file!r}')
    return [ann_file]


def img2dataset_image_path(table: str, key: str, ext: str = 'jpg') -> str:
    """Where img2dataset's ``files`` output put the image of ``key`` listed in
    ``table``: ``<dir>/00000.parquet`` -> ``<dir>/00000/<key>.<ext>``."""
    return osp.join(osp.splitext(table)[0], f'{key}.{ext}')


def count_successes(path: str, status_key: str = 'status') -> int:
    """Rows of a parquet table whose ``status_key`` is ``'success'``, reading
    only that column (all rows if the table has no such column)."""
    import pyarrow.compute as pc
    pf = _open_parquet(path)
    if status_key not in pf.schema_arrow.names:
        return pf.metadata.num_rows
    total = 0
    for batch in _iter_batches(pf, [status_key]):
        total += int(pc.sum(pc.equal(batch.column(0), IMG2DATASET_SUCCESS)).as_py() or 0)
    return total


def shard_num_samples(urls: Sequence[str], status_key: str = 'status') -> int:
    """Samples in img2dataset shards, from the ``.parquet`` beside each ``.tar``
    (its successful rows: img2dataset writes exactly those into the tar).

    Raises:
        ValueError: If a shard is not a local ``.tar`` file.
        FileNotFoundError: If a shard has no parquet beside it.
    """
    total = 0
    for url in urls:
        path: Optional[str] = local_path(url)
        if path is None or not path.endswith('.tar'):
            raise ValueError(f'num_samples="auto" needs local .tar shards with '
                             f'img2dataset\'s .parquet beside them, got {url!r}')
        table = path[:-len('.tar')] + '.parquet'
        if not osp.isfile(table):
            raise FileNotFoundError(
                f'num_samples="auto": shard {path!r} has no metadata {table!r} '
                'beside it; give num_samples as an int')
        total += count_successes(table, status_key)
    return total
