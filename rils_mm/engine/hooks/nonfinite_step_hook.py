"""Report skipped non-finite optimiser steps with the loss terms that caused them."""
import math
from typing import Dict, Optional

import torch
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS

__all__ = ['NonFiniteStepHook']


def _nonfinite_terms(outputs: Optional[Dict]) -> Dict[str, float]:
    """``{name: value}`` of the logged loss terms that are NaN or inf."""
    bad = {}
    for name, value in (outputs or {}).items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                value = value.float().mean()
            value = float(value.detach())
        if isinstance(value, (int, float)) and not math.isfinite(value):
            bad[name] = value
    return bad


@HOOKS.register_module()
class NonFiniteStepHook(Hook):
    """Log every skipped non-finite step with its iteration and loss terms, and
    stop the run after too many in a row.

    Works with the optimiser wrappers of :mod:`rils_mm.engine.optim_wrapper`
    (:class:`~rils_mm.engine.optim_wrapper.NonFiniteStepGuard`), which do the
    skipping. After each train iteration whose step was skipped it logs, e.g.::

        Iteration 1234: skipped the optimiser step (non-finite loss (nan));
        non-finite terms: loss=nan, loss_recon=nan; 1 consecutive, 3 in all

    stores ``train/nonfinite_steps`` in the message hub (so it is in every
    checkpoint and the final log), and raises
    :class:`~rils_mm.engine.optim_wrapper.NonFiniteStepError` after the
    wrapper's ``max_consecutive_nonfinite`` consecutive skipped steps.
    """

    priority = 'ABOVE_NORMAL'  # before checkpoints are written

    def before_train(self, runner) -> None:
        """Attach to the optimiser wrapper (warn if it cannot skip steps)."""
        wrapper = runner.optim_wrapper
        if hasattr(wrapper, 'consecutive_nonfinite'):
            wrapper.reporter_attached = True
        else:
            runner.logger.warning(
                f'NonFiniteStepHook: {type(wrapper).__name__} does not skip '
                'non-finite steps; one NaN would spoil the weights. Use '
                'FiniteStepOptimWrapper, FiniteStepAmpOptimWrapper or '
                'AutocastOptimWrapper.')

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        """Log a skipped step with its non-finite loss terms; stop on too many."""
        wrapper = runner.optim_wrapper
        if not hasattr(wrapper, 'consecutive_nonfinite'):
            return
        runner.message_hub.update_info('train/nonfinite_steps',
                                       int(wrapper.num_nonfinite_steps))
        skip = wrapper.last_skip
        if skip is None or skip.get('iter') != runner.iter:
            return
        terms = _nonfinite_terms(outputs)
        shown = ', '.join(f'{k}={v}' for k, v in terms.items()) or \
            'none of the logged terms (gradients only)'
        runner.logger.warning(
            f'Iteration {runner.iter}: skipped the optimiser step '
            f'({skip["cause"]}); non-finite terms: {shown}; '
            f'{wrapper.consecutive_nonfinite} consecutive, '
            f'{wrapper.num_nonfinite_steps} in all')
        wrapper.check_consecutive(
            f'; non-finite terms: {shown}' if terms else '')

    def after_train(self, runner) -> None:
        """Log the run's total of skipped steps."""
        wrapper = runner.optim_wrapper
        if hasattr(wrapper, 'num_nonfinite_steps'):
            runner.logger.info(f'non-finite optimiser steps skipped in this '
                               f'run: {wrapper.num_nonfinite_steps}')
