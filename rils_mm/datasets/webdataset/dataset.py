"""Stage 4 of the WebDataset reader: the data set that chains the stages.

``urls`` (:mod:`.urls`) -> this rank's / worker's shards, in the epoch's order
(:mod:`rils_mm.datasets.webdataset.shards`) -> tar members grouped into samples
-> select, decode, validate, transform (:mod:`.samples`) -> the epoch's share
of outputs, resumed part-way if asked (:meth:`WebImageTextDataset.resume_at`).
"""
import logging
import random
from typing import Iterator, Optional, Sequence, Tuple, Union

import webdataset as wds
from mmengine.dataset import Compose
from mmengine.dist import get_dist_info
from mmengine.logging import print_log
from mmpretrain.registry import DATASETS, TRANSFORMS
from torch.utils.data import IterableDataset, get_worker_info

from rils_mm.engine.resume import ResumableStream, ResumePosition
from rils_mm.utils.seeding import (
    EpochSeeded,
    SharedEpoch,
    get_rng_states,
    int_seed,
    seed_global_generators,
    set_rng_states,
)

from ..draft_decode import DecodeRandomResizedCrop
from ..utils import DEFAULT_MAX_IMAGE_PIXELS
from .remote import ShardOpener
from .samples import (
    DecodeCaption,
    DecodeImage,
    RunPipeline,
    SampleProcessor,
    SelectMembers,
    StreamState,
)
from .shards import (
    epoch_shard_order,
    epoch_stream,
    outputs_to_skip,
    per_rank_samples,
    resampled_stream,
    resumed_worker_role,
    split_shards,
    worker_share,
)
from .urls import expand_shard_urls

__all__ = ['WebImageTextDataset']


@DATASETS.register_module()
class WebImageTextDataset(EpochSeeded, ResumableStream, IterableDataset):
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
        num_samples (int | str): Declared number of samples per epoch, over all
            ranks, or ``'auto'``: the successful rows of the img2dataset
            ``.parquet`` beside each local shard
            (:func:`~rils_mm.datasets.metadata.shard_num_samples`).
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
        fetch (dict, optional): Retries and timeouts of ``http(s)://`` and
            ``pipe:`` shards, the arguments of
            :class:`~rils_mm.datasets.webdataset.remote.FetchPolicy`
            (``max_retries``, ``backoff_base``, ``backoff_max``,
            ``connect_timeout``, ``read_timeout``). A fault is retried from the
            byte reached; a shard whose retries are spent is skipped (or the
            rest of it) and counted by the fault's kind. Defaults to
            ``FetchPolicy()``'s values.
    """

    def __init__(self,
                 urls: Union[str, Sequence[str]],
                 num_samples: Union[int, str],
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
                 world_size: Optional[int] = None,
                 fetch: Optional[dict] = None) -> None:
        super().__init__()
        self.urls = expand_shard_urls(urls)
        #: Opens a shard: remote ones with retries (:mod:`.remote`).
        self.open_shard = ShardOpener(**(fetch or {}))
        if num_samples == 'auto':
            from ..metadata import shard_num_samples  # lazy: metadata imports .urls
            num_samples = shard_num_samples(self.urls)
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
        #: Where the next pass over an epoch resumes (:meth:`resume_at`).
        self.resume_position: Optional[ResumePosition] = None
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
        #: raw sample -> pipeline output, or None (skipped and booked)
        self.process = SampleProcessor([
            SelectMembers(self.image_keys, self.caption_key),
            DecodeCaption(max_caption_chars, self.caption_key),
            DecodeImage(max_image_pixels, decode=not self.decode_in_pipeline),
            RunPipeline(self.pipeline),
        ])

        #: The epoch of :meth:`set_epoch`, seen by persistent workers too.
        self.shared_epoch = SharedEpoch()
        self._warned_no_set_epoch = False
        if self._per_rank() == 0:
            raise ValueError(
                f'num_samples={num_samples} gives no samples per rank '
                f'(world_size={self._dist()[1]}, batch_size={batch_size})')

    # ------------------------------------------------------------------ sizes
    def _dist(self) -> Tuple[int, int]:
        if self._rank is not None:
            return self._rank, self._world_size
        return get_dist_info()

    def _per_rank(self) -> int:
        return per_rank_samples(self.num_samples, self._dist()[1], self.batch_size)

    @property
    def metainfo(self) -> dict:
        """Empty meta information (no classes), like ``ImageTextDataset``."""
        return dict()

    def __len__(self) -> int:
        """Samples yielded per rank and epoch (all workers together)."""
        return self._per_rank()

    def worker_share(self, worker: int, num_workers: int) -> int:
        """Samples yielded by ``worker`` of ``num_workers`` on this rank."""
        return worker_share(self._per_rank(), self.batch_size, worker, num_workers)

    # -------------------------------------------------------------- iterating
    def _shuffled(self, samples: Iterator[dict], *seed_parts) -> Iterator[dict]:
        if self.shuffle_buffer <= 0:
            return samples
        rng = random.Random(int_seed('samples', self.seed, *seed_parts))
        return wds.shuffle(self.shuffle_buffer, initial=self.shuffle_initial, rng=rng)(samples)

    def _raw_stream(self, epoch: int, rank: int, world_size: int, worker: int,
                    num_workers: int, state: StreamState) -> Iterator[dict]:
        """This worker's infinite stream of raw samples."""
        if self.resampled:
            return resampled_stream(self.urls, state, self._shuffled, self.seed, epoch,
                                    rank, worker, open_fn=self.open_shard)
        return self._epoch_stream(epoch, rank, world_size, worker, num_workers, state)

    def _epoch_stream(self, epoch, rank, world_size, worker, num_workers, state):
        # a generator: the shards are split (or refused) when it is first read
        mine = split_shards(
            epoch_shard_order(self.urls, self.seed, epoch, self.shuffle_shards), rank,
            world_size, worker, num_workers)
        yield from epoch_stream(mine, state, self._shuffled, self.seed, epoch, rank,
                                worker, self.shuffle_shards, open_fn=self.open_shard)

    def _warn_if_set_epoch_missing(self) -> None:
        if self.shared_epoch.is_set or self._warned_no_set_epoch:
            return
        self._warned_no_set_epoch = True
        print_log(
            'WebImageTextDataset: set_epoch() was never called; with '
            'persistent_workers=False every epoch repeats the same order. '
            "Add custom_hooks=[dict(type='DatasetEpochHook')].",
            logger='current',
            level=logging.WARNING)

    def __iter__(self) -> Iterator[dict]:
        rank, world_size = self._dist()
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info else (0, 1)
        epoch = self.shared_epoch.next_iteration()
        if info is not None and rank == 0 and worker == 0:
            self._warn_if_set_epoch_missing()
        resumed = self._resumed_batches(epoch)
        worker = resumed_worker_role(worker, num_workers, resumed)
        if info is not None:
            # A worker's random augmentations depend only on (seed, epoch, rank,
            # worker role) and its position in the stream, not on how often the
            # worker processes were restarted: epochs differ even with
            # persistent_workers=False, and a resumed epoch (roles rotated, see
            # above) replays exactly. The main process (num_workers=0) keeps
            # its generators, whose states the checkpoints hold.
            seed_global_generators(int_seed('augment', self.seed, epoch, rank, worker))
        share = self.worker_share(worker, num_workers)
        if share == 0:
            return
        state = StreamState(self.max_consecutive_failures)
        samples = self._raw_stream(epoch, rank, world_size, worker, num_workers, state)
        shares = [self.worker_share(w, num_workers) for w in range(num_workers)]
        skip = outputs_to_skip(resumed, self.resume_position.batch_size, shares,
                               worker) if resumed else 0
        produced, repeats = 0, 0
        if skip:
            rng_states = get_rng_states(cuda=False)
        try:
            for sample in samples:
                out = self.process(sample, state)
                if out is None:
                    continue
                if sample.get('__repeat__'):
                    if not repeats:
                        self._warn_repeats(epoch, rank, worker, produced, share)
                    repeats += 1
                produced += 1
                if produced <= skip:
                    if produced == skip and info is None:
                        # fast-forward done: as if never replayed (a worker's
                        # states stay where replaying its stream left them)
                        set_rng_states(rng_states)
                    if produced >= share:
                        return
                    continue
                yield out
                if produced >= share:
                    return
        finally:
            if hasattr(samples, 'close'):
                samples.close()

    def _warn_repeats(self, epoch, rank, worker, produced, share) -> None:
        print_log(
            f'WebImageTextDataset: epoch {epoch}, rank {rank}, worker '
            f'{worker}: its shards gave {produced} good samples, fewer than '
            f'its share of '
            f'{share}; {share - produced} samples are repeats. num_samples='
            f'{self.num_samples} is more than the shards hold (or shards are '
            'truncated / bad, see the warnings above).',
            logger='current',
            level=logging.WARNING)

    # ---------------------------------------------------------------- resuming
    def _resumed_batches(self, epoch: int) -> int:
        """Batches of ``epoch`` to leave out (0 unless resumed in it)."""
        position = self.resume_position
        if position is None or position.epoch != epoch:
            return 0
        return position.batches

    def resume_at(self, position: ResumePosition) -> None:
        """Make the pass over ``position.epoch`` start after ``position.batches``
        batches.

        Used by :class:`~rils_mm.engine.loops.ResumableEpochBasedTrainLoop` to
        continue an interrupted epoch at the next unseen batch. The data loader
        takes batches from its workers in turn (worker ``j % W`` makes batch
        ``j`` while all have batches left), so each worker works out how many of
        its own outputs were in the first batches
        (:func:`~rils_mm.datasets.webdataset.shards.outputs_to_skip`) and replays
        its deterministic stream up to there without yielding them (decoding
        and transforming them again, so that its random state is also where
        the interrupted run left it; in the main process, ``num_workers=0``,
        the global random states are put back afterwards since the checkpoint
        restored them already).
        """
        if position.batches and not position.batch_size:
            raise ValueError('WebImageTextDataset.resume_at needs a batch size')
        self.resume_position = position

    def skip_batches(self, num_batches: int, batch_size: Optional[int] = None,
                     epoch: Optional[int] = None) -> None:
        """:meth:`resume_at` ``num_batches`` batches into ``epoch`` (default: the
        epoch the next ``__iter__`` will use) of ``batch_size`` (default: the
        data set's ``batch_size``)."""
        batch_size = batch_size or self.batch_size
        if num_batches and not batch_size:
            raise ValueError('WebImageTextDataset.skip_batches needs a batch size')
        if epoch is None:
            epoch = self.shared_epoch.epoch
        self.resume_at(ResumePosition(int(epoch), int(num_batches), int(batch_size or 1)))

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(shards={len(self.urls)}, '
                f'num_samples={self.num_samples}, resampled={self.resampled}, '
                f'shuffle_buffer={self.shuffle_buffer}, seed={self.seed}, '
                f'batch_size={self.batch_size})')
