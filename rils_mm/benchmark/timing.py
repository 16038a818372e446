"""Clocks and the machine: synchronised timing, a matmul peak, the machine line."""
import time


def sync(device) -> None:
    """Wait for queued device work (CUDA), so that a clock read means what it says."""
    import torch
    if str(device).startswith('cuda'):
        torch.cuda.synchronize()


def matmul_peak(device, dtype=None, n: int = 1024, seconds: float = 1.0) -> float:
    """GFLOP/s of a square ``n``-matmul in ``dtype`` (default fp32), best of 3."""
    import torch
    dtype = dtype or torch.float32
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    best = 0.
    for _ in range(3):
        a @ b
        sync(device)
        t, k = time.perf_counter(), 0
        while time.perf_counter() - t < seconds / 3 or k == 0:
            a @ b
            k += 1
        sync(device)
        best = max(best, 2 * n**3 * k / (time.perf_counter() - t) / 1e9)
    return best


def machine_summary(device) -> str:
    """``CPU: <model, SIMD/bf16 flags, threads>`` (and ``GPU: <name>`` on CUDA)."""
    import torch

    from rils_mm.utils.cpu import cpu_summary
    line = f'CPU: {cpu_summary()}'
    if str(device).startswith('cuda'):
        line += f'\nGPU: {torch.cuda.get_device_name()}'
    return line
