"""An epoch-based training loop that resumes in the middle of an epoch exactly."""
import logging
from typing import Iterator, Optional

import torch
from mmengine.dataset import DefaultSampler
from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop
from mmpretrain.registry import DATA_SAMPLERS, LOOPS

from .resume import ResumableStream, ResumePosition

__all__ = ['ResumableSampler', 'ResumableEpochBasedTrainLoop']


@DATA_SAMPLERS.register_module()
class ResumableSampler(DefaultSampler, ResumableStream):
    """:class:`mmengine.dataset.DefaultSampler` that can start an epoch part-way.

    The order of an epoch is the parent's (a permutation seeded with
    ``seed + epoch``, then this rank's share); :meth:`skip_next` makes the
    next ``__iter__`` leave out its first ``n`` indices, once. Nothing else
    changes, so the indices after the skipped ones are exactly those an
    uninterrupted epoch would have produced.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._skip = 0

    def skip_next(self, n: int) -> None:
        """Leave out the first ``n`` indices of the next epoch's order."""
        if n < 0:
            raise ValueError(f'cannot skip {n} samples')
        self._skip = int(n)

    def resume_at(self, position: ResumePosition) -> None:
        """Leave out the first ``position.batches`` batches of the next epoch."""
        self.skip_next(position.batches * position.batch_size)

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        skip, self._skip = self._skip, 0
        return iter(indices[skip:])

    # __len__ stays the parent's (the whole epoch): the loop and the hooks
    # number batches within the whole epoch.


@LOOPS.register_module()
class ResumableEpochBasedTrainLoop(EpochBasedTrainLoop):
    """:class:`mmengine.runner.EpochBasedTrainLoop` that continues an
    interrupted epoch at the next unseen batch.

    mmengine's loop restarts an interrupted epoch from its first batch, so a
    run resumed from a mid-epoch checkpoint (``meta`` ``epoch=e``,
    ``iter=i`` with ``i > e * len(dataloader)``) sees the epoch's first
    batches twice, trains more iterations than planned and differs from an
    uninterrupted run. Here, the first ``k = i - e * len(dataloader)``
    batches of the resumed epoch are left out without loading them: the
    loop hands :meth:`resume_position` to the data stream of the resume
    contract (:class:`~rils_mm.engine.resume.ResumableStream`): a
    :class:`ResumableSampler` (map-style data sets) skips the first ``k *
    batch_size`` indices of the epoch's order;
    :class:`~rils_mm.datasets.WebImageTextDataset` fast-forwards its
    deterministic stream.

    Every rank trains one batch per iteration, so ``k`` is the same on every
    rank and each rank skips its own first ``k`` batches (its share of the
    epoch's permutation, or its own stream): the position needs no per-rank
    state in the checkpoint. The per-rank random states and bad-sample counts
    do (:class:`~rils_mm.engine.hooks.RNGStateHook`,
    :class:`~rils_mm.engine.hooks.DataSkipCounterHook`).

    Creating the data-loader iterator draws a base seed from torch's global
    generator; the epoch's first draw was already made (and saved with the
    RNG states, see :class:`~rils_mm.engine.hooks.RNGStateHook`) in the
    interrupted run, so here the torch RNG state is put back after the
    iterator is created. The resumed run is then bit for bit the
    uninterrupted one, with one process or several (gloo) and with data-loader
    workers (``tests/test_kill_resume.py``, ``tests/test_resume_position.py``).

    Args: see :class:`mmengine.runner.EpochBasedTrainLoop`.
    """

    def resume_position(self) -> Optional[ResumePosition]:
        """Where the epoch about to run goes on: ``None`` if it starts afresh."""
        epoch_len = len(self.dataloader)
        start = self._iter - self._epoch * epoch_len  # batches already trained
        if not 0 < start < epoch_len:
            return None
        return ResumePosition(self._epoch, start, self.dataloader.batch_size)

    def _fast_forward(self, position: ResumePosition) -> bool:
        """Make the data loader leave out the batches before ``position``
        without loading them; ``False`` if neither its sampler nor its data set
        is a :class:`~rils_mm.engine.resume.ResumableStream`."""
        for stream in (getattr(self.dataloader, 'sampler', None), self.dataloader.dataset):
            if isinstance(stream, ResumableStream):
                stream.resume_at(position)
                return True
        return False

    def run_epoch(self) -> None:
        """Iterate one epoch, or what is left of an interrupted one."""
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        position = self.resume_position()
        start = position.batches if position else 0
        drop = 0
        if position:
            print_log(
                f'Continuing epoch {self._epoch + 1} at batch {start + 1} of '
                f'{len(self.dataloader)} (iteration {self._iter + 1}).',
                logger='current')
            if not self._fast_forward(position):
                drop = start
                print_log(
                    f'{type(self.dataloader.sampler).__name__} cannot start part-way, so '
                    f'the first {start} batches are loaded again and dropped (their random '
                    "augmentations shift the rest). Use sampler=dict(type='ResumableSampler').",
                    logger='current',
                    level=logging.WARNING)
        # Creating the iterator draws a base seed from torch's global generator;
        # the interrupted run drew it at the start of this epoch, before the
        # checkpoint's RNG state was saved, so the state is put back.
        rng = torch.get_rng_state()
        batches = iter(self.dataloader)
        if start:
            torch.set_rng_state(rng)
        for i, data_batch in enumerate(batches):
            if i < drop:
                continue
            self.run_iter(start + i - drop, data_batch)
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1
