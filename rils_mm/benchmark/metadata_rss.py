"""Peak memory of reading a large img2dataset-like parquet table.

:func:`write_metadata_table` writes ``num_rows`` rows with img2dataset's columns
(``url``, ``caption``, ``key``, ``status``; every tenth row ``failed_to_download``)
in row groups of ``row_group_size``; :func:`measure_read_rss` reads it with
:func:`~rils_mm.datasets.metadata.iter_parquet_rows` in a fresh process and
reports that process's peak resident memory, beside that of a process that only
imports the reader (the baseline)::

    python -m rils_mm.benchmark.metadata_rss /tmp/meta.parquet --rows 10000000
"""
import argparse
import json
import os.path as osp
import subprocess
import sys
from typing import Dict

__all__ = ['write_metadata_table', 'measure_read_rss']

_CHILD = r'''
import sys, time
import pyarrow as pa
from rils_mm.benchmark.memory import peak_rss_mib
from rils_mm.datasets.metadata import iter_parquet_rows
path, read = sys.argv[1], sys.argv[2] == '1'
rows = success = chars = 0
t0 = time.perf_counter()
if read:
    for _, row in iter_parquet_rows(path, ('url', 'caption', 'status')):
        rows += 1
        success += row['status'] == 'success'
        chars += len(row['caption'])
print(rows, success, chars, time.perf_counter() - t0,
      peak_rss_mib(), pa.default_memory_pool().max_memory())
'''


def write_metadata_table(path: str, num_rows: int, row_group_size: int = 100_000) -> int:
    """Write an img2dataset-like table of ``num_rows`` rows; returns its size in bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    schema = pa.schema([('url', pa.string()), ('caption', pa.string()),
                        ('key', pa.string()), ('status', pa.string())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, num_rows, row_group_size):
            ids = range(start, min(start + row_group_size, num_rows))
            writer.write_table(pa.table({
                'url': [f'https://example.com/images/{i:09d}.jpg' for i in ids],
                'caption': [f'a photo number {i} of a thing on a table, seen from the side '
                            f'({i % 977})' for i in ids],
                'key': [f'{i:09d}' for i in ids],
                'status': ['failed_to_download' if i % 10 == 9 else 'success' for i in ids],
            }, schema=schema), row_group_size=row_group_size)
    return osp.getsize(path)


def _run_child(path: str, read: bool) -> Dict[str, float]:
    out = subprocess.run([sys.executable, '-c', _CHILD, path, '1' if read else '0'],
                         check=True, capture_output=True, text=True).stdout.split()
    rows, success, chars, seconds, peak_mib, arrow_peak = out
    return dict(rows=int(rows), success=int(success), caption_chars=int(chars),
                seconds=float(seconds), peak_rss_mib=float(peak_mib),
                arrow_peak_mib=int(arrow_peak) / 2**20)


def measure_read_rss(path: str) -> Dict[str, float]:
    """Read every row of ``path`` in a fresh process; returns its rows, successful
    rows, seconds, peak RSS (MiB), the peak of Arrow's memory pool
    (``arrow_peak_mib``) and the peak RSS of a process that only imports the
    reader (``baseline_rss_mib``: rils_mm imports torch)."""
    result = _run_child(path, read=True)
    result['baseline_rss_mib'] = _run_child(path, read=False)['peak_rss_mib']
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('path', help='parquet file to write (kept if it exists)')
    parser.add_argument('--rows', type=int, default=10_000_000)
    parser.add_argument('--row-group-size', type=int, default=100_000)
    args = parser.parse_args()
    if not osp.isfile(args.path):
        write_metadata_table(args.path, args.rows, args.row_group_size)
    result = measure_read_rss(args.path)
    result['file_mib'] = osp.getsize(args.path) / 2**20
    print(json.dumps(result))


if __name__ == '__main__':
    main()
