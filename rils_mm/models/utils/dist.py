"""Gathering embeddings across ranks for global-batch losses."""
import torch
import torch.distributed as dist
from mmengine.dist import all_reduce, get_rank
from mmengine.dist import get_world_size as _dist_world_size

from . import simulated_ranks


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient for this rank's
    slice (the SLIP/MoCo-v3 "GatherLayer"), on public collectives only."""

    @staticmethod
    def forward(ctx, x: torch.Tensor):
        chunks = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(chunks, x.contiguous())
        return tuple(chunks)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor) -> torch.Tensor:
        grads = torch.stack(grads)
        dist.all_reduce(grads)
        return grads[dist.get_rank()]


def get_world_size() -> int:
    """The number of ranks (mmengine's), or that of :mod:`.simulated_ranks` while one
    process stands in for a larger global batch."""
    sim = simulated_ranks.active()
    return sim.world_size if sim is not None else _dist_world_size()


def gather_features(x: torch.Tensor,
                    with_grad: bool = True,
                    local_grad: bool = True) -> torch.Tensor:
    """Concatenate ``x`` (B, ...) from every rank along dim 0 in rank order.

    Each distributed choice is an explicit flag (open_clip's style):

    * ``with_grad=True``: the gather is differentiable; its backward *sums*
      the gradients that all ranks send to each rank's slice. A loss that
      every rank computes over the global batch (and that DDP then averages)
      therefore gets exactly the gradient of one process holding the whole
      batch. ``local_grad`` is irrelevant then.
    * ``with_grad=False, local_grad=True``: a plain ``all_gather``, then this
      rank's own slice is put back with its gradient (open_clip's
      ``gather_with_grad=False, local_loss=False``).
    * ``with_grad=False, local_grad=False``: a plain ``all_gather`` and
      nothing else: every slice, this rank's included, is a constant. This is
      the official RILS/SLIP ``utils.all_gather_batch``.

    Single-process (or non-distributed) runs return ``x`` unchanged, whatever
    the flags, exactly as the official code does.
    """
    sim = simulated_ranks.active()
    if sim is not None:
        return sim.gather(x, with_grad, local_grad)
    world_size = get_world_size()
    if world_size == 1:
        return x
    if with_grad:
        return torch.cat(_GatherWithGrad.apply(x), dim=0)
    chunks = [torch.empty_like(x) for _ in range(world_size)]
    dist.all_gather(chunks, x.detach().contiguous())
    if local_grad:
        chunks[get_rank()] = x
    return torch.cat(chunks, dim=0)


def local_offset(batch_size: int) -> int:
    """Index of this rank's first sample in a rank-ordered global batch."""
    return get_rank() * batch_size


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of a (non-differentiable) tensor over all ranks; identity when single-process."""
    sim = simulated_ranks.active()
    if sim is not None:
        return sim.all_reduce_sum(x)
    x = x.detach().clone()
    all_reduce(x, op='sum')  # a no-op when not distributed
    return x


def mean_value_local_grad(x: torch.Tensor) -> torch.Tensor:
    """``x`` whose *value* is the mean over ranks and whose gradient is ``x``'s own.

    A loss split into per-rank shares (that DDP's gradient average sums up)
    then logs the global value on every rank while each rank backpropagates
    only its share. Identity when single-process.
    """
    world_size = get_world_size()
    if world_size == 1:
        return x
    value = all_reduce_sum(x) / world_size
    return x + (value - x.detach())


def at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in fp32 if it is in a 16-bit float type, else unchanged (float64
    stays float64, e.g. for exactness tests): the dtype the losses compute in."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
