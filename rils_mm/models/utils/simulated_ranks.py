"""One process standing in for rank 0 of a larger global batch (measurements only).

The paper's per-GPU regime is 128 images per rank contrasted and reconstructed against
4,096 gathered texts (Eqs. 5-9). :class:`SimulatedRanks` lets one process see that
regime: while it is active, :func:`~rils_mm.models.utils.dist.gather_features` appends
fixed embeddings of ``world_size - 1`` "other ranks" after this process's batch (this
process is rank 0), :func:`~rils_mm.models.utils.dist.get_world_size` says
``world_size`` and :func:`~rils_mm.models.utils.dist.all_reduce_sum` counts every other
rank like this one. The losses, the set ``C`` and the recon prototypes then have the
global batch's sizes. ``tools/benchmark_train.py --global-batch G`` uses it.

What matches a real run: with the official flags (no differentiable gather) rank 0's
losses and gradients equal those of a real ``world_size``-rank run whose other ranks
produce exactly these embeddings and, for the counts that are all-reduced (``|C|``,
the global L_recon normaliser), the same counts as rank 0 (tested with 2 gloo ranks).
With ``gather_with_grad=True`` the other ranks' losses would send gradient to rank 0's
slice; here they do not exist.
"""
from contextlib import contextmanager
from typing import Optional, Sequence

import torch

_ACTIVE: Optional['SimulatedRanks'] = None


class SimulatedRanks:
    """``world_size - 1`` fixed other ranks for the gathers of a step.

    Args:
        world_size (int): the simulated number of ranks (>= 1).
        others (Sequence[Tensor]): one ((world_size - 1) * B, ...) tensor per gather a
            step makes, in the order the step gathers (for the contrastive heads:
            ``z^I`` then ``z^T``, :meth:`ImageTextContrastiveHead.contrastive`); the
            gathers of later steps cycle through them again.
    """

    def __init__(self, world_size: int, others: Sequence[torch.Tensor]) -> None:
        if world_size < 1 or not others:
            raise ValueError(f'SimulatedRanks: need world_size >= 1 and at least one '
                             f'tensor of other ranks, got {world_size} and {len(others)}')
        self.world_size = world_size
        self.others = list(others)
        self.calls = 0

    def gather(self, x: torch.Tensor, with_grad: bool, local_grad: bool) -> torch.Tensor:
        """``x`` (this rank, first) and the next fixed tensor of the other ranks; ``x``
        itself when there are none (as :func:`gather_features` does on one process)."""
        other = self.others[self.calls % len(self.others)]
        self.calls += 1
        if other.shape[0] != (self.world_size - 1) * x.shape[0] or \
                other.shape[1:] != x.shape[1:]:
            raise ValueError(
                f'SimulatedRanks: gather {self.calls} got a {tuple(x.shape)} batch; the '
                f'other ranks\' tensor is {tuple(other.shape)}, expected '
                f'({(self.world_size - 1) * x.shape[0]}, {", ".join(map(str, x.shape[1:]))})')
        if self.world_size == 1:
            return x
        own = x if (with_grad or local_grad) else x.detach()
        return torch.cat([own, other.to(device=x.device, dtype=x.dtype)], dim=0)

    def all_reduce_sum(self, x: torch.Tensor) -> torch.Tensor:
        """The sum over ranks when every other rank holds the same value."""
        return x.detach().clone() * self.world_size


def active() -> Optional[SimulatedRanks]:
    """The :class:`SimulatedRanks` in force, or None (every real run)."""
    return _ACTIVE


@contextmanager
def simulated_ranks(world_size: int, others: Sequence[torch.Tensor]):
    """Run the enclosed steps as rank 0 of ``world_size`` ranks (see the module)."""
    global _ACTIVE
    if _ACTIVE is not None:
        raise RuntimeError('simulated_ranks: already active (nesting is not supported)')
    _ACTIVE = SimulatedRanks(world_size, others)
    try:
        yield _ACTIVE
    finally:
        _ACTIVE = None
