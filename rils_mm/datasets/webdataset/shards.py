"""Stage 2 of the WebDataset reader: which shards a rank / loader worker reads, in
which order, how many samples it yields, and where it resumes.

Everything here is a function of ``(seed, epoch, rank, worker)``, so each worker's
stream is deterministic: an interrupted epoch is continued by replaying it up to
the resumed position (:func:`outputs_to_skip`, :func:`resumed_worker_role`).
"""
import itertools
import random
from typing import Callable, Iterable, Iterator, List, Optional, Sequence

import webdataset as wds

from rils_mm.utils.seeding import int_seed

from ..utils import short_message
from .remote import ShardFetchError
from .samples import StreamState, iter_shard_samples
from .urls import open_shard

__all__ = [
    'per_rank_samples', 'worker_share', 'epoch_shard_order', 'split_shards',
    'outputs_to_skip', 'resumed_worker_role', 'read_shards', 'epoch_stream',
    'resampled_stream'
]


# ------------------------------------------------------------------ counts
def per_rank_samples(num_samples: int, world_size: int, batch_size: Optional[int]) -> int:
    """Samples a rank yields an epoch: ``num_samples // world_size``, rounded
    down to whole batches if ``batch_size`` is given."""
    per_rank = num_samples // world_size
    if batch_size:
        per_rank -= per_rank % batch_size
    return per_rank


def worker_share(per_rank: int, batch_size: Optional[int], worker: int,
                 num_workers: int) -> int:
    """Samples ``worker`` of ``num_workers`` yields of a rank's ``per_rank``:
    whole batches, dealt out as evenly as possible (the first ones get one more)."""
    unit = batch_size or 1
    units = per_rank // unit
    return (units // num_workers + (1 if worker < units % num_workers else 0)) * unit


# ----------------------------------------------------------------- positions
def outputs_to_skip(num_batches: int, batch_size: int, shares: Sequence[int],
                    worker: int) -> int:
    """Outputs of ``worker`` (of ``len(shares)``, yielding ``shares[w]`` samples
    each) that the first ``num_batches`` batches of an epoch hold.

    The data loader takes batches from its workers in turn (worker ``j % W``
    makes batch ``j`` while all have batches left; exhausted workers are passed
    over).
    """
    num_workers = len(shares)
    left = [-(-share // batch_size) for share in shares]
    taken = [0] * num_workers
    w = 0
    for _ in range(num_batches):
        while left[w] == 0:  # exhausted workers are passed over
            w = (w + 1) % num_workers
        left[w] -= 1
        taken[w] += 1
        w = (w + 1) % num_workers
    return min(taken[worker] * batch_size, shares[worker])


def resumed_worker_role(worker: int, num_workers: int, skipped_batches: int) -> int:
    """The role (stream, share) of loader worker ``worker`` in an epoch resumed
    after ``skipped_batches`` batches.

    The new data loader asks worker 0 first, but the next batch of the
    interrupted epoch is that of worker ``skipped_batches % W``: the workers take
    the roles rotated by that much, which keeps the loader's round-robin order of
    the interrupted epoch.
    """
    if skipped_batches and num_workers > 1:
        return (worker + skipped_batches) % num_workers
    return worker


# -------------------------------------------------------------------- orders
def epoch_shard_order(urls: Sequence[str], seed: int, epoch: int, shuffle: bool) -> List[str]:
    """All shards in the order of ``epoch`` (a permutation seeded from ``(seed,
    epoch)`` if ``shuffle``)."""
    shard_seed = int_seed('shards', seed, epoch) if shuffle else None
    return [s['url'] for s in wds.SimpleShardList(list(urls), shard_seed)]


def split_shards(ordered: Sequence[str], rank: int, world_size: int, worker: int,
                 num_workers: int) -> List[str]:
    """The shards of ``rank``'s ``worker``: every ``world_size``-th of the epoch's
    order for the rank, every ``num_workers``-th of those for the worker.

    Raises:
        ValueError: If it gets none (fewer shards than rank x worker slots).
    """
    mine = list(ordered[rank::world_size][worker::num_workers])
    if not mine:
        raise ValueError(
            f'WebImageTextDataset: {len(ordered)} shards cannot be '
            f'split over {world_size} rank(s) x {num_workers} worker(s): '
            f'rank {rank} worker {worker} gets none. Use at least '
            f'{world_size * num_workers} shards, fewer workers, or '
            'resampled=True.')
    return mine


# ------------------------------------------------------------------- streams
def read_shards(urls: Iterable[str],
                state: StreamState,
                empty_limit: Optional[int] = None,
                open_fn: Callable = open_shard) -> Iterator[dict]:
    """Raw samples (``{'__key__', '__url__', ext: bytes}``) of ``urls``.

    Like ``wds.tarfile_to_samples`` except that members are grouped per shard
    (webdataset's grouping runs across shard boundaries and would merge the
    samples of a shard read twice in a row) by :func:`iter_shard_samples`, which
    counts truncated shards and duplicate keys. A shard ``open_fn`` cannot open
    is counted as unreadable (a remote one by its fault's kind, see
    :mod:`~rils_mm.datasets.webdataset.remote`). More than ``empty_limit`` consecutive shards
    without any sample raise ``RuntimeError``.
    """
    for url in urls:
        count = 0
        try:
            stream = open_fn(url)
        except ShardFetchError as exn:  # a remote shard that never opened
            state.shard_problem(f'{exn}; the shard is skipped')
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


#: ``shuffle(samples, *seed_parts)``: the sample shuffle buffer of a stream.
Shuffle = Callable[..., Iterator[dict]]


def epoch_stream(mine: Sequence[str], state: StreamState, shuffle: Shuffle, seed: int,
                 epoch: int, rank: int, worker: int, shuffle_shards: bool,
                 open_fn: Callable = open_shard) -> Iterator[dict]:
    """Infinite raw-sample stream of a worker's shards ``mine`` (epoch mode).

    Pass 0 reads them in the epoch's order, later passes re-permute them and mark
    their samples ``__repeat__`` (counted as repeats, not as distinct samples).
    The shuffle buffer is drained at the end of each pass, so pass 0 yields each
    of its samples once before any repeat.
    """
    rng = random.Random(int_seed('repeat', seed, epoch, rank, worker))
    for pass_idx in itertools.count():
        order = list(mine)
        if pass_idx > 0 and shuffle_shards:
            rng.shuffle(order)
        raw_before = state.raw
        raw = read_shards(order, state, open_fn=open_fn)
        for sample in shuffle(raw, epoch, rank, worker, pass_idx):
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


def resampled_stream(urls: Sequence[str], state: StreamState, shuffle: Shuffle, seed: int,
                     epoch: int, rank: int, worker: int,
                     open_fn: Callable = open_shard) -> Iterator[dict]:
    """Infinite raw-sample stream of shards drawn with replacement."""
    shard_seed = int_seed('resampled', seed, epoch, rank, worker)
    shards = wds.ResampledShards(list(urls), worker_seed=lambda: shard_seed,
                                 deterministic=True)
    drawn = (shard['url'] for shard in shards)
    limit = max(20, 2 * len(urls))
    raw = read_shards(drawn, state, empty_limit=limit, open_fn=open_fn)
    return shuffle(raw, epoch, rank, worker)
