"""Training precision -> the optimiser wrapper that runs it (one mapping for every tool).

``tools/train.py --amp`` and ``tools/benchmark_train.py --precision`` both call
:func:`precision_optim_wrapper`, so a benchmarked step is the step training runs.
"""
import copy
from typing import Optional

#: the spellings accepted for each precision (``tools/train.py --amp`` uses dtype names)
_ALIASES = {'fp32': 'fp32', 'float32': 'fp32', 'bf16': 'bf16', 'bfloat16': 'bf16',
            'fp16': 'fp16', 'float16': 'fp16'}


def canonical_precision(precision: Optional[str]) -> Optional[str]:
    """``'fp32'``, ``'bf16'``, ``'fp16'`` (or None: keep the config's wrapper)."""
    if precision is None:
        return None
    if precision not in _ALIASES:
        raise ValueError(f'precision must be one of {sorted(_ALIASES)}, got {precision!r}')
    return _ALIASES[precision]


def autocast_dtype(precision: str):
    """The autocast dtype of a precision (None for fp32)."""
    import torch
    return {'fp32': None, 'bf16': torch.bfloat16,
            'fp16': torch.float16}[canonical_precision(precision)]


def precision_optim_wrapper(optim_cfg: dict, precision: Optional[str],
                            force_bf16_on_cpu: bool = False) -> dict:
    """A copy of the config's ``optim_wrapper`` that trains in ``precision``.

    * ``fp16``: ``FiniteStepAmpOptimWrapper`` (fp16 autocast + dynamic loss scale unless the
      config sets one; non-finite steps skipped); needs a GPU.
    * ``bf16``: ``AutocastOptimWrapper`` with bfloat16 (no scaler; CPUs too). With
      ``force_bf16_on_cpu`` a CPU without native bf16 still autocasts (a benchmark asked for
      bf16 measures bf16) instead of falling back to fp32.
    * ``fp32``: an AMP wrapper becomes its non-AMP sibling ``FiniteStepOptimWrapper``; any
      other wrapper is kept.
    * None: the config's wrapper as it is.

    The parameter groups, optimizer and other settings are the config's.
    """
    precision = canonical_precision(precision)
    cfg = copy.deepcopy(optim_cfg)
    if precision == 'fp16':
        cfg['type'] = 'FiniteStepAmpOptimWrapper'
        cfg['dtype'] = 'float16'
        cfg.setdefault('loss_scale', 'dynamic')
    elif precision == 'bf16':
        cfg['type'] = 'AutocastOptimWrapper'
        cfg['dtype'] = 'bfloat16'
        if force_bf16_on_cpu:
            cfg['cpu_without_bf16'] = 'bf16'
        cfg.pop('loss_scale', None)
    elif precision == 'fp32' and 'Amp' in cfg.get('type', ''):
        cfg['type'] = 'FiniteStepOptimWrapper'
        cfg.pop('loss_scale', None)
        cfg.pop('dtype', None)
    return cfg
