"""RILS decodes only the correctly matched images C (``decode_aligned_only``).

L_recon (Eq. 9) sums over i in C only, so the masked view and V-Dec of every other
image have an exactly zero gradient. Skipping them must give the losses and the
gradients of decoding every image (``decode_aligned_only=False``, the unoptimised
path), for any set C, including an empty one on some ranks under DDP.
"""
import copy
import os
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

import rils_mm.models.heads.rils_head as head_mod
from rils_mm.models.utils import local_offset
from rils_mm.testing import free_port

B = 6
PATTERNS = {
    'some': [True, False, True, False, False, True],
    'none': [False] * B,
    'all': [True] * B,
}
# the global-batch loss options, under which 2 ranks equal 1 process (test_distributed)
EXACT = dict(
    contrastive_loss=dict(type='ImageTextContrastiveLoss', local_loss=False,
                          gather_with_grad=True),
    recon_loss=dict(type='LanguageSpaceReconLoss', local_loss=False))


def _force_aligned(pattern):
    """``aligned_image_mask`` returning this rank's slice of a global pattern."""
    pattern = torch.tensor(pattern)

    def aligned(img, txt):
        start = local_offset(img.shape[0])
        return pattern[start:start + img.shape[0]].clone()

    return aligned


def _tiny(decode_aligned_only, seed=0, **head):
    from mmpretrain.registry import MODELS

    import rils_mm  # noqa: F401
    from rils_mm.testing import tiny_rils_cfg
    torch.manual_seed(seed)
    cfg = tiny_rils_cfg(**head)
    cfg['decode_aligned_only'] = decode_aligned_only
    model = MODELS.build(cfg)
    model.init_weights()
    return model


def _losses_and_grads(model, batch):
    decoded = []
    handle = model.neck.register_forward_hook(
        lambda mod, args, out: decoded.append(args[0].shape[0]))
    losses = model.forward_train(*batch[:2], mask_noise=batch[2])
    handle.remove()
    model.zero_grad(set_to_none=True)
    (losses['loss_contrastive'] + losses['loss_recon']).backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    return losses, grads, decoded[0]


@pytest.mark.parametrize('which', PATTERNS)
def test_decoding_only_c_equals_decoding_every_image(monkeypatch, which):
    from rils_mm.testing import fake_batch
    monkeypatch.setattr(head_mod, 'aligned_image_mask', _force_aligned(PATTERNS[which]))
    batch = fake_batch(B, seed=3)
    fast_model = _tiny(decode_aligned_only=True)
    full_model = copy.deepcopy(fast_model)
    full_model.decode_aligned_only = False

    fast, fast_grads, fast_decoded = _losses_and_grads(fast_model, batch)
    full, full_grads, full_decoded = _losses_and_grads(full_model, batch)

    # an empty C still decodes one image (outside C): no zero-size batch on any device
    assert fast_decoded == max(1, sum(PATTERNS[which])) and full_decoded == B
    for key in ('loss_contrastive', 'loss_recon', 'recon_ce', 'aligned_ratio'):
        torch.testing.assert_close(fast[key], full[key], rtol=1e-6, atol=1e-7)
    assert (full['loss_recon'] > 0) == any(PATTERNS[which])
    # every parameter gets a gradient either way (DDP needs the same graph on all
    # ranks); the skipped images' share of it is exactly zero
    assert all(g is not None for g in fast_grads.values())
    assert all(g is not None for g in full_grads.values())
    for name, g in full_grads.items():
        torch.testing.assert_close(fast_grads[name], g, rtol=1e-5, atol=1e-7,
                                   msg=lambda m: f'{name}: {m}')
    if not any(PATTERNS[which]):
        assert fast_grads['neck.decoder_pred.weight'].abs().sum() == 0


def test_masks_do_not_depend_on_c():
    """The masking noise is drawn for all B first, so image i gets the same mask
    whichever images are in C (the random stream is that of decoding all)."""
    from rils_mm.testing import fake_batch
    images, tokens, _ = fake_batch(B, seed=3)
    masks = {}
    for flag in (True, False):
        model = _tiny(decode_aligned_only=flag)
        model.head.contrastive_and_aligned_embedded = (
            lambda zi, zt, **kw: (dict(), torch.zeros(1, 32), torch.tensor(PATTERNS['some'])))
        model.head.recon = lambda f, g, p, mask, a, m=masks, k=flag, **kw: {
            k: m.setdefault(k, mask)}
        torch.manual_seed(7)
        model.forward_train(images, tokens)
    assert torch.equal(masks[True], masks[False][torch.tensor(PATTERNS['some'])])


# ------------------------------------------------------------ DDP, C empty on rank 1
class _Step(nn.Module):
    """DDP wraps this so that the masking noise can be passed in."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, images, tokens, noise):
        losses = self.model.forward_train(images, tokens, mask_noise=noise)
        return losses['loss_contrastive'] + losses['loss_recon']


def _ddp_worker(rank, port, pattern, state, batch, out):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=2, timeout=timedelta(seconds=60))
    try:
        torch.set_num_threads(1)
        head_mod.aligned_image_mask = _force_aligned(pattern)
        model = _tiny(decode_aligned_only=True, **EXACT)
        model.load_state_dict(state)
        ddp = nn.parallel.DistributedDataParallel(_Step(model))  # find_unused=False
        sl = slice(rank * B // 2, (rank + 1) * B // 2)
        grads = []
        for _ in range(2):  # a graph that differs between ranks fails on the 2nd step
            model.zero_grad(set_to_none=True)
            ddp(*(t[sl] for t in batch)).backward()
            grads.append({n: p.grad.clone() for n, p in model.named_parameters()
                          if p.requires_grad})
        torch.save(grads, os.path.join(out, f'rank{rank}.pt'))
    finally:
        dist.destroy_process_group()


def test_ddp_with_no_aligned_image_on_one_rank_equals_one_process(tmp_path):
    from rils_mm.testing import fake_batch
    pattern = [True, False, True, False, False, False]  # rank 1 has no image in C
    model = _tiny(decode_aligned_only=False, **EXACT)
    batch = fake_batch(B, seed=3)
    mp.start_processes(_ddp_worker, nprocs=2, join=True, start_method='fork',
                       args=(free_port(), pattern, model.state_dict(), batch,
                             str(tmp_path)))
    ranks = [torch.load(tmp_path / f'rank{r}.pt') for r in (0, 1)]

    original = head_mod.aligned_image_mask
    head_mod.aligned_image_mask = _force_aligned(pattern)
    try:
        _, ref, _ = _losses_and_grads(model, batch)  # one process, decoding all
    finally:
        head_mod.aligned_image_mask = original
    assert ref['neck.decoder_pred.weight'].abs().sum() > 0
    for step in range(2):
        for name, g in ref.items():
            assert torch.equal(ranks[0][step][name], ranks[1][step][name]), name
            torch.testing.assert_close(ranks[0][step][name], g, rtol=1e-5, atol=1e-5,
                                       msg=lambda m: f'{name}: {m}')
