"""What the CPU can do natively: model name, SIMD flags, native bf16.

Every speed figure of this project is recorded with :func:`cpu_summary`, and
:func:`cpu_has_native_bf16` decides whether bf16 autocast is worth running on
a CPU (see :class:`rils_mm.engine.AutocastOptimWrapper`).
"""
import platform
from functools import lru_cache
from typing import Dict, List

import torch

#: The /proc/cpuinfo flags that matter for fp32/bf16 matmul speed.
MATMUL_FLAGS = ('avx2', 'fma', 'avx512f', 'avx512_vnni', 'avx512_bf16',
                'amx_tile', 'amx_bf16')


@lru_cache(None)
def _proc_cpuinfo() -> Dict[str, str]:
    """First processor's ``model name`` and ``flags`` from /proc/cpuinfo
    (empty on systems without it)."""
    info = {}
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if ':' not in line:
                    if info:
                        break  # end of the first processor block
                    continue
                key, value = (s.strip() for s in line.split(':', 1))
                if key in ('model name', 'flags') and key not in info:
                    info[key] = value
    except OSError:
        pass
    return info


def cpu_flags() -> List[str]:
    """The subset of :data:`MATMUL_FLAGS` this CPU reports."""
    flags = set(_proc_cpuinfo().get('flags', '').split())
    return [f for f in MATMUL_FLAGS if f in flags]


def cpu_has_native_bf16() -> bool:
    """True if the CPU computes bf16 matmuls in hardware (AVX512-BF16 or
    AMX-BF16). Without either, PyTorch emulates bf16 on CPU, which is far
    slower than fp32 (measured ~80x slower for a 1024^3 matmul on an AVX2
    AMD EPYC)."""
    cpu = getattr(torch, 'cpu', None)
    checks = ('_is_avx512_bf16_supported', '_is_amx_tile_supported')
    if cpu is not None and all(hasattr(cpu, c) for c in checks):
        return any(getattr(cpu, c)() for c in checks)
    flags = cpu_flags()
    return 'avx512_bf16' in flags or 'amx_bf16' in flags


def cpu_summary() -> str:
    """One line naming the CPU, its matmul-relevant flags and the torch
    threads, e.g. ``AMD EPYC, 2 cores, flags avx2 fma (no avx512f, ...)``."""
    import os
    name = _proc_cpuinfo().get('model name') or platform.processor() or '?'
    have = cpu_flags()
    missing = [f for f in MATMUL_FLAGS if f not in have]
    capability = torch.backends.cpu.get_cpu_capability()
    return (f'{name}, {os.cpu_count()} cores, flags: {" ".join(have) or "-"}'
            f' (no {" ".join(missing) or "-"}), torch {torch.__version__} '
            f'kernels {capability}, {torch.get_num_threads()} threads, '
            f'native bf16: {"yes" if cpu_has_native_bf16() else "no"}')
