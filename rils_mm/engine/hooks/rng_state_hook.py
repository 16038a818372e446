"""Save and restore every rank's random-number-generator states with checkpoints."""
from typing import Any, Dict, List, Mapping, Optional

from mmengine.dist import get_dist_info
from mmpretrain.registry import HOOKS

from rils_mm.utils.seeding import get_rng_states, set_rng_states

from ..resume import RankStateHook

__all__ = ['RNGStateHook', 'get_rng_states', 'set_rng_states']


@HOOKS.register_module()
class RNGStateHook(RankStateHook):
    """Make ``--resume`` continue a run exactly, on every rank.

    mmengine re-seeds at start-up but does not restore the generators' states
    when resuming, so the random masks (torch), crops (numpy/python) and worker
    seeds after a resume would differ from an uninterrupted run. Each rank's
    generators are its own (``randomness.diff_rank_seed``, different crops), so
    every checkpoint holds the python, numpy, torch (and CUDA) states of
    **every** rank as ``checkpoint['rng_state'] = dict(world_size=W, ranks=[state
    of rank 0, ..., state of rank W-1], mid_epoch=...)``, and on resume rank ``r``
    puts back ``ranks[r]`` (a per-rank participant of the resume contract,
    :mod:`rils_mm.engine.resume`).

    The states are put back in ``before_train``, after mmengine's
    ``Runner.resume`` (which re-seeds all generators when the checkpoint's seed
    differs from the config's) and before the first batch is drawn.

    A different number of ranks cannot continue the same run:

    * a **mid-epoch** checkpoint (``iter_N.pth``; its epoch's order was split
      over the saved ranks, so the unseen rest of it cannot be found again)
      raises ``RuntimeError``: resume from the last epoch checkpoint instead
      (``--resume work_dir/epoch_N.pth``);
    * an end-of-epoch checkpoint resumes with a warning; every rank keeps the
      generators seeded at start-up (``randomness``), the data order of the
      next epochs is the sampler's for the new world size.

    Checkpoints of older versions (one dict: rank 0's states) are put back on
    every rank, as before (exact with one rank only).
    """

    priority = 'VERY_LOW'
    resume_key = 'rng_state'

    def __init__(self) -> None:
        super().__init__()
        self._pending: Optional[dict] = None

    def resume_state(self) -> dict:
        """This process's generator states."""
        return get_rng_states()

    def resume_fields(self, runner, checkpoint: dict) -> Dict[str, Any]:
        """Whether the checkpoint lies inside an epoch."""
        meta = checkpoint.get('meta', {})
        return dict(mid_epoch=_is_mid_epoch(runner, meta.get('epoch'), meta.get('iter')))

    def rank0_entry(self, runner, state: dict, fields: Dict[str, Any]) -> dict:
        """Saved without a gather on all ranks (another checkpoint hook, a best
        checkpoint): rank 0's states only, in the older format."""
        return state

    def clear_resume_state(self) -> None:
        self._pending = None

    def load_resume_state(self, state: dict, saved: Mapping[str, Any]) -> None:
        """Remember this rank's states; put back in ``before_train``."""
        self._pending = state

    def load_rank0_entry(self, runner, entry: dict) -> None:
        """Older format (rank 0's states): every rank continues from them."""
        self._pending = entry
        if get_dist_info()[1] > 1:
            runner.logger.warning(
                'RNGStateHook: the checkpoint holds the random states of rank 0 only '
                '(an older version wrote it); every rank continues from them, so the '
                'resumed run is not exactly the uninterrupted one.')

    def load_other_world_size(self, runner, states: List[dict],
                              saved: Mapping[str, Any]) -> None:
        """Refuse in the middle of an epoch; at its end, warn and keep the
        generators seeded at start-up."""
        saved_ranks, world_size = len(states), get_dist_info()[1]
        if saved.get('mid_epoch'):
            raise RuntimeError(
                f'RNGStateHook: the checkpoint was written by {saved_ranks} rank(s) in the '
                f'middle of an epoch, this run has {world_size}. The epoch\'s samples were '
                f'split over {saved_ranks} ranks, so its unseen rest cannot be continued with '
                f'{world_size}: resume from the last end-of-epoch checkpoint '
                '(--resume WORK_DIR/epoch_N.pth), or with the same number of ranks.')
        runner.logger.warning(
            f'RNGStateHook: the checkpoint was written by {saved_ranks} rank(s), this run has '
            f'{world_size}: every rank keeps the random generators seeded at start-up, so '
            'the resumed run is not exactly what the original one would have been.')

    def before_train(self, runner) -> None:
        """Put this rank's saved states back (after ``Runner.resume`` re-seeded)."""
        if self._pending is not None:
            set_rng_states(self._pending)
            self._pending = None


def _is_mid_epoch(runner, epoch, it) -> bool:
    """Whether a checkpoint at (``epoch``, ``it``) lies inside an epoch."""
    try:
        epoch_len = len(runner.train_loop.dataloader)
    except (AttributeError, TypeError):
        return False
    if epoch is None or it is None or not epoch_len:
        return False
    return int(it) != int(epoch) * epoch_len
