"""Count the bad training samples the data sets skipped, and stop on broken data."""
from collections import Counter
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from mmengine.dist import all_gather_object, all_reduce, get_dist_info
from mmpretrain.registry import HOOKS

from ..resume import RankStateHook

__all__ = ['DataSkipCounterHook']


def _train_dataset(runner):
    loop = getattr(runner, 'train_loop', None)
    loader = getattr(loop, 'dataloader', None)
    return getattr(loader, 'dataset', None)


@HOOKS.register_module()
class DataSkipCounterHook(RankStateHook):
    """Track how many samples the data sets had to skip, and fail fast.

    :class:`~rils_mm.datasets.ImageTextDataset` and
    :class:`~rils_mm.datasets.WebImageTextDataset` replace a bad sample by the next
    good one and record in its data sample's metainfo ``num_skipped``,
    ``skip_reasons``, ``skip_kinds`` and ``is_repeat`` (the sample stands in for a
    bad one, or is read again because the shards ran out). This hook sums them
    after every train iteration. A sample is *used* only if it is not a repeat,
    so the counts are over **distinct** samples: with a fraction ``f`` of bad
    rows, ``skipped / (used + skipped) = f`` (counting the stand-ins as used
    would show ``f / (1 + f)``, and a 90 % broken set would look like 47 %).
    Rows the data set dropped when it loaded its annotation file
    (``num_invalid_rows``: empty captions, bytes that are not UTF-8, ...) count
    as skipped too, once per epoch.

    * Every ``check_interval`` iterations the epoch's counts are summed over all
      ranks (``mmengine.dist.all_reduce``; a no-op without distributed training)
      and, once at least ``min_samples`` samples were seen, ``RuntimeError`` is
      raised if ``bad / (used + bad) > max_skip_ratio`` (``bad`` = skipped +
      dropped rows); all ranks see the same totals, so they raise together. The
      message names the first bad files.
    * After each train epoch it logs::

        data: N distinct samples used, M skipped, D rows dropped at load time,
        R repeats (x.x% bad) this epoch; skipped by kind: corrupt image 3, ...;
        examples: ...

      and stores ``train/data_used``, ``train/data_skipped``,
      ``train/data_dropped_rows``, ``train/data_repeats``,
      ``train/data_skip_ratio`` and ``train/data_skipped_by_kind`` in
      ``runner.message_hub``'s runtime info (so they are in the epoch's
      checkpoint), then does the same check.

    Counts restart every epoch (with an iteration-based loop, which has no
    epochs, they accumulate over the run). Checkpoints hold every rank's counts
    of the epoch so far, and a run resumed from a mid-epoch checkpoint continues
    each rank from its own, so the resumed epoch's line is the uninterrupted
    run's (a per-rank participant of the resume contract,
    :mod:`rils_mm.engine.resume`).

    Args:
        max_skip_ratio (float): Largest tolerated fraction of bad distinct
            samples. Defaults to 0.5.
        min_samples (int): Samples (used + bad, all ranks) needed before
            the ratio is checked. Defaults to 200.
        check_interval (int): Iterations between two in-epoch checks.
            Defaults to 10.
        num_examples (int): Skip reasons (the first ones) kept / shown.
            Defaults to 5.
    """

    priority = 'NORMAL'  # before CheckpointHook (VERY_LOW) saves the counts
    resume_key = 'data_skip_counts'

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
        super().__init__()
        self._resumed: Optional[dict] = None
        self._reset()

    def _reset(self) -> None:
        self._used = 0
        self._skipped = 0
        self._repeats = 0
        self._iters = 0
        self._kinds: Counter = Counter()
        self._examples: List[str] = []

    def before_train(self, runner) -> None:
        """Start counting from zero."""
        self._reset()

    def before_train_epoch(self, runner) -> None:
        """Start the epoch's counts from zero (or from a mid-epoch checkpoint's)."""
        self._reset()
        state, self._resumed = self._resumed, None
        if state and state.get('epoch') == runner.epoch:
            self._used = int(state['used'])
            self._skipped = int(state['skipped'])
            self._repeats = int(state['repeats'])
            self._kinds = Counter(state['kinds'])
            self._examples = list(state['examples'])

    # ------------------------------------------- resume contract (per rank)
    def resume_state(self) -> dict:
        """This rank's counts of the epoch so far."""
        return dict(used=self._used, skipped=self._skipped, repeats=self._repeats,
                    kinds=dict(self._kinds), examples=list(self._examples))

    def resume_fields(self, runner, checkpoint: dict) -> Dict[str, Any]:
        """The epoch the counts are of."""
        return dict(epoch=runner.epoch)

    def clear_resume_state(self) -> None:
        self._resumed = None

    def load_resume_state(self, state: dict, saved: Mapping[str, Any]) -> None:
        """Remember this rank's saved counts; used if the resumed epoch is unfinished."""
        self._resumed = dict(state, **saved)

    def load_other_world_size(self, runner, states: List[dict],
                              saved: Mapping[str, Any]) -> None:
        """With a different number of ranks than the checkpoint's, rank 0
        continues from the sum of all saved ranks' counts and the others from
        zero, so the epoch's totals (summed over ranks) stay right."""
        if get_dist_info()[0] != 0:
            return
        kinds: Counter = Counter()
        for r in states:
            kinds.update(r['kinds'])
        total = dict(used=sum(r['used'] for r in states),
                     skipped=sum(r['skipped'] for r in states),
                     repeats=sum(r['repeats'] for r in states), kinds=dict(kinds),
                     examples=[e for r in states for e in r['examples']][:self.num_examples])
        self.load_resume_state(total, saved)

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        """Add the batch's counts; every ``check_interval`` iters check them."""
        used, repeats, skipped, kinds, reasons = self._count(data_batch)
        self._used += used
        self._repeats += repeats
        self._skipped += skipped
        self._kinds.update(kinds)
        room = self.num_examples - len(self._examples)
        if room > 0:
            self._examples.extend(reasons[:room])
        self._iters += 1
        if self._iters % self.check_interval == 0:
            used, repeats, skipped = self._global_counts()
            self._check(runner, used, skipped + self._dropped(runner)[0])

    def after_train_epoch(self, runner) -> None:
        """Log and record the epoch's counts, then check them."""
        used, repeats, skipped = self._global_counts()
        kinds, examples = self._global_kinds_and_examples()
        dropped, dropped_kinds, dropped_examples = self._dropped(runner)
        bad = skipped + dropped
        total = used + bad
        ratio = bad / total if total else 0.0
        msg = f'data: {used} distinct samples used, {skipped} skipped'
        if dropped:
            msg += f', {dropped} rows dropped at load time'
        msg += f', {repeats} repeats ({100 * ratio:.1f}% bad) this epoch'
        all_kinds = Counter(kinds)
        all_kinds.update(dropped_kinds)
        if all_kinds:
            msg += '; skipped by kind: ' + ', '.join(
                f'{k} {n}' for k, n in sorted(all_kinds.items(), key=lambda kv: -kv[1]))
        shown = (dropped_examples + examples)[:self.num_examples] if self.num_examples else []
        if shown:
            msg += '; examples: ' + ' | '.join(shown)
        runner.logger.info(msg)
        hub = runner.message_hub
        hub.update_info('train/data_used', used)
        hub.update_info('train/data_skipped', skipped)
        hub.update_info('train/data_dropped_rows', dropped)
        hub.update_info('train/data_repeats', repeats)
        hub.update_info('train/data_skip_ratio', ratio)
        hub.update_info('train/data_skipped_by_kind', dict(all_kinds))
        self._check(runner, used, bad, shown)

    # ---------------------------------------------------------------- helpers
    @staticmethod
    def _count(data_batch) -> Tuple[int, int, int, Dict[str, int], List[str]]:
        """``(used, repeats, skipped, kinds, reasons)`` of one collated batch."""
        if not isinstance(data_batch, dict):
            return 0, 0, 0, {}, []
        data_samples = data_batch.get('data_samples')
        if data_samples is None:
            return 0, 0, 0, {}, []
        if not isinstance(data_samples, Sequence):
            data_samples = [data_samples]
        used = repeats = skipped = 0
        kinds: Counter = Counter()
        reasons: List[str] = []
        for sample in data_samples:
            meta = getattr(sample, 'metainfo', None) or {}
            n = int(meta.get('num_skipped', 0) or 0)
            skipped += n
            sample_reasons = list(meta.get('skip_reasons', None) or [])
            reasons.extend(sample_reasons)
            sample_kinds = meta.get('skip_kinds')
            if sample_kinds is None:
                from rils_mm.datasets.utils import skip_kind
                sample_kinds = Counter(skip_kind(r) for r in sample_reasons[:n])
            kinds.update(sample_kinds)
            if meta.get('is_repeat', False):
                repeats += 1
            else:
                used += 1
        return used, repeats, skipped, dict(kinds), reasons

    @staticmethod
    def _dropped(runner) -> Tuple[int, Dict[str, int], List[str]]:
        """Rows the train data set dropped at load time (same on every rank)."""
        dataset = _train_dataset(runner)
        num = getattr(dataset, 'num_invalid_rows', 0)
        if not isinstance(num, int):
            return 0, {}, []
        kinds = getattr(dataset, 'invalid_row_kinds', None) or ({'invalid row': num}
                                                                 if num else {})
        examples = list(getattr(dataset, 'invalid_row_examples', None) or [])
        return num, dict(kinds), examples

    def _global_counts(self) -> Tuple[int, int, int]:
        counts = torch.tensor([self._used, self._repeats, self._skipped], dtype=torch.int64)
        all_reduce(counts, op='sum')
        return int(counts[0]), int(counts[1]), int(counts[2])

    def _global_kinds_and_examples(self) -> Tuple[Dict[str, int], List[str]]:
        gathered = all_gather_object((dict(self._kinds), list(self._examples)))
        kinds: Counter = Counter()
        examples: List[str] = []
        for rank_kinds, rank_examples in gathered:
            kinds.update(rank_kinds)
            examples.extend(rank_examples)
        return dict(kinds), examples[:self.num_examples] if self.num_examples else []

    def _check(self,
               runner,
               used: int,
               bad: int,
               examples: Optional[List[str]] = None) -> None:
        total = used + bad
        if total < self.min_samples or total == 0:
            return
        ratio = bad / total
        if ratio <= self.max_skip_ratio:
            return
        if examples is None:
            dropped_examples = self._dropped(runner)[2]
            examples = (dropped_examples + self._global_kinds_and_examples()[1])
            examples = examples[:self.num_examples] if self.num_examples else []
        shown = '\n  '.join(examples) if examples else '(no reasons recorded)'
        raise RuntimeError(
            f'DataSkipCounterHook: {bad} of {total} distinct training samples '
            f'({100 * ratio:.1f}%) were bad and skipped in epoch '
            f'{runner.epoch}, more than max_skip_ratio='
            f'{self.max_skip_ratio:.0%}; the training data looks broken '
            '(missing / corrupt images or empty captions). First bad '
            f'samples:\n  {shown}')
