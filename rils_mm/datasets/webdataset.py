"""Streaming image-text pairs from WebDataset ``.tar`` shards (img2dataset layout).

A shard holds samples as consecutive members sharing a key: ``000123.jpg`` (or
``.jpeg`` / ``.png`` / ``.webp``), ``000123.txt`` (the caption) and optionally
``000123.json``. Reading is built on the ``webdataset`` library
(``SimpleShardList`` / ``ResampledShards`` -> ``gopen`` + ``tar_file_iterator`` +
``group_by_keys`` per shard -> ``shuffle``); decoding, the mmengine pipeline,
bad-sample accounting and the rank/worker split are done here.
"""
import hashlib
import itertools
import logging
import os.path as osp
import random
import re
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import torch
import webdataset as wds
from mmengine.dataset import Compose
from mmengine.dist import get_dist_info
from mmengine.logging import print_log
from mmpretrain.registry import DATASETS, TRANSFORMS
from torch.utils.data import IterableDataset, get_worker_info
from webdataset.shardlists import expand_urls
from webdataset.tariterators import group_by_keys, tar_file_iterator

from .transforms import decode_image_bgr
from .utils import attach_skip_info, describe_failure, short_message

__all__ = ['WebImageTextDataset']


def _int_seed(*parts) -> int:
    """A process-independent 63-bit seed from ``parts`` (unlike ``hash``)."""
    digest = hashlib.sha256('/'.join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], 'little') >> 1


def _local_path(url: str) -> Optional[str]:
    """The file path of a local shard URL, ``None`` for remote / pipe URLs."""
    if url.startswith('file:'):
        return re.sub(r'^file://?', '', url)  # as webdataset's gopen_file
    if '://' in url or url.startswith('pipe:'):
        return None
    return url


class _StreamState:
    """Per-``__iter__`` bookkeeping of skipped samples and stream progress."""

    def __init__(self, max_consecutive_failures: int) -> None:
        self.max_failures = max_consecutive_failures
        self.pending: int = 0  # bad samples since the last good one
        self.reasons: List[str] = []
        self.raw: int = 0  # samples that came out of the tar reader
        self.empty_shards: int = 0  # consecutive shards without samples

    def skip(self, reason: str) -> None:
        """Record a bad sample; raise if too many failed in a row."""
        self.pending += 1
        self.reasons.append(reason)
        if len(self.reasons) > 10:
            del self.reasons[:-10]
        if self.pending > self.max_failures:
            last = '\n  '.join(self.reasons[-5:])
            raise RuntimeError(
                f'WebImageTextDataset: {self.pending} consecutive samples '
                'failed; the shards look mostly broken (check the image / '
                f'caption members and image_keys / caption_key). Last '
                f'failures:\n  {last}')

    def take(self) -> Tuple[int, List[str]]:
        """Return and reset the skips accumulated since the last good one."""
        out = (self.pending, self.reasons)
        self.pending, self.reasons = 0, []
        return out

    def shard_handler(self, url: str):
        """A webdataset exception handler that records the error and goes on."""

        def handler(exn: Exception) -> bool:
            reason = (f'unreadable shard data: {url} ({type(exn).__name__}: '
                      f'{short_message(exn)})')
            print_log(f'WebImageTextDataset: {reason}', logger='current',
                      level=logging.WARNING)
            self.skip(reason)
            return True

        return handler


@DATASETS.register_module()
class WebImageTextDataset(IterableDataset):
    """Image-caption pairs streamed from WebDataset tar shards (img2dataset layout).

    Each sample's first present ``image_keys`` member is decoded like
    ``LoadImageFromFile(imdecode_backend='pillow')`` (so the pipeline has no
    loading transform), bad samples are skipped and counted, shards are split
    by rank and data-loader worker, and every rank yields ``num_samples //
    world_size`` samples an epoch. Shard order, splitting, epoch length,
    shuffling, resampling and the mmengine config it needs are described in the
    README section "How ``WebImageTextDataset`` reads shards".

    Args:
        urls (str | Sequence[str]): Shards: a brace pattern such as
            ``'data/train-{000000..000009}.tar'`` (``::`` separates several)
            or a list of paths / URLs. Missing local shards are dropped with a
            warning; if all are missing, ``FileNotFoundError`` is raised.
        pipeline (Sequence[dict | callable]): Transforms applied after
            decoding. Defaults to ().
        num_samples (int): Declared number of samples per epoch, over all
            ranks.
        resampled (bool): Draw shards with replacement. Defaults to False.
        shuffle_buffer (int): Sample shuffle buffer size; 0 disables sample
            shuffling. Defaults to 1000.
        shuffle_initial (int, optional): Samples buffered before the first is
            yielded. Defaults to ``min(100, shuffle_buffer)``.
        shuffle_shards (bool): Permute the shard list every epoch (epoch mode).
            Defaults to True.
        image_keys (Sequence[str]): Image member extensions, by priority.
            Defaults to ``('jpg', 'jpeg', 'png', 'webp')``.
        caption_key (str): Caption member extension. Defaults to 'txt'.
        seed (int): Base seed of all shuffling. Defaults to 0.
        batch_size (int, optional): Per-rank batch size of the data loader; if
            given, per-rank and per-worker counts are multiples of it (see
            *Length*). Defaults to None.
        max_consecutive_failures (int): Consecutive bad samples tolerated.
            Defaults to 100.
        rank (int, optional): Override of the rank (tests). Defaults to
            ``get_dist_info()``.
        world_size (int, optional): Override of the world size (tests).
    """

    def __init__(self,
                 urls: Union[str, Sequence[str]],
                 num_samples: int,
                 pipeline: Sequence = (),
                 resampled: bool = False,
                 shuffle_buffer: int = 1000,
                 shuffle_initial: Optional[int] = None,
                 shuffle_shards: bool = True,
                 image_keys: Sequence[str] = ('jpg', 'jpeg', 'png', 'webp'),
                 caption_key: str = 'txt',
                 seed: int = 0,
                 batch_size: Optional[int] = None,
                 max_consecutive_failures: int = 100,
                 rank: Optional[int] = None,
                 world_size: Optional[int] = None) -> None:
        super().__init__()
        self.urls = self._check_urls(urls)
        if not isinstance(num_samples, int) or num_samples <= 0:
            raise ValueError(f'num_samples must be a positive int, got '
                             f'{num_samples!r}')
        if batch_size is not None and (not isinstance(batch_size, int)
                                       or batch_size <= 0):
            raise ValueError(f'batch_size must be a positive int or None, '
                             f'got {batch_size!r}')
        if shuffle_buffer < 0:
            raise ValueError('shuffle_buffer must be >= 0')
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.resampled = resampled
        self.shuffle_buffer = shuffle_buffer
        self.shuffle_initial = (
            min(100, shuffle_buffer)
            if shuffle_initial is None else shuffle_initial)
        self.shuffle_shards = shuffle_shards
        self.image_keys = tuple(k.lower() for k in image_keys)
        self.caption_key = caption_key.lower()
        self.seed = seed
        self.max_consecutive_failures = max_consecutive_failures
        self._rank = rank
        self._world_size = world_size
        if (rank is None) != (world_size is None):
            raise ValueError('pass both rank and world_size, or neither')
        if rank is not None and not 0 <= rank < world_size:
            raise ValueError(f'rank {rank} not in [0, {world_size})')

        transforms = [
            TRANSFORMS.build(t) if isinstance(t, dict) else t
            for t in pipeline
        ]
        self.pipeline = Compose(transforms)

        # [epoch given to set_epoch, whether set_epoch was ever called]. In
        # shared memory so that persistent workers see set_epoch() calls.
        self._shared_epoch = torch.zeros(2, dtype=torch.int64).share_memory_()
        self._last_shared: Optional[int] = None
        self._local_epoch: Optional[int] = None
        self._warned_no_set_epoch = False
        if self._per_rank() == 0:
            raise ValueError(
                f'num_samples={num_samples} gives no samples per rank '
                f'(world_size={self._dist()[1]}, batch_size={batch_size})')

    # ------------------------------------------------------------------ setup
    @staticmethod
    def _check_urls(urls) -> List[str]:
        url_list = expand_urls(urls)
        if not url_list or not all(isinstance(u, str) for u in url_list):
            raise ValueError(f'urls must be a non-empty brace pattern or list '
                             f'of str, got {urls!r}')
        missing = [
            u for u in url_list
            if _local_path(u) is not None and not osp.isfile(_local_path(u))
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

    def _dist(self) -> Tuple[int, int]:
        if self._rank is not None:
            return self._rank, self._world_size
        return get_dist_info()

    def _per_rank(self) -> int:
        per_rank = self.num_samples // self._dist()[1]
        if self.batch_size:
            per_rank -= per_rank % self.batch_size
        return per_rank

    @property
    def metainfo(self) -> dict:
        """Empty meta information (no classes), like ``ImageTextDataset``."""
        return dict()

    def __len__(self) -> int:
        """Samples yielded per rank and epoch (all workers together)."""
        return self._per_rank()

    def worker_share(self, worker: int, num_workers: int) -> int:
        """Samples yielded by ``worker`` of ``num_workers`` on this rank."""
        unit = self.batch_size or 1
        units = self._per_rank() // unit
        return (units // num_workers +
                (1 if worker < units % num_workers else 0)) * unit

    # ----------------------------------------------------------------- epochs
    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch`` for the next ``__iter__`` (in all workers)."""
        self._shared_epoch[0] = int(epoch)
        self._shared_epoch[1] = 1

    def _begin_epoch(self) -> int:
        shared = int(self._shared_epoch[0])
        if self._local_epoch is None or shared != self._last_shared:
            epoch = shared
        else:
            epoch = self._local_epoch + 1
        self._last_shared, self._local_epoch = shared, epoch
        return epoch

    # -------------------------------------------------------------- iterating
    def _read_shards(self,
                     urls: Iterable[str],
                     state: _StreamState,
                     empty_limit: Optional[int] = None) -> Iterator[dict]:
        """Raw samples (``{'__key__', '__url__', ext: bytes}``) of ``urls``.

        Same as ``wds.tarfile_to_samples`` except that members are grouped per
        shard: webdataset's grouping runs across shard boundaries and would
        merge (or reject as duplicates) the samples of a shard read twice in
        a row. Errors go to ``state.shard_handler`` (recorded, then the rest of
        the shard is skipped). More than ``empty_limit`` consecutive shards
        without any sample raise ``RuntimeError``.
        """
        for url in urls:
            handler = state.shard_handler(url)
            count = 0
            try:
                stream = wds.gopen(url)
            except Exception as exn:  # noqa: BLE001
                handler(exn)
            else:
                try:
                    files = tar_file_iterator(stream, handler=handler)
                    files = (dict(f, __url__=url) for f in files)
                    for sample in group_by_keys(files, handler=handler):
                        count += 1
                        state.raw += 1
                        yield sample
                except Exception as exn:  # noqa: BLE001
                    handler(exn)
                finally:
                    stream.close()
            state.empty_shards = 0 if count else state.empty_shards + 1
            if empty_limit is not None and state.empty_shards > empty_limit:
                raise RuntimeError(
                    f'WebImageTextDataset: {state.empty_shards} consecutive '
                    f'shards yielded no samples (last: {url}). Are they '
                    'empty, unreadable or not in the img2dataset layout? '
                    f'Last problems: {state.reasons[-3:]}')

    def _shuffled(self, samples: Iterator[dict], *seed_parts) -> Iterator:
        if self.shuffle_buffer <= 0:
            return samples
        rng = random.Random(_int_seed('samples', self.seed, *seed_parts))
        return wds.shuffle(
            self.shuffle_buffer, initial=self.shuffle_initial,
            rng=rng)(samples)

    def _epoch_stream(self, epoch: int, rank: int, world_size: int,
                      worker: int, num_workers: int,
                      state: _StreamState) -> Iterator[dict]:
        """Infinite raw-sample stream of this worker's shards (epoch mode).

        Pass 0 reads the worker's shards in the epoch's order, later passes
        re-permute them. The shuffle buffer is drained at the end of each pass,
        so pass 0 yields each of its samples once before any repeat.
        """
        shard_seed = (
            _int_seed('shards', self.seed, epoch)
            if self.shuffle_shards else None)
        ordered = [s['url'] for s in wds.SimpleShardList(self.urls, shard_seed)]
        mine = ordered[rank::world_size][worker::num_workers]
        if not mine:
            raise ValueError(
                f'WebImageTextDataset: {len(self.urls)} shards cannot be '
                f'split over {world_size} rank(s) x {num_workers} worker(s): '
                f'rank {rank} worker {worker} gets none. Use at least '
                f'{world_size * num_workers} shards, fewer workers, or '
                'resampled=True.')
        rng = random.Random(
            _int_seed('repeat', self.seed, epoch, rank, worker))
        for pass_idx in itertools.count():
            order = list(mine)
            if pass_idx > 0 and self.shuffle_shards:
                rng.shuffle(order)
            raw_before = state.raw
            yield from self._shuffled(
                self._read_shards(order, state), epoch, rank, worker,
                pass_idx)
            if state.raw == raw_before:
                raise RuntimeError(
                    f'WebImageTextDataset: the {len(mine)} shard(s) of rank '
                    f'{rank} worker {worker} yielded no samples (e.g. '
                    f'{mine[0]}). Are they empty, unreadable or not in the '
                    f'img2dataset layout? Last problems: '
                    f'{state.reasons[-3:]}')

    def _resampled_stream(self, epoch: int, rank: int, worker: int,
                          state: _StreamState) -> Iterator[dict]:
        """Infinite raw-sample stream of shards drawn with replacement."""
        seed = _int_seed('resampled', self.seed, epoch, rank, worker)
        shards = wds.ResampledShards(
            self.urls, worker_seed=lambda: seed, deterministic=True)
        urls = (shard['url'] for shard in shards)
        limit = max(20, 2 * len(self.urls))
        return self._shuffled(
            self._read_shards(urls, state, empty_limit=limit), epoch, rank,
            worker)

    def _process(self, sample: dict, state: _StreamState) -> Optional[dict]:
        """Decode and transform one raw sample; ``None`` if it was skipped."""
        where = f"{sample.get('__url__')}#{sample.get('__key__')}"
        img_key = next((k for k in self.image_keys if k in sample), None)
        members = sorted(k for k in sample if not k.startswith('__'))
        if img_key is None:
            state.skip(f'missing image: {where} (members: {members})')
            return None
        if self.caption_key not in sample:
            state.skip(f'missing caption: {where} (members: {members})')
            return None
        try:
            text = sample[self.caption_key].decode('utf-8').strip()
        except UnicodeDecodeError:
            state.skip(f'bad caption: {where} (not valid UTF-8)')
            return None
        if not text:
            state.skip(f'bad caption: {where} (empty)')
            return None
        try:
            img = decode_image_bgr(sample[img_key])
        except Exception as e:  # noqa: BLE001 - any undecodable image
            state.skip(f'corrupt image: {where}.{img_key} '
                       f'({short_message(e)})')
            return None
        results = dict(
            img=img,
            img_shape=img.shape[:2],
            ori_shape=img.shape[:2],
            text=text,
            img_path=where)
        try:
            out = self.pipeline(results)
        except Exception as e:  # noqa: BLE001 - bad sample, skip it
            state.skip(describe_failure(e, where))
            return None
        if out is None:
            state.skip(describe_failure(None, where))
            return None
        return attach_skip_info(out, *state.take())

    def __iter__(self) -> Iterator[dict]:
        rank, world_size = self._dist()
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info else (0, 1)
        epoch = self._begin_epoch()
        if (info is not None and not int(self._shared_epoch[1])
                and rank == 0 and worker == 0
                and not self._warned_no_set_epoch):
            self._warned_no_set_epoch = True
            print_log(
                'WebImageTextDataset: set_epoch() was never called; with '
                'persistent_workers=False every epoch repeats the same order. '
                "Add custom_hooks=[dict(type='WebDatasetEpochHook')].",
                logger='current',
                level=logging.WARNING)
        share = self.worker_share(worker, num_workers)
        if share == 0:
            return
        state = _StreamState(self.max_consecutive_failures)
        if self.resampled:
            samples = self._resampled_stream(epoch, rank, worker, state)
        else:
            samples = self._epoch_stream(epoch, rank, world_size, worker,
                                         num_workers, state)
        produced = 0
        try:
            for sample in samples:
                out = self._process(sample, state)
                if out is None:
                    continue
                yield out
                produced += 1
                if produced >= share:
                    return
        finally:
            if hasattr(samples, 'close'):
                samples.close()

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(shards={len(self.urls)}, '
                f'num_samples={self.num_samples}, resampled={self.resampled}, '
                f'shuffle_buffer={self.shuffle_buffer}, seed={self.seed}, '
                f'batch_size={self.batch_size})')
