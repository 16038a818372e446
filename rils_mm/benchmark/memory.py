"""Peak memory, measured one way for every tool.

On CPU the figure is the process's resident-set high-water mark ``VmHWM`` (from
``/proc/self/status``). Not ``getrusage(RUSAGE_SELF).ru_maxrss``: Linux folds the parent's
high-water mark into it across ``fork`` + ``exec``, so a child started by a process holding
600 MiB reports at least 600 MiB however little it uses itself (tested in
``tests/test_benchmark.py``); ``VmHWM`` belongs to the child's own address space. On CUDA the
figure is ``torch.cuda.max_memory_allocated``.

Every measurement runs in a fresh process (:func:`run_json_child`), so that what one setting
allocated never counts for the next.
"""
import json
import os
import subprocess
from typing import Dict, List, Optional


def peak_rss_mib() -> float:
    """High-water mark of this process's resident set (``VmHWM``), MiB."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError('/proc/self/status has no VmHWM line: peak memory needs Linux')


def current_rss_mib() -> float:
    """This process's resident set now (``/proc/self/statm``), MiB."""
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20


def reset_peak(device: str = 'cpu') -> None:
    """Start a new CUDA peak (CPU: the high-water mark cannot be reset; measure the growth
    over :func:`current_rss_mib` instead)."""
    if str(device).startswith('cuda'):
        import torch
        torch.cuda.reset_peak_memory_stats()


def peak_memory(device: str = 'cpu') -> Dict[str, object]:
    """``{'peak_mib': ..., 'kind': ...}`` of this process so far, on ``device``."""
    if str(device).startswith('cuda'):
        import torch
        return dict(peak_mib=torch.cuda.max_memory_allocated() / 2**20,
                    kind='CUDA max allocated')
    return dict(peak_mib=peak_rss_mib(), kind='process peak RSS, VmHWM')


def run_json_child(cmd: List[str], env: Optional[dict] = None) -> dict:
    """Run ``cmd`` (a fresh Python process) and parse the JSON object on its last line of
    standard output; a failure raises with the end of its standard error."""
    run = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if run.returncode != 0:
        raise RuntimeError(f'{" ".join(cmd[:3])} ... failed (exit {run.returncode}):\n'
                           f'{run.stderr[-3000:]}')
    lines = run.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f'{" ".join(cmd[:3])} ... printed nothing; stderr:\n'
                           f'{run.stderr[-3000:]}')
    return json.loads(lines[-1])
