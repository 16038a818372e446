"""Per-block activation checkpointing shared by the three Transformers."""
from functools import partial
from typing import Callable, Iterable, Optional, Union

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

try:  # torch >= 2.5; torch 2.4 has no public selective checkpointing
    from torch.utils.checkpoint import CheckpointPolicy, create_selective_checkpoint_contexts
except ImportError:  # pragma: no cover - exercised on torch 2.4 only
    CheckpointPolicy = create_selective_checkpoint_contexts = None

#: ``with_cp`` value of selective checkpointing (see :func:`run_blocks`).
SELECTIVE = 'selective'


def _matmul_ops() -> frozenset:
    """The ops whose outputs selective checkpointing keeps: matrix products,
    convolutions and the fused attention kernels (everything expensive)."""
    aten = torch.ops.aten
    names = ('mm', 'addmm', 'bmm', 'baddbmm', 'convolution',
             '_scaled_dot_product_flash_attention_for_cpu',
             '_scaled_dot_product_flash_attention',
             '_scaled_dot_product_efficient_attention',
             '_scaled_dot_product_cudnn_attention')
    return frozenset(getattr(aten, n).default for n in names if hasattr(aten, n))


def _keep_matmul_outputs(ctx, op, *args, **kwargs):
    """Selective-checkpointing policy: save what a matmul / attention kernel
    computed, recompute everything else (LayerNorm, activations, residual
    adds, reshapes, drop-path: element-wise, cheap next to the matmuls)."""
    if op in _MATMUL_OPS:
        return CheckpointPolicy.MUST_SAVE
    return CheckpointPolicy.PREFER_RECOMPUTE


_MATMUL_OPS = _matmul_ops()


def num_checkpointed(with_cp: Union[bool, int, str], num_blocks: int) -> int:
    """How many leading blocks ``with_cp`` checkpoints.

    ``False``/0: none; ``True`` or ``'selective'``: all; an int ``n``: the
    first ``n`` blocks (so memory can be traded for compute block by block).
    """
    if with_cp == SELECTIVE:
        if create_selective_checkpoint_contexts is None:
            raise RuntimeError(
                f"with_cp={SELECTIVE!r} needs torch >= 2.5 (selective activation "
                f"checkpointing, torch.utils.checkpoint.create_selective_checkpoint_contexts); "
                f"this is torch {torch.__version__}. Use with_cp=True (full checkpointing, "
                f"same gradients, about +1/3 of the block FLOPs) or upgrade torch.")
        return num_blocks
    if isinstance(with_cp, bool):
        return num_blocks if with_cp else 0
    if not isinstance(with_cp, int) or with_cp < 0:
        raise ValueError('with_cp must be a bool, an int >= 0 (the number '
                         f'of leading blocks to checkpoint) or {SELECTIVE!r}, '
                         f'got {with_cp!r}')
    return min(with_cp, num_blocks)


def run_blocks(blocks: Iterable[nn.Module],
               x: torch.Tensor,
               with_cp: Union[bool, int, str] = False,
               fn: Optional[Callable] = None) -> torch.Tensor:
    """``x = block(x)`` for every block, the first ``with_cp`` of them under
    :func:`torch.utils.checkpoint.checkpoint` (non-reentrant, RNG state
    preserved, so dropout/drop-path masks and thus the gradients are those
    of the plain loop).

    Checkpointed blocks (``True`` / ``n``) keep only their input for backward
    and recompute the rest, about +1/3 of the block's FLOPs.
    ``with_cp='selective'`` checkpoints every block *selectively*: the outputs
    of the matrix products and the attention kernel are kept, only the cheap
    element-wise ops between them (LayerNorm, GELU, residual adds, reshapes,
    drop-path) are recomputed in backward, so no matmul is computed twice
    (:func:`torch.utils.checkpoint.create_selective_checkpoint_contexts`). The
    recomputed tensors are bitwise those of the forward pass, so the gradients
    are those of the plain loop. Nothing is checkpointed when gradients are
    disabled.

    Args:
        blocks: the Transformer blocks, in order.
        x (Tensor): input of the first block.
        with_cp (bool | int | str): see :func:`num_checkpointed`.
        fn (callable, optional): ``fn(block, x)`` to call instead of
            ``block(x)``.
    """
    blocks = list(blocks)
    n_cp = num_checkpointed(with_cp, len(blocks)) if torch.is_grad_enabled() else 0
    kwargs = {}
    if with_cp == SELECTIVE:
        kwargs['context_fn'] = partial(create_selective_checkpoint_contexts,
                                       _keep_matmul_outputs)
    for i, block in enumerate(blocks):
        args = (block, x) if fn is not None else (x, )
        call = fn if fn is not None else block
        if i < n_cp:
            x = checkpoint(call, *args, use_reentrant=False, **kwargs)
        else:
            x = call(*args)
    return x
