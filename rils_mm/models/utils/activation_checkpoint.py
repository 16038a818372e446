"""Per-block activation checkpointing shared by the three Transformers."""
from typing import Callable, Iterable, Optional, Union

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint


def num_checkpointed(with_cp: Union[bool, int], num_blocks: int) -> int:
    """How many leading blocks ``with_cp`` checkpoints.

    ``False``/0: none; ``True``: all; an int ``n``: the first ``n`` blocks
    (so memory can be traded for compute block by block).
    """
    if isinstance(with_cp, bool):
        return num_blocks if with_cp else 0
    if not isinstance(with_cp, int) or with_cp < 0:
        raise ValueError('with_cp must be a bool or an int >= 0 (the number '
                         f'of leading blocks to checkpoint), got {with_cp!r}')
    return min(with_cp, num_blocks)


def run_blocks(blocks: Iterable[nn.Module],
               x: torch.Tensor,
               with_cp: Union[bool, int] = False,
               fn: Optional[Callable] = None) -> torch.Tensor:
    """``x = block(x)`` for every block, the first ``with_cp`` of them under
    :func:`torch.utils.checkpoint.checkpoint` (non-reentrant, RNG state
    preserved, so dropout/drop-path masks and thus the gradients are those
    of the plain loop).

    Checkpointed blocks keep only their input for backward and recompute
    the rest, about +1/3 of the block's FLOPs. Nothing is checkpointed when
    gradients are disabled.

    Args:
        blocks: the Transformer blocks, in order.
        x (Tensor): input of the first block.
        with_cp (bool | int): see :func:`num_checkpointed`.
        fn (callable, optional): ``fn(block, x)`` to call instead of
            ``block(x)``.
    """
    blocks = list(blocks)
    n_cp = num_checkpointed(with_cp, len(blocks)) if torch.is_grad_enabled() else 0
    for i, block in enumerate(blocks):
        args = (block, x) if fn is not None else (x, )
        call = fn if fn is not None else block
        if i < n_cp:
            x = checkpoint(call, *args, use_reentrant=False)
        else:
            x = call(*args)
    return x
