"""Count the bad training samples the data sets skipped, and stop on broken data."""
from collections import deque
from typing import List, Optional, Sequence, Tuple

import torch
from mmengine.dist import all_gather_object, all_reduce
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS

__all__ = ['DataSkipCounterHook']


@HOOKS.register_module()
class DataSkipCounterHook(Hook):
    """Track how many samples the data sets had to skip, and fail fast.

    :class:`~rils_mm.datasets.ImageTextDataset` and
    :class:`~rils_mm.datasets.WebImageTextDataset` replace a bad sample by the next
    good one and record ``num_skipped`` / ``skip_reasons`` in its data sample's
    metainfo. This hook sums them after every train iteration (the good samples
    are counted as *used*), and:

    * every ``check_interval`` iterations sums the epoch's counts over all
      ranks (``mmengine.dist.all_reduce``; a no-op without distributed
      training) and, once at least ``min_samples`` samples were seen (used +
      skipped), raises ``RuntimeError`` if ``skipped / (used + skipped) >
      max_skip_ratio``: all ranks see the same totals, so they raise together
      instead of leaving the others hanging in a collective;
    * after each train epoch logs ``data: N samples used, M skipped (x.x%) this
      epoch; examples: ...`` and stores ``train/data_used``,
      ``train/data_skipped`` and ``train/data_skip_ratio`` in
      ``runner.message_hub``'s runtime info, then does the same check.

    Counts restart every epoch (with an iteration-based loop, which has no
    epochs, they accumulate over the run).

    Args:
        max_skip_ratio (float): Largest tolerated fraction of skipped samples.
            Defaults to 0.5.
        min_samples (int): Samples (used + skipped, all ranks) needed before
            the ratio is checked. Defaults to 200.
        check_interval (int): Iterations between two in-epoch checks.
            Defaults to 10.
        num_examples (int): Skip reasons kept / shown. Defaults to 5.
    """

    priority = 'NORMAL'

    def __init__(self,
                 max_skip_ratio: float = 0.5,
                 min_samples: int = 200,
                 check_interval: int = 10,
                 num_examples: int = 5) -> None:
        if not 0.0 <= max_skip_ratio <= 1.0:
            raise ValueError(f'max_skip_ratio must be in [0, 1], got '
                             f'{max_skip_ratio}')
        if check_interval < 1:
            raise ValueError('check_interval must be >= 1')
        self.max_skip_ratio = max_skip_ratio
        self.min_samples = min_samples
        self.check_interval = check_interval
        self.num_examples = num_examples
        self._reset()

    def _reset(self) -> None:
        self._used = 0
        self._skipped = 0
        self._iters = 0
        self._examples: deque = deque(maxlen=self.num_examples)

    def before_train(self, runner) -> None:
        """Start counting from zero."""
        self._reset()

    def before_train_epoch(self, runner) -> None:
        """Start the epoch's counts from zero."""
        self._reset()

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        """Add the batch's counts; every ``check_interval`` iters check them."""
        used, skipped, reasons = self._count(data_batch)
        self._used += used
        self._skipped += skipped
        self._examples.extend(reasons)
        self._iters += 1
        if self._iters % self.check_interval == 0:
            self._check(runner, *self._global_counts())

    def after_train_epoch(self, runner) -> None:
        """Log and record the epoch's counts, then check them."""
        used, skipped = self._global_counts()
        examples = self._global_examples()
        total = used + skipped
        ratio = skipped / total if total else 0.0
        msg = (f'data: {used} samples used, {skipped} skipped '
               f'({100 * ratio:.1f}%) this epoch')
        if examples:
            msg += '; examples: ' + ' | '.join(examples)
        runner.logger.info(msg)
        hub = runner.message_hub
        hub.update_info('train/data_used', used)
        hub.update_info('train/data_skipped', skipped)
        hub.update_info('train/data_skip_ratio', ratio)
        self._check(runner, used, skipped, examples)

    # ---------------------------------------------------------------- helpers
    @staticmethod
    def _count(data_batch) -> Tuple[int, int, List[str]]:
        """``(used, skipped, reasons)`` of one collated batch."""
        if not isinstance(data_batch, dict):
            return 0, 0, []
        data_samples = data_batch.get('data_samples')
        if data_samples is None:
            return 0, 0, []
        if not isinstance(data_samples, Sequence):
            data_samples = [data_samples]
        skipped, reasons = 0, []
        for sample in data_samples:
            meta = getattr(sample, 'metainfo', None) or {}
            skipped += int(meta.get('num_skipped', 0) or 0)
            reasons.extend(meta.get('skip_reasons', None) or [])
        return len(data_samples), skipped, reasons

    def _global_counts(self) -> Tuple[int, int]:
        counts = torch.tensor([self._used, self._skipped], dtype=torch.int64)
        all_reduce(counts, op='sum')
        return int(counts[0]), int(counts[1])

    def _global_examples(self) -> List[str]:
        gathered = all_gather_object(list(self._examples))
        merged = [r for rank_examples in gathered for r in rank_examples]
        return merged[-self.num_examples:] if self.num_examples else []

    def _check(self,
               runner,
               used: int,
               skipped: int,
               examples: Optional[List[str]] = None) -> None:
        total = used + skipped
        if total < self.min_samples or total == 0:
            return
        ratio = skipped / total
        if ratio <= self.max_skip_ratio:
            return
        if examples is None:
            examples = self._global_examples()
        shown = '\n  '.join(examples) if examples else '(no reasons recorded)'
        raise RuntimeError(
            f'DataSkipCounterHook: {skipped} of {total} training samples '
            f'({100 * ratio:.1f}%) were bad and skipped in epoch '
            f'{runner.epoch}, more than max_skip_ratio='
            f'{self.max_skip_ratio:.0%}; the training data looks broken '
            '(missing / corrupt images or empty captions). Recent '
            f'reasons:\n  {shown}')
