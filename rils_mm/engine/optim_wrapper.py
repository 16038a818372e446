"""Mixed precision that also works on CPUs."""
from contextlib import contextmanager
from typing import Union

import torch
import torch.nn as nn
from mmengine.optim import OptimWrapper
from mmpretrain.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class AutocastOptimWrapper(OptimWrapper):
    """Run forward passes under ``torch.autocast`` on the model's device.

    mmengine's ``AmpOptimWrapper`` refuses to start without a GPU and always
    carries a loss scaler. bfloat16 keeps fp32's exponent range and needs no
    scaler, so this wrapper simply autocasts, on CPU (where bf16 matmuls are
    several times faster than fp32 on CPUs with AMX/AVX512-BF16) as well as
    on GPU. For fp16 on GPU, use ``AmpOptimWrapper`` (it has the scaler).

    Args:
        dtype (str | torch.dtype): autocast dtype. Defaults to 'bfloat16'.
        **kwargs: see :class:`mmengine.optim.OptimWrapper`.
    """

    def __init__(self, dtype: Union[str, torch.dtype] = 'bfloat16', **kwargs) -> None:
        super().__init__(**kwargs)
        self.cast_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        if self.cast_dtype not in (torch.bfloat16, torch.float16):
            raise ValueError(f'AutocastOptimWrapper: dtype must be bfloat16 or float16, '
                             f'got {dtype!r}')

    @contextmanager
    def optim_context(self, model: nn.Module):
        device = next(model.parameters()).device.type
        with super().optim_context(model), torch.autocast(device, dtype=self.cast_dtype):
            yield
