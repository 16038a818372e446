"""Timing, FLOPs and peak memory of training-step runners (``tools/benchmark_train.py``).

Timed steps of several runners alternate (A B A B ...), so that slow and fast phases of a
shared machine hit all alike; every comparison is a ratio of medians from one process.
Peak memory is measured per runner in a fresh process (:mod:`.memory`).
"""
import logging
import os.path as osp
import statistics
import sys
import time
import warnings

from .flops import count_flops, register_cpu_attention_flops
from .memory import current_rss_mib, peak_memory, reset_peak, run_json_child
from .precision import autocast_dtype
from .timing import matmul_peak, sync


def setup(args) -> None:
    """Quiet mmengine's init tables, set the threads and the device (cuda when there is
    one), warn about emulated bf16, teach the FLOP counter CPU flash attention."""
    import torch
    from mmengine.logging import MMLogger
    MMLogger.get_instance('mmengine').setLevel(logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    if args.device == 'cpu' and args.precision == 'bf16':
        from rils_mm.utils.cpu import cpu_has_native_bf16
        if not cpu_has_native_bf16():
            warnings.warn('this CPU has no native bf16 (no AVX512-BF16/AMX): '
                          'bf16 autocast is emulated and far slower than fp32; '
                          'bf16 timings taken here say nothing about bf16 '
                          'hardware', stacklevel=2)
    register_cpu_attention_flops()


def runner_specs(args):
    """[('ours', (config, cfg_options, label)) | ('official', path)] in timing order."""
    specs = [('ours', (args.config, args.cfg_options, None))]
    if args.compare:
        label = None
        if osp.abspath(args.compare) == osp.abspath(args.config):
            label = osp.splitext(osp.basename(args.compare))[0] + ' (B)'
        specs.append(('ours', (args.compare, args.compare_cfg_options
                               if args.compare_cfg_options is not None
                               else args.cfg_options, label)))
    if args.official:
        specs.append(('official', args.official))
    return specs


def spec_label(spec) -> str:
    if spec[0] == 'official':
        return 'official'
    return spec[1][2] or osp.splitext(osp.basename(spec[1][0]))[0]


def build_runner(spec, args):
    from .official import OfficialRunner
    from .runners import OursRunner
    kind, value = spec
    if kind == 'official':
        return OfficialRunner(value, args)
    config, options, label = value
    return OursRunner(config, args, options, label)


def part_flops(runner):
    """{part: (forward FLOPs, forward+backward FLOPs)} of the batch (None: no parts)."""
    fns = runner.part_fns()
    if fns is None:
        return None
    return {name: count_flops(fn, runner.model) for name, fn in fns.items()}


def whole_step_flops(runner):
    """(forward, forward+backward) FLOPs of the runner's whole loss."""
    return count_flops(runner.loss, runner.model)


def part_times(runner, device):
    """{part: seconds of forward + backward}, each part on its own with
    detached inputs like :func:`part_flops`, plus the optimiser step alone
    (on the gradients of a whole backward)."""
    import torch
    fns = runner.part_fns()
    times = {}
    for name, fn in (fns or {}).items():
        sync(device)
        start = time.perf_counter()
        out = fn()
        out.backward(torch.ones_like(out))
        sync(device)
        times[name] = time.perf_counter() - start
    runner.model.zero_grad(set_to_none=True)
    runner.loss().backward()
    sync(device)
    start = time.perf_counter()
    runner.optimizer_step()
    sync(device)
    times['optimizer step'] = time.perf_counter() - start
    return times


def measure_memory(spec, args) -> dict:
    """Peak memory (MiB) of building one runner and running warmup + 1 steps, in this
    process (call it in a fresh one: :func:`memory_in_subprocess`)."""
    runner = build_runner(spec, args)
    reset_peak(args.device)
    rss_built = current_rss_mib()
    for _ in range(args.warmup + 1):
        runner.step()
    sync(args.device)
    mem = peak_memory(args.device)
    if not args.device.startswith('cuda'):
        mem.update(after_build_mib=rss_built, optimizer=runner.optim_desc)
    return mem


def memory_in_subprocess(script, index, argv) -> dict:
    """:func:`measure_memory` of runner ``index`` in a fresh ``script ARGV --memory-of
    INDEX`` process."""
    return run_json_child([sys.executable, osp.abspath(script), *argv,
                           '--memory-of', str(index)])


def time_runners(runners, args, peak):
    """FLOPs, alternating step times (and part times) of ``runners``: (results, matmul
    peak in GFLOP/s: the better of ``peak``, probed before, and a probe after the steps)."""
    dtype = autocast_dtype(args.precision)
    results = []
    for r in runners:
        res = dict(label=r.label, params_m=r.params_m(), optimizer=r.optim_desc)
        if not args.no_flops:
            res['parts'] = part_flops(r)
            res['step_flops'] = whole_step_flops(r)
        results.append(res)
    for _ in range(args.warmup):
        for r in runners:
            r.step()
    times = [[] for _ in runners]
    for _ in range(args.iters):
        for r, t in zip(runners, times):
            sync(args.device)
            start = time.perf_counter()
            r.step()
            sync(args.device)
            t.append(time.perf_counter() - start)
    if args.part_times:
        rounds = [[part_times(r, args.device) for r in runners] for _ in range(2)]
        for i, res in enumerate(results):
            res['part_times_s'] = {k: min(rd[i][k] for rd in rounds) for k in rounds[0][i]}
    # on a shared machine a single probe can land in a busy moment: take the
    # better of the probes before and after the timed steps
    peak = max(peak, matmul_peak(args.device, dtype))
    for res, t in zip(results, times):
        res['times_s'] = t
        res['step_s'] = statistics.median(t)
        res['img_s'] = args.batch_size / res['step_s']
        if 'step_flops' in res:
            res['achieved_gflops'] = res['step_flops'][1] / res['step_s'] / 1e9
            res['of_peak'] = res['achieved_gflops'] / peak
    return results, peak


def memory_fit(batch_sizes, peaks, budget_mib: float = 24 * 1024):
    """(MiB per image, batch size at ``budget_mib``) of the line ``peak = a + b * batch``
    through the measurements (inf when the peak does not grow: a slope under 1e-6 MiB
    per image is the fit's rounding of a flat line)."""
    import numpy as np
    slope, icpt = np.polyfit(batch_sizes, peaks, 1)
    return slope, (budget_mib - icpt) / slope if slope > 1e-6 else float('inf')
