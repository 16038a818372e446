"""The optimisers of a benchmarked step: the config's wrapper, SLIP's AdamW, plain AdamW."""
from .precision import precision_optim_wrapper


def build_config_optim_wrapper(model, optim_cfg, precision: str):
    """The config's optimiser wrapper, as the Runner builds it, in ``precision``
    (:func:`precision_optim_wrapper`, the mapping ``tools/train.py --amp`` uses; a
    benchmark asked for bf16 measures bf16 even on a CPU without native bf16)."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    init_default_scope('mmpretrain')
    return build_optim_wrapper(
        model, precision_optim_wrapper(optim_cfg, precision, force_bf16_on_cpu=True))


def slip_adamw(model):
    """The optimiser of SLIP's ``main.py`` (the official RILS code's training
    script is not released; its README credits SLIP) with the paper's
    settings: no weight decay where ``p.ndim < 2`` or the name has 'bias',
    'ln' or 'bn'; ``torch.optim.AdamW`` with torch's default implementation."""
    import torch
    p_wd, p_non_wd = [], []
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or 'bias' in n or 'ln' in n or 'bn' in n:
            p_non_wd.append(p)
        else:
            p_wd.append(p)
    return torch.optim.AdamW(
        [{'params': p_wd, 'weight_decay': 0.5},
         {'params': p_non_wd, 'weight_decay': 0.}],
        lr=5e-4, betas=(0.9, 0.98), eps=1e-8, weight_decay=0.5)


def adamw_implementation(optim) -> str:
    """'fused', 'foreach' or 'for-loop': what ``AdamW.step`` will run."""
    from torch.optim.optimizer import _default_to_fused_or_foreach
    group = optim.param_groups[0]
    if group.get('fused'):
        return 'fused'
    if group.get('foreach') is not None:
        return 'foreach' if group['foreach'] else 'for-loop'
    params = [p for g in optim.param_groups for p in g['params']]
    _, foreach = _default_to_fused_or_foreach(params, False, False)
    return 'foreach' if foreach else 'for-loop'


def describe_plain_adamw(optim) -> str:
    return (f'torch.optim.{type(optim).__name__} '
            f'({adamw_implementation(optim)}, '
            f'{len(optim.param_groups)} param group(s))')


def describe_optim_wrapper(wrapper) -> str:
    return (f'config optim_wrapper: {type(wrapper).__name__} + '
            + describe_plain_adamw(wrapper.optimizer)
            + ', zero_grad after the step')


def plain_adamw(runner, params, fused: bool, precision: str) -> None:
    """Give ``runner`` the ``--plain-adamw`` optimiser: ``AdamW(lr=1e-4)`` on
    ``params`` (fused if asked), a GradScaler for fp16."""
    import torch
    runner.optim = torch.optim.AdamW(params, lr=1e-4, fused=fused or None)
    runner.scaler = (torch.amp.GradScaler(runner.device)
                     if precision == 'fp16' else None)


def plain_step(runner) -> None:
    """The ``--plain-adamw`` step: autocast forward, zero_grad, backward
    (through a GradScaler for fp16), ``AdamW.step``, logit-scale clamp."""
    import torch
    with torch.autocast(runner.device, dtype=runner.dtype,
                        enabled=runner.dtype is not None):
        loss = runner.loss()
    runner.optim.zero_grad(set_to_none=True)
    if runner.scaler is not None:
        runner.scaler.scale(loss).backward()
        runner.scaler.step(runner.optim)
        runner.scaler.update()
    else:
        loss.backward()
        runner.optim.step()
    runner.clamp_logit_scale()
