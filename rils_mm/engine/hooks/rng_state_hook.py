"""Save and restore random-number-generator states with checkpoints."""
import random

import numpy as np
import torch
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Make ``--resume`` continue a run exactly.

    mmengine re-seeds at start-up but does not restore the generators' states
    when resuming, so the random masks (torch), crops (numpy/python) and worker
    seeds after a resume would differ from an uninterrupted run. This hook
    stores the python, numpy, torch (and CUDA) states of this rank in every
    checkpoint and restores them on resume (``load_from`` alone leaves them).
    """

    priority = 'VERY_LOW'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        np_state = np.random.get_state(legacy=False)
        # plain ints, so the checkpoint needs no extra numpy type allow-listed
        np_state['state']['key'] = np_state['state']['key'].tolist()
        state = dict(
            python=random.getstate(),
            numpy=np_state,
            torch=torch.get_rng_state())
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state['cuda'] = torch.cuda.get_rng_state_all()
        checkpoint['rng_state'] = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get('rng_state')
        if state is None or not runner._resume:  # noqa: SLF001 (only on resume)
            return
        random.setstate(_as_tuple(state['python']))
        np_state = state['numpy']
        np_state['state']['key'] = np.asarray(np_state['state']['key'], dtype=np.uint32)
        np.random.set_state(np_state)
        torch.set_rng_state(state['torch'])
        if 'cuda' in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state['cuda'])


def _as_tuple(x):
    """``random.setstate`` wants nested tuples; some loaders turn them to lists."""
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x
