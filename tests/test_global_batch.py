"""``--global-batch``: one process as rank 0 of a larger global batch
(:mod:`rils_mm.models.utils.simulated_ranks`, :mod:`rils_mm.benchmark.global_batch`).

Against a real 2-rank gloo run (official flags, float64): when the simulated other rank's
embeddings are those rank 1 computes, rank 0's gradients are the real rank 0's, and the
mean of the two ranks' simulated losses (each rank first in its own simulation: the
losses do not depend on the order of the gathered columns) is what the real run logs.
"""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rils_mm.testing import fake_batch, free_port, tiny_rils_cfg

B = 4
KEYS = ('loss_contrastive', 'loss_recon', 'recon_ce', 'aligned_ratio')


def _cfg(normalizer_local):
    # |C| fixed to 3 of 4 images on every rank, so that the all-reduced counts (|C|,
    # the global normaliser) of the other rank are rank 0's, as the simulation assumes
    return tiny_rils_cfg(fixed_aligned=3, recon_loss=dict(type='LanguageSpaceReconLoss',
                                                          local_loss=normalizer_local))


def _build(state_path, normalizer_local):
    from mmpretrain.registry import MODELS

    import rils_mm  # noqa: F401
    model = MODELS.build(_cfg(normalizer_local)).double()
    model.load_state_dict(torch.load(state_path, weights_only=True))
    return model


def _step(model, images, tokens, noise):
    losses = model.forward_train(images, tokens, mask_noise=noise)
    model.zero_grad()
    (losses['loss_contrastive'] + losses['loss_recon']).backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()
             if p.grad is not None}
    return {k: losses[k].detach() for k in KEYS}, grads


def _batch(rank):
    images, tokens, noise = fake_batch(B, seed=10 + rank)
    return images.double(), tokens, noise


def _worker(rank, world, port, state_path, out_dir, normalizer_local):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group('gloo', rank=rank, world_size=world)
    model = _build(state_path, normalizer_local)
    images, tokens, noise = _batch(rank)
    losses, grads = _step(model, images, tokens, noise)  # rank's own gradients, no DDP
    with torch.no_grad():
        embeds = (model.encode_image(images), model.encode_text(tokens))
    torch.save((losses, grads, embeds), os.path.join(out_dir, f'rank{rank}.pt'))
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize('normalizer_local', [True, False])
def test_simulated_other_rank_is_a_real_one(tmp_path, normalizer_local):
    from mmpretrain.registry import MODELS

    import rils_mm  # noqa: F401
    from rils_mm.models.utils.simulated_ranks import simulated_ranks
    torch.manual_seed(0)
    model = MODELS.build(_cfg(normalizer_local))
    model.init_weights()
    state_path = tmp_path / 'state.pt'
    torch.save(model.double().state_dict(), state_path)
    mp.spawn(_worker, nprocs=2, join=True,
             args=(2, free_port(), str(state_path), str(tmp_path), normalizer_local))
    real = [torch.load(tmp_path / f'rank{r}.pt', weights_only=True) for r in (0, 1)]

    simulated = []
    for rank in (0, 1):
        other = real[1 - rank][2]
        with simulated_ranks(2, list(other)) as sim:
            simulated.append(_step(_build(str(state_path), normalizer_local), *_batch(rank)))
        assert sim.calls == 2  # z^I, then z^T
    # gradients: rank 0's own share, exactly
    assert real[0][1].keys() == simulated[0][1].keys() and len(simulated[0][1]) > 10
    for name, grad in real[0][1].items():
        torch.testing.assert_close(simulated[0][1][name], grad, rtol=1e-10, atol=1e-12,
                                   msg=name)
    # losses: the real run logs the mean over ranks on every rank
    for key in KEYS:
        mean = (simulated[0][0][key] + simulated[1][0][key]) / 2
        torch.testing.assert_close(mean, real[0][0][key], rtol=1e-10, atol=1e-12, msg=key)
    assert simulated[0][0]['loss_recon'] > 0
    # and the simulation is not a no-op: one process alone gives other values
    alone, _ = _step(_build(str(state_path), normalizer_local), *_batch(0))
    assert not torch.allclose(alone['loss_contrastive'], simulated[0][0]['loss_contrastive'])


def test_one_simulated_rank_is_todays_step():
    """world size 1 (no other rank): the same losses and gradients, bit for bit."""
    from mmpretrain.registry import MODELS

    import rils_mm  # noqa: F401
    from rils_mm.models.utils.simulated_ranks import simulated_ranks
    torch.manual_seed(0)
    model = MODELS.build(tiny_rils_cfg()).double()
    model.init_weights()
    batch = _batch(0)
    plain = _step(model, *batch)
    empty = torch.zeros(0, 32, dtype=torch.float64)
    with simulated_ranks(1, [empty, empty]):
        sim = _step(model, *batch)
    for key in KEYS:
        assert torch.equal(plain[0][key], sim[0][key]), key
    for name, grad in plain[1].items():
        assert torch.equal(grad, sim[1][name]), name


def test_other_ranks_are_fixed_unit_norm_and_checked():
    from rils_mm.benchmark.global_batch import other_ranks, ours_context
    from rils_mm.models.utils.simulated_ranks import simulated_ranks
    world, others = other_ranks(64, 16, 8)
    assert world == 4 and [tuple(o.shape) for o in others] == [(48, 8), (48, 8)]
    torch.testing.assert_close(others[0].norm(dim=-1), torch.ones(48))
    assert torch.equal(other_ranks(64, 16, 8)[1][1], others[1])  # drawn once, seeded
    assert not torch.equal(others[0], others[1])
    with pytest.raises(ValueError, match='multiple of --batch-size'):
        other_ranks(40, 16, 8)
    with simulated_ranks(4, others) as sim:
        x = torch.randn(16, 8, requires_grad=True)
        out = sim.gather(x, with_grad=False, local_grad=False)
        assert out.shape == (64, 8) and torch.equal(out[16:], others[0])
        assert not out.requires_grad  # the official all_gather: every slice a constant
        assert sim.gather(x, with_grad=False, local_grad=True).requires_grad
        with pytest.raises(ValueError, match=r'is \(48, 8\), expected \(36, 8\)'):
            sim.gather(torch.randn(12, 8), with_grad=False, local_grad=False)
        with pytest.raises(RuntimeError, match='already active'):
            with simulated_ranks(2, others):
                pass
        from rils_mm.models.utils import all_reduce_sum, get_world_size
        assert get_world_size() == 4
        assert float(all_reduce_sum(torch.tensor(3.0))) == 12.0
    from rils_mm.models.utils import get_world_size
    assert get_world_size() == 1
    with ours_context(16, 16, 8, 'cpu')():  # G = B: nothing changes
        assert get_world_size() == 1
