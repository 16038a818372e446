"""2 CPU processes (gloo), batch b each, against 1 process holding batch 2b, with the
exact (global-batch) loss options.

Same weights, same masks: every rank reports the single-process loss values, and the
DDP-averaged parameter gradients equal the single-process ones.
"""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rils_mm.testing import free_port

B_PER_RANK = 4
# The exact (global-batch) options; the official defaults are checked against per-rank
# references in test_distributed_losses.py.
EXACT = dict(
    contrastive_loss=dict(type='ImageTextContrastiveLoss', local_loss=False,
                          gather_with_grad=True),
    recon_loss=dict(type='LanguageSpaceReconLoss', local_loss=False))


def _build(state_path, text_grad):
    from mmpretrain.registry import MODELS

    import rils_mm  # noqa: F401
    from rils_mm.testing import tiny_rils_cfg
    model = MODELS.build(tiny_rils_cfg(text_grad_in_recon=text_grad, **EXACT))
    model.load_state_dict(torch.load(state_path, weights_only=True))
    return model


def _step(model, images, tokens, noise, force_aligned):
    if force_aligned:
        import rils_mm.models.heads.rils_head as head_mod
        # every image counts as matched (a random tiny model matches few)
        head_mod.aligned_image_mask = lambda img, txt: torch.ones(
            img.shape[0], dtype=torch.bool)
    losses = model.forward_train(images, tokens, mask_noise=noise)
    total = losses['loss_contrastive'] + losses['loss_recon']
    model.zero_grad()
    total.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()
             if p.grad is not None}
    return {k: v.detach() for k, v in losses.items()}, grads


def _worker(rank, world, port, state_path, batch_path, out_dir, text_grad, force_aligned):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group('gloo', rank=rank, world_size=world)
    model = _build(state_path, text_grad)
    images, tokens, noise = torch.load(batch_path, weights_only=True)
    sl = slice(rank * B_PER_RANK, (rank + 1) * B_PER_RANK)
    losses, grads = _step(model, images[sl], tokens[sl], noise[sl], force_aligned)
    for g in grads.values():  # what DDP does: average gradients over ranks
        dist.all_reduce(g)
        g /= world
    gathered = {}
    for k, v in losses.items():  # every rank reports the same, global value
        vs = [torch.empty_like(v) for _ in range(world)]
        dist.all_gather(vs, v)
        gathered[k] = vs
    losses = {k: vs[0] for k, vs in gathered.items()}
    same_on_all_ranks = all(torch.equal(vs[0], vs[1]) for vs in gathered.values())
    if rank == 0:
        assert same_on_all_ranks, gathered
        torch.save((losses, grads), os.path.join(out_dir, 'dist.pt'))
    dist.barrier()  # leave together: an early exit can abort the peer's gloo pair
    dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize('text_grad,force_aligned', [(False, True), (True, True),
                                                     (False, False)])
def test_two_ranks_equal_one_process(tmp_path, text_grad, force_aligned):
    from mmpretrain.registry import MODELS

    import rils_mm  # noqa: F401
    from rils_mm.testing import fake_batch, tiny_rils_cfg

    torch.manual_seed(0)
    model = MODELS.build(tiny_rils_cfg(text_grad_in_recon=text_grad, **EXACT))
    model.init_weights()
    state_path, batch_path = tmp_path / 'state.pt', tmp_path / 'batch.pt'
    torch.save(model.state_dict(), state_path)
    batch = fake_batch(2 * B_PER_RANK, seed=1)
    torch.save(batch, batch_path)

    mp.spawn(_worker, nprocs=2, join=True,
             args=(2, free_port(), str(state_path), str(batch_path), str(tmp_path),
                   text_grad, force_aligned))
    d_losses, d_grads = torch.load(tmp_path / 'dist.pt', weights_only=True)

    import rils_mm.models.heads.rils_head as head_mod
    original = head_mod.aligned_image_mask
    try:
        s_losses, s_grads = _step(_build(str(state_path), text_grad), *batch, force_aligned)
    finally:
        head_mod.aligned_image_mask = original

    for key in ('loss_contrastive', 'loss_recon', 'recon_ce', 'aligned_ratio'):
        torch.testing.assert_close(d_losses[key], s_losses[key], rtol=1e-5, atol=1e-5)
    if force_aligned:
        assert s_losses['loss_recon'] > 0
    assert d_grads.keys() == s_grads.keys() and len(s_grads) > 10
    for name in s_grads:
        torch.testing.assert_close(d_grads[name], s_grads[name], rtol=1e-5, atol=1e-5,
                                   msg=lambda m: f'{name}: {m}')
