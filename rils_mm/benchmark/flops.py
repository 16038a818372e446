"""FLOP counting with :class:`torch.utils.flop_counter.FlopCounterMode`."""
from typing import Callable, Tuple


def register_cpu_attention_flops() -> None:
    """Teach FlopCounterMode the CPU flash-attention kernels that
    ``scaled_dot_product_attention`` dispatches to (uncounted by torch). Idempotent."""
    import torch
    from torch.utils import flop_counter as fc
    aten = torch.ops.aten
    if not hasattr(aten, '_scaled_dot_product_flash_attention_for_cpu'):
        return
    op = aten._scaled_dot_product_flash_attention_for_cpu
    if op in fc.flop_registry or op.default in fc.flop_registry:  # 2.4 keys overloads
        return

    @fc.register_flop_formula(
        aten._scaled_dot_product_flash_attention_for_cpu, get_raw=True)
    def _fwd(query, key, value, *args, out_val=None, **kwargs):
        return fc.sdpa_flop_count(query.shape, key.shape, value.shape)

    @fc.register_flop_formula(
        aten._scaled_dot_product_flash_attention_for_cpu_backward, get_raw=True)
    def _bwd(grad_out, query, key, value, *args, out_val=None, **kwargs):
        return fc.sdpa_backward_flop_count(grad_out.shape, query.shape,
                                           key.shape, value.shape)


def count_flops(fn: Callable, model) -> Tuple[int, int]:
    """(forward, forward + backward) FLOPs of ``fn()``, which returns a tensor (backward
    from ones, or from the scalar); ``model``'s gradients are freed afterwards."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        out = fn()
        fwd = counter.get_total_flops()
        out.backward(torch.ones_like(out))
    model.zero_grad(set_to_none=True)
    return fwd, counter.get_total_flops()
