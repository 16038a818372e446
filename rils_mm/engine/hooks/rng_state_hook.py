"""Save and restore every rank's random-number-generator states with checkpoints."""
import random
from typing import List, Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_dist_info
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS

__all__ = ['RNGStateHook', 'get_rng_states', 'set_rng_states']


def get_rng_states() -> dict:
    """This process's python, numpy, torch (and CUDA) generator states."""
    np_state = np.random.get_state(legacy=False)
    # plain ints, so the checkpoint needs no extra numpy type allow-listed
    np_state['state']['key'] = np_state['state']['key'].tolist()
    state = dict(python=random.getstate(), numpy=np_state, torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_states(state: dict) -> None:
    """Put back states saved by :func:`get_rng_states`."""
    random.setstate(_as_tuple(state['python']))
    np_state = dict(state['numpy'])
    np_state['state'] = dict(np_state['state'])
    np_state['state']['key'] = np.asarray(np_state['state']['key'], dtype=np.uint32)
    np.random.set_state(np_state)
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Make ``--resume`` continue a run exactly, on every rank.

    mmengine re-seeds at start-up but does not restore the generators' states
    when resuming, so the random masks (torch), crops (numpy/python) and worker
    seeds after a resume would differ from an uninterrupted run. Each rank's
    generators are its own (``randomness.diff_rank_seed``, different crops), so
    every checkpoint holds the python, numpy, torch (and CUDA) states of
    **every** rank (gathered with ``mmengine.dist.all_gather_object`` when
    :class:`~rils_mm.engine.hooks.AtomicCheckpointHook` calls
    :meth:`gather_rank_states` on all ranks; rank 0 writes the file) as ``checkpoint['rng_state'] =
    dict(world_size=W, ranks=[state of rank 0, ..., state of rank W-1])``, and
    on resume rank ``r`` puts back ``ranks[r]``.

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

    def __init__(self) -> None:
        self._pending: Optional[dict] = None
        self._gathered: Optional[tuple] = None

    def gather_rank_states(self, runner) -> None:
        """Collect every rank's states (a collective: called on all ranks by
        :class:`~rils_mm.engine.hooks.AtomicCheckpointHook` before it saves)."""
        self._gathered = (runner.iter, all_gather_object(get_rng_states()))

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Write the gathered states (rank 0 writes checkpoints)."""
        gathered, self._gathered = self._gathered, None
        if gathered is not None and gathered[0] == runner.iter:
            states: List[dict] = gathered[1]
        elif get_dist_info()[1] == 1:
            states = [get_rng_states()]
        else:
            # Saved without a gather on all ranks (another checkpoint hook, a
            # best checkpoint): rank 0's states only, in the older format.
            checkpoint['rng_state'] = get_rng_states()
            return
        meta = checkpoint.get('meta', {})
        checkpoint['rng_state'] = dict(
            world_size=len(states),
            ranks=states,
            mid_epoch=_is_mid_epoch(runner, meta.get('epoch'), meta.get('iter')))

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Check the saved states against this run; put back in ``before_train``."""
        state = checkpoint.get('rng_state')
        self._pending = None
        if state is None or not getattr(runner, '_resume', False):
            return  # only on resume (`load_from` alone leaves the generators)
        rank, world_size = get_dist_info()
        if 'ranks' not in state:  # older format: rank 0's states only
            self._pending = state
            if world_size > 1:
                runner.logger.warning(
                    'RNGStateHook: the checkpoint holds the random states of rank 0 only '
                    '(an older version wrote it); every rank continues from them, so the '
                    'resumed run is not exactly the uninterrupted one.')
            return
        saved = int(state['world_size'])
        if saved == world_size:
            self._pending = state['ranks'][rank]
            return
        if state.get('mid_epoch'):
            raise RuntimeError(
                f'RNGStateHook: the checkpoint was written by {saved} rank(s) in the middle '
                f'of an epoch, this run has {world_size}. The epoch\'s samples were split '
                f'over {saved} ranks, so its unseen rest cannot be continued with '
                f'{world_size}: resume from the last end-of-epoch checkpoint '
                '(--resume WORK_DIR/epoch_N.pth), or with the same number of ranks.')
        runner.logger.warning(
            f'RNGStateHook: the checkpoint was written by {saved} rank(s), this run has '
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


def _as_tuple(x):
    """``random.setstate`` wants nested tuples; some loaders turn them to lists."""
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x
