"""Mixed-precision RILS steps through the optimiser wrappers the configs use.

* bf16: ``AutocastOptimWrapper`` (CPU and GPU) and mmengine's ``AmpOptimWrapper``
  (``dtype='bfloat16'``, GPU only: mmengine refuses it without one). The matmuls run in
  bf16, the weights stay fp32 and change, nothing is skipped.
* fp16 with the dynamic loss scaler (``FiniteStepAmpOptimWrapper``, GPU only): a step
  whose gradients hold an injected inf is skipped (weights and AdamW moments untouched),
  counted, and the scaler backs off by its factor; the next good step is applied.
"""
import copy

import pytest
import torch
from mmengine.optim import AmpOptimWrapper
from mmpretrain.registry import MODELS, OPTIM_WRAPPERS

from rils_mm.testing import fake_batch, tiny_rils_cfg

from .conftest import DEVICES


def _model(device):
    torch.manual_seed(0)
    model = MODELS.build(tiny_rils_cfg())
    model.init_weights()
    return model.to(device).train()


def _wrapper(model, **cfg):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return OPTIM_WRAPPERS.build(dict(optimizer=optimizer, **cfg))


def _step(model, wrapper, device, inject_inf=False):
    images, tokens, noise = (t.to(device) for t in fake_batch(4, num_patches=16, seed=1))
    dtypes = []
    hook = model.neck.decoder_pred.register_forward_hook(
        lambda mod, args, out: dtypes.append(out.dtype))
    handle = None
    if inject_inf:  # a finite loss whose gradient overflows
        handle = model.neck.decoder_pred.weight.register_hook(
            lambda g: torch.full_like(g, float('inf')))
    with wrapper.optim_context(model):
        losses = model.forward_train(images, tokens, mask_noise=noise)
    loss = losses['loss_contrastive'] + losses['loss_recon']
    wrapper.update_params(loss)
    hook.remove()
    if handle is not None:
        handle.remove()
    return loss, dtypes[0]


def _state(model, wrapper):
    return (copy.deepcopy(model.state_dict()),
            copy.deepcopy(wrapper.optimizer.state_dict()['state']))


def _assert_bf16_step(model, wrapper, device):
    before = copy.deepcopy(model.state_dict())
    loss, matmul_dtype = _step(model, wrapper, device)
    assert matmul_dtype == torch.bfloat16 and torch.isfinite(loss)
    after = model.state_dict()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    changed = [k for k in before if before[k].is_floating_point()
               and not torch.equal(before[k], after[k])]
    assert 'neck.decoder_pred.weight' in changed and 'backbone.cls_token' in changed
    assert wrapper.num_nonfinite_steps == 0


@pytest.mark.parametrize('device', DEVICES)
def test_bf16_step_through_autocast_optim_wrapper(device):
    model = _model(device)
    wrapper = _wrapper(model, type='AutocastOptimWrapper', dtype='bfloat16',
                       cpu_without_bf16='bf16')
    _assert_bf16_step(model, wrapper, device)


@pytest.mark.cuda
def test_bf16_step_through_mmengine_amp_optim_wrapper():
    model = _model('cuda')
    wrapper = _wrapper(model, type='FiniteStepAmpOptimWrapper', dtype='bfloat16')
    assert isinstance(wrapper, AmpOptimWrapper)
    _assert_bf16_step(model, wrapper, 'cuda')


@pytest.mark.cuda
def test_fp16_overflow_is_skipped_counted_and_backs_the_scaler_off():
    model = _model('cuda')
    wrapper = _wrapper(model, type='FiniteStepAmpOptimWrapper', dtype='float16',
                       loss_scale=dict(init_scale=2.**16, growth_interval=1000))
    scaler = wrapper.loss_scaler
    _, dtype = _step(model, wrapper, 'cuda')  # moments exist now
    assert dtype == torch.float16 and wrapper.num_nonfinite_steps == 0
    scale = scaler.get_scale()
    weights, moments = _state(model, wrapper)

    _step(model, wrapper, 'cuda', inject_inf=True)
    w2, m2 = _state(model, wrapper)
    for k, v in weights.items():
        assert torch.equal(v, w2[k]), k
    for pid, st in moments.items():
        for k, v in st.items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(m2[pid][k])), (pid, k)
    assert wrapper.num_nonfinite_steps == 1 and wrapper.consecutive_nonfinite == 1
    assert scaler.get_scale() == scale * scaler.get_backoff_factor() == scale / 2
    assert wrapper.last_skip['cause'] == (
        f'non-finite fp16 gradients (loss scale {scale:g} -> {scale / 2:g})')

    _step(model, wrapper, 'cuda')  # a good step is applied again
    assert not torch.equal(weights['neck.decoder_pred.weight'],
                           model.state_dict()['neck.decoder_pred.weight'])
    assert wrapper.consecutive_nonfinite == 0 and wrapper.num_nonfinite_steps == 1
    assert scaler.get_scale() == scale / 2
