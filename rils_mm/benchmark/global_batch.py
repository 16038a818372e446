"""``--global-batch G``: every runner sees the paper's global batch on one process.

On the paper's GPUs each rank holds B images and contrasts / reconstructs against the
G = 4,096 gathered embeddings of all ranks (Eqs. 5-9): the losses, the set ``C`` and the
recon prototypes have G columns. Here the other ``G / B - 1`` ranks' image and text
embeddings are drawn once (fixed seed, unit norm) and appended after this process's
batch wherever the step gathers: for our code by
:mod:`rils_mm.models.utils.simulated_ranks` (rank 0 of ``G / B`` ranks), for the
official code by standing in for its ``utils.all_gather_batch``. At G = B nothing is
changed.
"""
from contextlib import contextmanager, nullcontext
from typing import List, Tuple

#: seed of the other ranks' embeddings (the same for every runner)
SEED = 1234


def other_ranks(global_batch: int, batch_size: int, dim: int,
                seed: int = SEED) -> Tuple[int, List]:
    """``(world_size, [z^I of the others, z^T of the others])``: ``G / B`` ranks and two
    fixed unit-norm ((G - B), dim) fp32 tensors (on CPU)."""
    import torch
    if global_batch < batch_size or global_batch % batch_size:
        raise ValueError(f'--global-batch must be a multiple of --batch-size '
                         f'({batch_size}), at least it; got {global_batch}')
    gen = torch.Generator().manual_seed(seed)
    n = global_batch - batch_size
    others = [torch.nn.functional.normalize(torch.randn(n, dim, generator=gen), dim=-1)
              for _ in range(2)]
    return global_batch // batch_size, others


def ours_context(global_batch, batch_size: int, dim: int, device: str):
    """A context factory for our steps: :func:`simulated_ranks` with the others, or
    nothing when ``global_batch`` is None or B."""
    if not global_batch or global_batch == batch_size:
        return nullcontext
    from rils_mm.models.utils.simulated_ranks import simulated_ranks
    world_size, others = other_ranks(global_batch, batch_size, dim)
    others = [o.to(device) for o in others]
    return lambda: simulated_ranks(world_size, others)


def official_context(losses_module, global_batch, batch_size: int, dim: int, device: str):
    """A context factory for the official step: its ``losses.utils.all_gather_batch``
    ([image_embed, text_embed] -> the gathered pair) returns this process's embeddings
    followed by the fixed others; rank 0, so its labels stay ``arange(B)``."""
    if not global_batch or global_batch == batch_size:
        return nullcontext
    import torch
    _, others = other_ranks(global_batch, batch_size, dim)
    others = [o.to(device) for o in others]
    utils = losses_module.utils

    def gather(tensors):
        return [torch.cat([t.detach(), o.to(t.dtype)], dim=0)
                for t, o in zip(tensors, others)]

    @contextmanager
    def context():
        real = utils.all_gather_batch
        utils.all_gather_batch = gather
        try:
            yield
        finally:
            utils.all_gather_batch = real

    return context
