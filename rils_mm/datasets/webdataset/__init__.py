"""Streaming image-text pairs from WebDataset ``.tar`` shards (img2dataset layout).

A shard holds samples as consecutive members sharing a key: ``000123.jpg`` (or
``.jpeg`` / ``.png`` / ``.webp``), ``000123.txt`` (the caption) and optionally
``000123.json``. The reader is a chain of named stages, one module each, built on
the ``webdataset`` library (``SimpleShardList`` / ``ResampledShards``, ``gopen``,
``shuffle``):

1. :mod:`.urls` - expand the shard pattern, open a shard; :mod:`.remote` -
   ``http(s)://`` and ``pipe:`` shards with timeouts and retries that continue
   at the byte reached;
2. :mod:`.shards` - the epoch's shard order, the split by rank and loader worker,
   the per-worker share and the resume position;
3. :mod:`.samples` - group tar members into samples (truncated shards and
   duplicate keys counted), select, decode and validate, run the pipeline;
4. :mod:`.dataset` - :class:`WebImageTextDataset`, which chains them.
"""
from .dataset import WebImageTextDataset
from .samples import StreamState, iter_shard_samples

__all__ = ['WebImageTextDataset', 'StreamState', 'iter_shard_samples']
