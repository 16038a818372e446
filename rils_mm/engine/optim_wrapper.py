"""Optimiser wrappers: mixed precision that also works on CPUs, and skipping of
non-finite steps.

One non-finite (NaN / inf) loss or gradient must not cost a long run: applied, it
would write NaN into every weight and AdamW moment, and the run would be lost even
though the next batch might be fine. The wrappers here therefore check every
optimiser step and *skip* a non-finite one entirely (weights, optimiser moments and
step count, and the fp16 loss scaler stay untouched), count it, and stop the run
with a clear message after ``max_consecutive_nonfinite`` consecutive skipped steps
(the last checkpoint, written before them, stays the last good one).
"""
import logging
import warnings
from contextlib import contextmanager
from typing import Dict, Optional, Union

import torch
import torch.nn as nn
from mmengine.dist import all_reduce, get_world_size
from mmengine.logging import print_log
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmpretrain.registry import OPTIM_WRAPPERS

from ..models.utils.grad_cache import active_optim_wrapper
from ..utils.cpu import cpu_has_native_bf16
from ..utils.torch_compat import total_grad_norm
from .resume import ResumeParticipant

__all__ = [
    'NonFiniteStepError', 'NonFiniteStepGuard', 'FiniteStepOptimWrapper',
    'FiniteStepAmpOptimWrapper', 'AutocastOptimWrapper'
]


class NonFiniteStepError(RuntimeError):
    """Raised after ``max_consecutive_nonfinite`` consecutive non-finite steps."""


class NonFiniteStepGuard(ResumeParticipant):
    """Mixin for :class:`mmengine.optim.OptimWrapper` subclasses that skips
    optimiser steps whose loss or gradients are not finite.

    At every optimiser step (after gradient accumulation) the wrapper checks

    * the losses given to :meth:`update_params` since the last step
      (``torch.isfinite``), and
    * the total gradient norm of all parameters (one fused norm; NaN / inf
      gradients make it non-finite).

    In distributed training the decision is all-reduced (one scalar), so all
    ranks skip together (gradients are already identical after DDP, the loss of
    each rank is not). A skipped step calls only ``zero_grad``: the weights,
    the optimiser state (moments, step count) and, for the fp16 wrapper, the
    loss scaler are untouched. With a loss scaler, gradients that overflow
    while the loss is finite are the scaler's normal business (it skips the
    step and lowers the scale); such a step is counted too, since a run whose
    every step overflows is as dead as one with NaN weights.

    Each skipped step is counted (:attr:`num_nonfinite_steps`, saved in the
    checkpoint with the optimiser state), described in :attr:`last_skip`
    (iteration, cause) and logged; :class:`~rils_mm.engine.hooks.NonFiniteStepHook`
    adds which loss term was non-finite. After ``max_consecutive_nonfinite``
    consecutive skipped steps :class:`NonFiniteStepError` stops the run.

    Args:
        max_consecutive_nonfinite (int): Consecutive skipped steps that stop the
            run. Defaults to 10.
    """

    def _init_guard(self, max_consecutive_nonfinite: int) -> None:
        if not isinstance(max_consecutive_nonfinite,
                          int) or max_consecutive_nonfinite < 1:
            raise ValueError('max_consecutive_nonfinite must be a positive '
                             f'int, got {max_consecutive_nonfinite!r}')
        self.max_consecutive_nonfinite = max_consecutive_nonfinite
        self.num_nonfinite_steps = 0
        self.consecutive_nonfinite = 0
        #: ``dict(iter, cause)`` of the last skipped step; ``None`` once a
        #: step was applied again.
        self.last_skip: Optional[Dict] = None
        #: Set by NonFiniteStepHook: it logs and raises with the loss terms.
        self.reporter_attached = False
        self._loss_finite: Optional[torch.Tensor] = None
        self._param_names: Dict[int, str] = {}

    # ------------------------------------------------------------- the check
    @contextmanager
    def optim_context(self, model: nn.Module):
        """Remember parameter names (for messages), then the parent context."""
        if not self._param_names:
            self._param_names = {
                id(p): name
                for name, p in model.named_parameters()
            }
        # grad_cache back-propagates its earlier micro-batches inside the
        # forward, through this wrapper's loss scale and accumulation (also
        # under DDP, where the model's own train_step is not called)
        with active_optim_wrapper(self), super().optim_context(model):  # type: ignore[misc]
            yield

    def update_params(self,
                      loss: torch.Tensor,
                      step_kwargs: Optional[Dict] = None,
                      zero_kwargs: Optional[Dict] = None) -> None:
        """Record whether ``loss`` is finite, then update as usual."""
        finite = torch.isfinite(loss.detach()).all()
        self._loss_finite = (
            finite if self._loss_finite is None else self._loss_finite
            & finite)
        self._loss_value = loss.detach()
        super().update_params(  # type: ignore[misc]
            loss, step_kwargs=step_kwargs, zero_kwargs=zero_kwargs)

    def _grad_norm(self) -> torch.Tensor:
        grads = [
            p.grad for group in self.optimizer.param_groups
            for p in group['params'] if p.grad is not None
        ]
        if not grads:
            return torch.zeros(())
        return total_grad_norm(grads)

    def _find_cause(self, loss_ok: bool) -> str:
        """Human-readable cause of a skipped step (slow path, only on skip)."""
        if not loss_ok:
            value = getattr(self, '_loss_value', None)
            shown = f'{float(value):.4g}' if value is not None and \
                value.numel() == 1 else 'non-finite'
            return f'non-finite loss ({shown})'
        for group in self.optimizer.param_groups:
            for p in group['params']:
                if p.grad is not None and not torch.isfinite(p.grad).all():
                    name = self._param_names.get(id(p),
                                                 f'<{tuple(p.shape)} param>')
                    return f'non-finite gradient (first: {name})'
        return 'non-finite loss or gradient on another rank'

    def _step_is_finite(self, check_grads: bool) -> bool:
        """All-reduced verdict: ``True`` if this step may be applied."""
        loss_ok = (
            self._loss_finite
            if self._loss_finite is not None else torch.tensor(True))
        flags = [loss_ok.to(torch.float32).reshape(())]
        if check_grads:
            norm = self._grad_norm()
            flags.append(torch.isfinite(norm).to(torch.float32).reshape(()))
        verdict = torch.stack([f.to(flags[0].device) for f in flags]).min()
        if get_world_size() > 1:
            all_reduce(verdict, op='min')
        ok = bool(verdict.item() > 0)
        if not ok:
            self._cause = self._find_cause(bool(loss_ok.item()))
        return ok

    def _record_skip(self, cause: str) -> None:
        it = self.message_hub.get_info('iter', None)
        self.num_nonfinite_steps += 1
        self.consecutive_nonfinite += 1
        self.last_skip = dict(iter=it, cause=cause)
        if not self.reporter_attached:
            print_log(
                f'Iteration {it}: skipped the optimiser step: {cause}; '
                f'{self.consecutive_nonfinite} consecutive, '
                f'{self.num_nonfinite_steps} in all',
                logger='current',
                level=logging.WARNING)
            self.check_consecutive()

    def check_consecutive(self, detail: str = '') -> None:
        """Raise :class:`NonFiniteStepError` after too many skipped steps."""
        if self.consecutive_nonfinite < self.max_consecutive_nonfinite:
            return
        it = (self.last_skip or {}).get('iter')
        first = (it - self.consecutive_nonfinite +
                 1) if isinstance(it, int) else '?'
        raise NonFiniteStepError(
            f'{self.consecutive_nonfinite} consecutive optimiser steps were '
            f'non-finite (iterations {first}..{it}; last: '
            f'{(self.last_skip or {}).get("cause")}{detail}), '
            f'max_consecutive_nonfinite={self.max_consecutive_nonfinite}. '
            'The weights and optimiser state were not updated by these '
            'steps, so the last checkpoint is the last good state. Lower the '
            'learning rate, check the data, or use bf16 instead of fp16, then '
            'resume from it.')

    def _finish_step(self, ok: bool, cause: Optional[str] = None) -> None:
        self._loss_finite = None
        if ok:
            self.consecutive_nonfinite = 0
            self.last_skip = None
        else:
            self._record_skip(cause or self._cause)

    # ------------------------------------------------------------ the state
    # A global participant of the resume contract (rils_mm.engine.resume): the
    # skip decision is all-reduced, so the counts are the same on every rank;
    # they ride in mmengine's ``optimizer`` checkpoint entry.
    resume_key = 'optimizer'

    def resume_state(self) -> dict:
        """The counts of skipped steps: in all, and in a row up to now (so a
        resume cannot reset the stop after K in a row)."""
        return dict(nonfinite_steps=int(self.num_nonfinite_steps),
                    consecutive_nonfinite=int(self.consecutive_nonfinite))

    def load_resume_state(self, state: dict, saved=None) -> None:
        """Put back :meth:`resume_state` (0 for checkpoints without it)."""
        self.num_nonfinite_steps = int(state.get('nonfinite_steps', 0))
        self.consecutive_nonfinite = int(state.get('consecutive_nonfinite', 0))

    def state_dict(self) -> dict:
        """Optimiser state plus :meth:`resume_state`."""
        state = super().state_dict()  # type: ignore[misc]
        state.update(self.resume_state())
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the optimiser state and the counts of skipped steps."""
        state_dict = dict(state_dict)
        self.load_resume_state(
            {k: state_dict.pop(k) for k in ('nonfinite_steps', 'consecutive_nonfinite')
             if k in state_dict})
        super().load_state_dict(state_dict)  # type: ignore[misc]


@OPTIM_WRAPPERS.register_module()
class FiniteStepOptimWrapper(NonFiniteStepGuard, OptimWrapper):
    """:class:`mmengine.optim.OptimWrapper` that skips non-finite steps.

    See :class:`NonFiniteStepGuard`.

    Args:
        max_consecutive_nonfinite (int): Consecutive skipped steps that stop
            the run. Defaults to 10.
        **kwargs: see :class:`mmengine.optim.OptimWrapper`.
    """

    def __init__(self, max_consecutive_nonfinite: int = 10, **kwargs) -> None:
        super().__init__(**kwargs)
        self._init_guard(max_consecutive_nonfinite)

    def step(self, **kwargs) -> None:
        """Apply the step only if the loss and all gradients are finite."""
        ok = self._step_is_finite(check_grads=True)
        if ok:
            super().step(**kwargs)
        self._finish_step(ok)


@OPTIM_WRAPPERS.register_module()
class FiniteStepAmpOptimWrapper(NonFiniteStepGuard, AmpOptimWrapper):
    """:class:`mmengine.optim.AmpOptimWrapper` (fp16 + loss scaler) that skips
    steps with a non-finite loss without touching the scaler, and counts the
    scaler's own overflow skips. See :class:`NonFiniteStepGuard`.

    Args:
        max_consecutive_nonfinite (int): Consecutive skipped steps that stop
            the run. Defaults to 10.
        **kwargs: see :class:`mmengine.optim.AmpOptimWrapper`.
    """

    def __init__(self, max_consecutive_nonfinite: int = 10, **kwargs) -> None:
        super().__init__(**kwargs)
        self._init_guard(max_consecutive_nonfinite)

    def step(self, **kwargs) -> None:
        """Skip on a non-finite loss; otherwise step through the scaler."""
        if not self._step_is_finite(check_grads=False):
            self._finish_step(False)
            return
        scale = float(self.loss_scaler.get_scale())
        super().step(**kwargs)
        new_scale = float(self.loss_scaler.get_scale())
        if new_scale < scale:  # the scaler found inf / NaN gradients
            self._finish_step(
                False, f'non-finite fp16 gradients (loss scale {scale:g} -> '
                f'{new_scale:g})')
        else:
            self._finish_step(True)


@OPTIM_WRAPPERS.register_module()
class AutocastOptimWrapper(FiniteStepOptimWrapper):
    """Run forward passes under ``torch.autocast`` on the model's device.

    mmengine's ``AmpOptimWrapper`` refuses to start without a GPU and always
    carries a loss scaler. bfloat16 keeps fp32's exponent range and needs no
    scaler, so this wrapper simply autocasts, on CPU (where bf16 matmuls are
    several times faster than fp32 on CPUs with AMX/AVX512-BF16) as well as
    on GPU. For fp16 on GPU, use ``FiniteStepAmpOptimWrapper`` (it has the
    scaler). Non-finite steps are skipped (:class:`NonFiniteStepGuard`).

    A CPU without native bf16 (neither AVX512-BF16 nor AMX) only emulates
    bf16: on an AVX2 AMD EPYC a bf16 matmul ran ~80x slower than fp32. There
    the wrapper warns once and, by default, runs in fp32 instead.

    Args:
        dtype (str | torch.dtype): autocast dtype. Defaults to 'bfloat16'.
        cpu_without_bf16 (str): on a CPU without native bf16, 'fp32' (warn,
            then run without autocast) or 'bf16' (warn, autocast anyway).
            Defaults to 'fp32'.
        **kwargs: see :class:`FiniteStepOptimWrapper`.
    """

    def __init__(self,
                 dtype: Union[str, torch.dtype] = 'bfloat16',
                 cpu_without_bf16: str = 'fp32',
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if cpu_without_bf16 not in ('fp32', 'bf16'):
            raise ValueError("AutocastOptimWrapper: cpu_without_bf16 must be 'fp32' or "
                             f"'bf16', got {cpu_without_bf16!r}")
        self.cpu_without_bf16 = cpu_without_bf16
        self._warned = False
        self.cast_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        if self.cast_dtype not in (torch.bfloat16, torch.float16):
            raise ValueError(f'AutocastOptimWrapper: dtype must be bfloat16 or float16, '
                             f'got {dtype!r}')

    @contextmanager
    def optim_context(self, model: nn.Module):
        device = next(model.parameters()).device.type
        enabled = True
        if (device == 'cpu' and self.cast_dtype == torch.bfloat16
                and not cpu_has_native_bf16()):
            enabled = self.cpu_without_bf16 == 'bf16'
            if not self._warned:
                self._warned = True
                warnings.warn(
                    'AutocastOptimWrapper: this CPU has no native bf16 (no AVX512-BF16, '
                    'no AMX), so bf16 autocast would be emulated and much slower than '
                    'fp32; ' + ('running in fp32 instead (set cpu_without_bf16="bf16" '
                                'to force bf16)' if not enabled else
                                'autocasting anyway (cpu_without_bf16="bf16")'),
                    stacklevel=3)
        with super().optim_context(model), torch.autocast(
                device, dtype=self.cast_dtype, enabled=enabled):
            yield
