"""Mixed precision that also works on CPUs."""
import warnings
from contextlib import contextmanager
from typing import Union

import torch
import torch.nn as nn
from mmengine.optim import OptimWrapper
from mmpretrain.registry import OPTIM_WRAPPERS

from ..utils.cpu import cpu_has_native_bf16


@OPTIM_WRAPPERS.register_module()
class AutocastOptimWrapper(OptimWrapper):
    """Run forward passes under ``torch.autocast`` on the model's device.

    mmengine's ``AmpOptimWrapper`` refuses to start without a GPU and always
    carries a loss scaler. bfloat16 keeps fp32's exponent range and needs no
    scaler, so this wrapper simply autocasts, on CPU (where bf16 matmuls are
    several times faster than fp32 on CPUs with AMX/AVX512-BF16) as well as
    on GPU. For fp16 on GPU, use ``AmpOptimWrapper`` (it has the scaler).

    A CPU without native bf16 (neither AVX512-BF16 nor AMX) only emulates
    bf16: on an AVX2 AMD EPYC a bf16 matmul ran ~80x slower than fp32. There
    the wrapper warns once and, by default, runs in fp32 instead.

    Args:
        dtype (str | torch.dtype): autocast dtype. Defaults to 'bfloat16'.
        cpu_without_bf16 (str): on a CPU without native bf16, 'fp32' (warn,
            then run without autocast) or 'bf16' (warn, autocast anyway).
            Defaults to 'fp32'.
        **kwargs: see :class:`mmengine.optim.OptimWrapper`.
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
