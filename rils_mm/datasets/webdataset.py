"""Streaming image-text pairs from WebDataset ``.tar`` shards (img2dataset layout).

A shard holds samples as consecutive members sharing a key: ``000123.jpg`` (or
``.jpeg`` / ``.png`` / ``.webp``), ``000123.txt`` (the caption) and optionally
``000123.json``. Reading is built on the ``webdataset`` library
(``SimpleShardList`` / ``ResampledShards`` -> ``gopen`` -> ``shuffle``); reading the
members of a shard (with honest accounting of truncated shards and duplicate keys),
decoding, the mmengine pipeline, bad-sample accounting and the rank/worker split are
done here.
"""
import io
import itertools
import logging
import os.path as osp
import random
import re
import tarfile
from collections import Counter, deque
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import webdataset as wds
from mmengine.dataset import Compose
from mmengine.dist import get_dist_info
from mmengine.logging import print_log
from mmpretrain.registry import DATASETS, TRANSFORMS
from torch.utils.data import IterableDataset, get_worker_info
from webdataset.shardlists import expand_urls
from webdataset.tariterators import base_plus_ext

from .draft_decode import DecodeRandomResizedCrop
from .transforms import decode_image_bgr
from .utils import (
    DEFAULT_MAX_IMAGE_PIXELS,
    attach_skip_info,
    check_image_pixels,
    describe_failure,
    short_message,
    skip_kind,
)
from .utils import (
    int_seed as _int_seed,
)

__all__ = ['WebImageTextDataset']


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
        self.kinds: Counter = Counter()  # kinds of the pending ones
        self.recent: deque = deque(maxlen=5)  # the last reasons, for errors
        self.raw: int = 0  # samples that came out of the tar reader
        self.empty_shards: int = 0  # consecutive shards without samples

    def skip(self, reason: str) -> None:
        """Record a bad sample; raise if too many failed in a row."""
        self.pending += 1
        self.kinds[skip_kind(reason)] += 1
        if len(self.reasons) < 10:  # the first ones name the bad files; kinds count all
            self.reasons.append(reason)
        self.recent.append(reason)
        if self.pending > self.max_failures:
            last = '\n  '.join(self.recent)
            raise RuntimeError(
                f'WebImageTextDataset: {self.pending} consecutive samples '
                'failed; the shards look mostly broken (check the image / '
                f'caption members and image_keys / caption_key). Last '
                f'failures:\n  {last}')

    def take(self) -> Tuple[int, List[str], dict]:
        """Return and reset the skips accumulated since the last good one."""
        out = (self.pending, self.reasons, dict(self.kinds))
        self.pending, self.reasons, self.kinds = 0, [], Counter()
        return out

    def shard_problem(self, reason: str) -> None:
        """Log and count a problem of a shard (not of one sample)."""
        print_log(f'WebImageTextDataset: {reason}', logger='current',
                  level=logging.WARNING)
        self.skip(reason)


def _rng_states():
    return random.getstate(), np.random.get_state(), torch.get_rng_state()


def _set_rng_states(py_state, np_state, torch_state, main_process: bool) -> None:
    """Put the global random states back (only in the main process: a worker's
    states must stay where replaying its stream left them)."""
    if main_process:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.set_rng_state(torch_state)


def _is_meta(name: str) -> bool:
    """Tar members webdataset ignores (``__key__``-style metadata)."""
    return '/' not in name and name.startswith('__') and name.endswith('__')


def iter_shard_samples(stream, url: str, state: _StreamState) -> Iterator[dict]:
    """Group the members of one tar shard into raw samples.

    Like webdataset's ``tar_file_iterator`` + ``group_by_keys``, with honest
    accounting of what goes wrong (each counted once in ``state``):

    * a sample with the same member twice (``k.jpg, k.txt, k.jpg``) is skipped
      as a whole (``duplicate member``): which copy is right is unknown;
    * a key that comes back later in the shard (``k.*, j.*, k.*``) is skipped
      the second time (``duplicate key``): it is never read twice;
    * a shard cut off in the middle of a member (``truncated shard``) loses
      the incomplete sample, which is counted, and ends there; samples that
      were after the cut are not in the file and cannot be counted (the epoch
      then runs short, and the repeats that fill it are counted instead);
    * a file that is not a tar (``unreadable shard``) yields nothing.

    Yields:
        dict: ``{'__key__', '__url__', ext: bytes, ...}`` per complete sample.
    """
    seen = set()
    current: Optional[dict] = None
    bad: Optional[str] = None  # why `current` must be skipped

    def finish():
        if current is None:
            return None
        if bad:
            state.skip(bad)
            return None
        return current

    try:
        tar = tarfile.open(fileobj=stream, mode='r|*')
    except (tarfile.TarError, OSError, EOFError) as e:
        state.shard_problem(f'unreadable shard: {url} (not a tar file: {short_message(e)})')
        return
    member = None
    try:
        for member in tar:
            if not member.isreg() or _is_meta(member.name):
                continue
            key, ext = base_plus_ext(member.name)
            if key is None:
                continue
            ext = ext.lower()
            if current is None or key != current['__key__']:
                done = finish()
                if done is not None:
                    yield done
                current, bad = dict(__key__=key, __url__=url), None
                if key in seen:
                    bad = (f'duplicate key: {url}#{key} (appears again later in the shard; '
                           'read once)')
                seen.add(key)
            if ext in current and not bad:
                bad = f'duplicate member: {url}#{key}.{ext} (twice in one sample)'
            current[ext] = tar.extractfile(member).read()  # raises if truncated
            tar.members = []  # streaming: do not keep every TarInfo
    except (tarfile.TarError, OSError, EOFError) as e:
        name = getattr(member, 'name', '?')
        reason = (f'truncated shard: {url} (cut off at member {name}: {short_message(e)}; '
                  'the rest of the shard is lost)')
        if current is not None and not bad:
            # The incomplete sample is the one lost sample that can be counted.
            print_log(f'WebImageTextDataset: {reason}', logger='current',
                      level=logging.WARNING)
            bad = f'truncated shard: {url}#{current["__key__"]} (incomplete sample)'
        else:
            state.shard_problem(reason)
    done = finish()
    if done is not None:
        yield done


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
            decoding. When the first one is :class:`DecodeRandomResizedCrop`,
            the reader does not decode: it hands the encoded image over as
            ``img_bytes`` (after the ``max_image_pixels`` header check) and
            that transform decodes only what its crop needs; an image it
            cannot decode is skipped and counted like any other. Defaults to
            ().
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
        max_image_pixels (int, optional): Images with more pixels (from the
            header, before decoding) are skipped; ``None`` disables the check.
            Defaults to :data:`~rils_mm.datasets.utils.DEFAULT_MAX_IMAGE_PIXELS`.
        max_caption_chars (int): Longer captions are skipped. Defaults to
            262144.
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
                 max_image_pixels: Optional[int] = DEFAULT_MAX_IMAGE_PIXELS,
                 max_caption_chars: int = 262144,
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
        self.max_image_pixels = max_image_pixels
        self.max_caption_chars = max_caption_chars
        self._skip: Tuple[Optional[int], int, int] = (None, 0, 1)
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
        later = [i for i, t in enumerate(transforms)
                 if i > 0 and isinstance(t, DecodeRandomResizedCrop)]
        if later:
            raise ValueError(
                f'WebImageTextDataset: pipeline[{later[0]}] is DecodeRandomResizedCrop; '
                'it decodes the encoded image, so it must be the first transform '
                '(the reader then hands it the bytes instead of decoding)')
        self.pipeline = Compose(transforms)
        # the pipeline decodes (and crops) the encoded bytes itself
        self.decode_in_pipeline = bool(transforms) and isinstance(
            transforms[0], DecodeRandomResizedCrop)

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

        Like ``wds.tarfile_to_samples`` except that members are grouped per
        shard (webdataset's grouping runs across shard boundaries and would
        merge the samples of a shard read twice in a row) by
        :func:`iter_shard_samples`, which counts truncated shards and
        duplicate keys. More than ``empty_limit`` consecutive shards without
        any sample raise ``RuntimeError``.
        """
        for url in urls:
            count = 0
            try:
                stream = wds.gopen(url)
            except Exception as exn:  # noqa: BLE001
                state.shard_problem(f'unreadable shard: {url} ({type(exn).__name__}: '
                                    f'{short_message(exn)})')
            else:
                try:
                    for sample in iter_shard_samples(stream, url, state):
                        count += 1
                        state.raw += 1
                        yield sample
                finally:
                    stream.close()
            state.empty_shards = 0 if count else state.empty_shards + 1
            if empty_limit is not None and state.empty_shards > empty_limit:
                raise RuntimeError(
                    f'WebImageTextDataset: {state.empty_shards} consecutive '
                    f'shards yielded no samples (last: {url}). Are they '
                    'empty, unreadable or not in the img2dataset layout? '
                    f'Last problems: {list(state.recent)[-3:]}')

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
        re-permute them and mark their samples ``__repeat__`` (counted as
        repeats, not as distinct samples). The shuffle buffer is drained at the
        end of each pass, so pass 0 yields each of its samples once before any
        repeat.
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
            for sample in self._shuffled(
                    self._read_shards(order, state), epoch, rank, worker, pass_idx):
                if pass_idx > 0:
                    sample['__repeat__'] = True
                yield sample
            if state.raw == raw_before:
                raise RuntimeError(
                    f'WebImageTextDataset: the {len(mine)} shard(s) of rank '
                    f'{rank} worker {worker} yielded no samples (e.g. '
                    f'{mine[0]}). Are they empty, unreadable or not in the '
                    f'img2dataset layout? Last problems: '
                    f'{list(state.recent)[-3:]}')

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
        raw_text = sample[self.caption_key]
        if len(raw_text) > 4 * self.max_caption_chars:  # before decoding 10 MB
            state.skip(f'caption too long: {where} ({len(raw_text)} bytes, more than '
                       f'max_caption_chars={self.max_caption_chars})')
            return None
        try:
            text = raw_text.decode('utf-8').strip()
        except UnicodeDecodeError as e:
            state.skip(f'not UTF-8: {where}.{self.caption_key} (byte '
                       f'0x{raw_text[e.start]:02x} at offset {e.start})')
            return None
        if not text:
            state.skip(f'empty caption: {where}')
            return None
        if len(text) > self.max_caption_chars:
            state.skip(f'caption too long: {where} ({len(text)} characters, more than '
                       f'max_caption_chars={self.max_caption_chars})')
            return None
        try:
            check_image_pixels(io.BytesIO(sample[img_key]), self.max_image_pixels,
                               f'{where}.{img_key}')
            if self.decode_in_pipeline:
                results = dict(img_bytes=sample[img_key], text=text, img_path=where)
            else:
                img = decode_image_bgr(sample[img_key])
                results = dict(img=img, img_shape=img.shape[:2],
                               ori_shape=img.shape[:2], text=text, img_path=where)
        except Exception as e:  # noqa: BLE001 - any undecodable image
            state.skip(describe_failure(e, f'{where}.{img_key}'))
            return None
        try:
            out = self.pipeline(results)
        except Exception as e:  # noqa: BLE001 - bad sample, skip it
            state.skip(describe_failure(e, where))
            return None
        if out is None:
            state.skip(describe_failure(None, where))
            return None
        num_skipped, reasons, kinds = state.take()
        return attach_skip_info(out, num_skipped, reasons,
                                is_repeat=bool(sample.get('__repeat__')), kinds=kinds)

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
        skip_epoch, skip_batches, _ = self._skip
        if skip_epoch == epoch and skip_batches and num_workers > 1:
            # The new data loader asks worker 0 first, but the next batch of the
            # interrupted epoch is that of worker `skip_batches % W`: the workers
            # take the roles (streams, shares) rotated by that much, which keeps
            # the loader's round-robin order of the interrupted epoch.
            worker = (worker + skip_batches) % num_workers
        if info is not None:
            # A worker's random augmentations depend only on (seed, epoch, rank,
            # worker role) and its position in the stream, not on how often the
            # worker processes were restarted: epochs differ even with
            # persistent_workers=False, and a resumed epoch (roles rotated, see
            # above) replays exactly. The main process (num_workers=0) keeps
            # its generators, whose states the checkpoints hold.
            aug_seed = _int_seed('augment', self.seed, epoch, rank, worker)
            random.seed(aug_seed)
            np.random.seed(aug_seed % 2**32)
            torch.manual_seed(aug_seed)
        share = self.worker_share(worker, num_workers)
        if share == 0:
            return
        state = _StreamState(self.max_consecutive_failures)
        if self.resampled:
            samples = self._resampled_stream(epoch, rank, worker, state)
        else:
            samples = self._epoch_stream(epoch, rank, world_size, worker,
                                         num_workers, state)
        produced, repeats = 0, 0
        skip = self._outputs_to_skip(epoch, worker, num_workers)
        if skip:
            py_state, np_state, torch_state = _rng_states()
        try:
            for sample in samples:
                out = self._process(sample, state)
                if out is None:
                    continue
                if sample.get('__repeat__'):
                    if not repeats:
                        print_log(
                            f'WebImageTextDataset: epoch {epoch}, rank {rank}, worker '
                            f'{worker}: its shards gave {produced} good samples, fewer than '
                            f'its share of '
                            f'{share}; {share - produced} samples are repeats. num_samples='
                            f'{self.num_samples} is more than the shards hold (or shards are '
                            'truncated / bad, see the warnings above).',
                            logger='current',
                            level=logging.WARNING)
                    repeats += 1
                produced += 1
                if produced <= skip:
                    if produced == skip:  # fast-forward done: as if never replayed
                        _set_rng_states(py_state, np_state, torch_state, info is None)
                    if produced >= share:
                        return
                    continue
                yield out
                if produced >= share:
                    return
        finally:
            if hasattr(samples, 'close'):
                samples.close()

    # ---------------------------------------------------------------- resuming
    def skip_batches(self, num_batches: int, batch_size: Optional[int] = None,
                     epoch: Optional[int] = None) -> None:
        """Make the next epoch (or ``epoch``) start after ``num_batches`` batches.

        Used by :class:`~rils_mm.engine.runner.ResumableEpochBasedTrainLoop` to
        continue an interrupted epoch at the next unseen batch. The data loader
        takes batches from its workers in turn (worker ``j % W`` makes batch
        ``j`` while all have batches left), so each worker works out how many of
        its own outputs were in the first ``num_batches`` batches and replays
        its deterministic stream up to there without yielding them (decoding
        and transforming them again, so that its random state is also where
        the interrupted run left it; in the main process, ``num_workers=0``,
        the global random states are put back afterwards since the checkpoint
        restored them already).

        Args:
            num_batches (int): Batches of the epoch already trained.
            batch_size (int, optional): The data loader's batch size. Defaults
                to the data set's ``batch_size``.
            epoch (int, optional): The epoch it applies to. Defaults to the
                epoch the next ``__iter__`` will use.
        """
        batch_size = batch_size or self.batch_size
        if num_batches and not batch_size:
            raise ValueError('WebImageTextDataset.skip_batches needs a batch size')
        if epoch is None:
            epoch = int(self._shared_epoch[0])
        self._skip = (int(epoch), int(num_batches), int(batch_size or 1))

    def _outputs_to_skip(self, epoch: int, worker: int, num_workers: int) -> int:
        """Outputs of ``worker`` that the first skipped batches hold."""
        skip_epoch, num_batches, batch_size = getattr(self, '_skip', (None, 0, 1))
        if skip_epoch != epoch or not num_batches:
            return 0
        left = [-(-self.worker_share(w, num_workers) // batch_size)
                for w in range(num_workers)]
        taken = [0] * num_workers
        w = 0
        for _ in range(num_batches):
            while left[w] == 0:  # exhausted workers are passed over
                w = (w + 1) % num_workers
            left[w] -= 1
            taken[w] += 1
            w = (w + 1) % num_workers
        return min(taken[worker] * batch_size, self.worker_share(worker, num_workers))

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(shards={len(self.urls)}, '
                f'num_samples={self.num_samples}, resampled={self.resampled}, '
                f'shuffle_buffer={self.shuffle_buffer}, seed={self.seed}, '
                f'batch_size={self.batch_size})')
