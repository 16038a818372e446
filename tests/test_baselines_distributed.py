"""SLIP's SimCLR loss on 2 CPU processes (gloo), batch b each, against the NT-Xent equation
on one process holding batch 2b: the mean of the ranks' losses is the global loss and the
DDP-averaged gradients are the global-batch gradients."""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from rils_mm.testing import free_port

B_PER_RANK, DIM, TAU = 3, 5, 0.1


def nt_xent_by_equation(a, b, tau):
    """For sample i of view a: positive b_i; negatives b_j and a_j for j != i; both views,
    averaged over the 2 n anchors."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    n = a.shape[0]
    total = 0.0
    for x, y in ((a, b), (b, a)):
        for i in range(n):
            pos = torch.exp(x[i] @ y[i] / tau)
            neg = sum(torch.exp(x[i] @ y[j] / tau) + torch.exp(x[i] @ x[j] / tau)
                      for j in range(n) if j != i)
            total = total - torch.log(pos / (pos + neg))
    return total / (2 * n)


def _worker(rank, world, port, data_path, out_dir):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group('gloo', rank=rank, world_size=world)
    from rils_mm.models.losses import SimCLRLoss
    x1, x2, weight = torch.load(data_path, weights_only=True)
    weight = weight.clone().requires_grad_(True)  # a parameter shared by the ranks
    sl = slice(rank * B_PER_RANK, (rank + 1) * B_PER_RANK)
    loss = SimCLRLoss(temperature=TAU)(x1[sl] @ weight, x2[sl] @ weight)
    loss.backward()
    grad = weight.grad.clone()
    dist.all_reduce(grad)  # what DDP does: average the gradients over ranks
    grad /= world
    value = loss.detach().clone()
    dist.all_reduce(value)
    if rank == 0:
        torch.save((value / world, grad), os.path.join(out_dir, 'dist.pt'))
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.slow
def test_simclr_loss_two_ranks_equal_the_global_batch(tmp_path):
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(2 * B_PER_RANK, DIM, generator=g)
    x2 = torch.randn(2 * B_PER_RANK, DIM, generator=g)
    weight = torch.randn(DIM, DIM, generator=g)
    data_path = str(tmp_path / 'data.pt')
    torch.save((x1, x2, weight), data_path)
    mp.spawn(_worker, args=(2, free_port(), data_path, str(tmp_path)), nprocs=2, join=True)
    loss, grad = torch.load(str(tmp_path / 'dist.pt'), weights_only=True)

    w = weight.clone().requires_grad_(True)
    expected = nt_xent_by_equation(x1 @ w, x2 @ w, TAU)
    expected.backward()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    torch.testing.assert_close(grad, w.grad, rtol=1e-4, atol=1e-6)
