"""In bf16, attention runs through a fused SDPA kernel, and decoding only the
correctly matched images C equals decoding every image (on the CPU and on a GPU).

The kernel is read from the profiler's op events (the aten op that
``scaled_dot_product_attention`` dispatched to), not inferred from the output; and on a
GPU the model also runs with SDPA restricted to the flash / memory-efficient kernels
(torch raises when no allowed kernel takes the call).
"""
import copy

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

import rils_mm.models.heads.rils_head as head_mod
from rils_mm.testing import fake_batch, tiny_rils_cfg

from .conftest import DEVICES

FUSED = {
    'aten::_scaled_dot_product_flash_attention',
    'aten::_scaled_dot_product_efficient_attention',
    'aten::_scaled_dot_product_cudnn_attention',
    'aten::_scaled_dot_product_flash_attention_for_cpu',
}
MATH = 'aten::_scaled_dot_product_attention_math'


def _model(device, decode_aligned_only=True, seed=0):
    from mmpretrain.registry import MODELS
    torch.manual_seed(seed)
    # head width 32 = 2 heads of 16: a head size every fused kernel takes
    cfg = tiny_rils_cfg()
    cfg['decode_aligned_only'] = decode_aligned_only
    model = MODELS.build(cfg)
    model.init_weights()
    return model.to(device).train()


def _batch(device, n=4, seed=3):
    return [t.to(device) for t in fake_batch(n, num_patches=16, seed=seed)]


def _attention_ops(model, batch, device):
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        with torch.autocast(device, dtype=torch.bfloat16):
            losses = model.forward_train(batch[0], batch[1], mask_noise=batch[2])
        (losses['loss_contrastive'] + losses['loss_recon']).backward()
    return {e.key: e.count for e in prof.key_averages()}


@pytest.mark.parametrize('device', DEVICES)
def test_bf16_attention_runs_a_fused_kernel(device):
    model, batch = _model(device), _batch(device)
    ops = _attention_ops(model, batch, device)
    calls = ops.get('aten::scaled_dot_product_attention', 0)
    fused = {k: n for k, n in ops.items() if k in FUSED}
    # intact + masked view (2 blocks each), decoder, text tower (2 blocks)
    assert calls >= 6, ops
    assert MATH not in ops, f'the math (unfused) SDPA ran: {fused}'
    assert sum(fused.values()) == calls, (fused, calls)
    if device == 'cuda':
        from torch.nn.attention import SDPBackend, sdpa_kernel
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]):
            with torch.autocast(device, dtype=torch.bfloat16):
                losses = model.forward_train(batch[0], batch[1], mask_noise=batch[2])
            (losses['loss_contrastive'] + losses['loss_recon']).backward()
        assert torch.isfinite(losses['loss_recon'])


@pytest.mark.parametrize('device', DEVICES)
def test_bf16_decoding_only_c_equals_decoding_every_image(device, monkeypatch):
    pattern = torch.tensor([True, False, True, False, False, True])
    monkeypatch.setattr(head_mod, 'aligned_image_mask',
                        lambda img, txt: pattern.to(img.device).clone())
    fast = _model(device, decode_aligned_only=True)
    full = copy.deepcopy(fast)
    full.decode_aligned_only = False
    batch = _batch(device, n=6)
    out = {}
    for name, model in (('fast', fast), ('full', full)):
        with torch.autocast(device, dtype=torch.bfloat16):
            losses = model.forward_train(batch[0], batch[1], mask_noise=batch[2])
        (losses['loss_contrastive'] + losses['loss_recon']).backward()
        out[name] = (losses, {n: p.grad.float() for n, p in model.named_parameters()
                              if p.grad is not None})
    (lf, gf), (lu, gu) = out['fast'], out['full']
    assert lf['loss_recon'] > 0 and gf.keys() == gu.keys()
    # bf16 has 8 bits of mantissa: the two paths batch different rows through the
    # same matmuls, so they agree to bf16 rounding, not bitwise
    for key in ('loss_contrastive', 'loss_recon'):
        torch.testing.assert_close(lf[key].float(), lu[key].float(), rtol=2e-2, atol=2e-2)
    for name, g in gu.items():
        scale = g.abs().max().clamp(min=1e-6)
        assert (gf[name] - g).abs().max() <= 5e-2 * scale, name
