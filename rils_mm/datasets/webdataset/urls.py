"""Stage 1 of the WebDataset reader: which shards there are, and opening one.

:func:`expand_shard_urls` turns the ``urls`` argument into the list of shards;
:func:`open_shard` opens one for reading. Opening is the seam where remote shards
plug in: it is the only place that knows how a URL becomes a byte stream (local
paths and ``file:`` URLs, and everything ``webdataset.gopen`` understands, such as
``pipe:curl ...``). :class:`~rils_mm.datasets.webdataset.remote.ShardOpener`,
which reads ``http(s)://`` and ``pipe:`` shards with timeouts and retries, takes
its place in :class:`~rils_mm.datasets.webdataset.WebImageTextDataset` (the
readers take it as ``open_fn``) and keeps the contract: return a readable binary
stream with ``close()``, or raise (the shard is then counted and skipped).
"""
import logging
import os.path as osp
import re
from typing import BinaryIO, List, Optional, Sequence, Union

import webdataset as wds
from mmengine.logging import print_log
from webdataset.shardlists import expand_urls

__all__ = ['local_path', 'expand_shard_urls', 'open_shard']


def local_path(url: str) -> Optional[str]:
    """The file path of a local shard URL, ``None`` for remote / pipe URLs."""
    if url.startswith('file:'):
        return re.sub(r'^file://?', '', url)  # as webdataset's gopen_file
    if '://' in url or url.startswith('pipe:'):
        return None
    return url


def expand_shard_urls(urls: Union[str, Sequence[str]]) -> List[str]:
    """The shards of ``urls``: a brace pattern such as
    ``'data/train-{000000..000009}.tar'`` (``::`` separates several) or a list.

    Local shards that do not exist are dropped with a warning.

    Raises:
        ValueError: If ``urls`` is empty or not str.
        FileNotFoundError: If none of the shards exists.
    """
    url_list = expand_urls(urls)
    if not url_list or not all(isinstance(u, str) for u in url_list):
        raise ValueError(f'urls must be a non-empty brace pattern or list '
                         f'of str, got {urls!r}')
    missing = [
        u for u in url_list
        if local_path(u) is not None and not osp.isfile(local_path(u))
    ]
    if len(missing) == len(url_list):
        raise FileNotFoundError(
            f'None of the {len(url_list)} shards of {urls!r} exist, e.g. '
            f'{missing[:3]}')
    if missing:
        print_log(
            f'WebImageTextDataset: {len(missing)} of {len(url_list)} '
            f'shards are missing and will not be read, e.g. '
            f'{missing[:3]}',
            logger='current',
            level=logging.WARNING)
        missing_set = set(missing)
        url_list = [u for u in url_list if u not in missing_set]
    return url_list


def open_shard(url: str) -> BinaryIO:
    """Open shard ``url`` for streaming (``webdataset.gopen``)."""
    return wds.gopen(url)
