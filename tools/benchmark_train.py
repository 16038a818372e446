"""Measure a training step: time, images/s, peak memory, FLOPs by part, achieved FLOP/s.

    # one config
    python tools/benchmark_train.py configs/rils/rils_vitb16_l20m.py --batch-size 8
    # two configs (or two settings) alternately in one process, with ratios
    python tools/benchmark_train.py CONFIG_A --compare CONFIG_B
    # beside the official hustvl/RILS code (kept outside this repository; needs timm)
    python tools/benchmark_train.py configs/rils/rils_vitb16_l20m.py --official /path/to/RILS

What a step is: forward of the loss, ``backward()`` and one optimiser step,
each side as its own training code runs it (default): ours through the
config's ``optim_wrapper`` (built like the Runner does: its AdamW settings,
e.g. ``fused=True``, its parameter groups and wrapper; an fp16 AMP wrapper
becomes its fp32 / bf16 sibling as ``tools/train.py`` does), the official
code as SLIP's ``main.py`` (which the official RILS README credits) runs it:
``torch.optim.AdamW`` with its two weight-decay groups and torch's default
implementation for the device, ``GradScaler``, ``zero_grad`` after the step
and the logit-scale clamp. ``--plain-adamw`` gives both sides the same plain
``torch.optim.AdamW`` instead. The report names each side's optimiser. On
synthetic images and captions (``--captions laion``: token counts drawn from a
LAION-like distribution, see
:func:`rils_mm.benchmark.inputs.caption_lengths`; ``full``: every caption
77 tokens long). Timed steps of the runners alternate (A B A B ...), so slow
and fast phases of a shared machine hit both alike; every comparison is a
ratio of medians measured in that one process.

RILS decodes only the correctly matched images C (``decode_aligned_only``),
so its step costs less the fewer images are matched. A freshly initialised
model matches about 1 / B of them, which would flatter it; the benchmark
therefore fixes C to the first ``round(--aligned-ratio * B)`` images of the
batch (``RILSHead(fixed_aligned=...)``), by default all of them (the most
work, the same as decoding every image). The official code decodes every image whatever C is.

Peak memory is measured separately for each runner in a fresh subprocess that
builds the runner and runs ``--warmup`` + 1 steps: on CPU the process's
peak resident set (``VmHWM``; includes weights, gradients and the AdamW
state), on CUDA ``max_memory_allocated``.

FLOPs are counted with :class:`torch.utils.flop_counter.FlopCounterMode`
(matmuls, convolutions and attention; the CPU flash-attention kernels are
registered by :mod:`rils_mm.benchmark.flops`: torch does not count them), per image, forward and
forward + backward. For a RILS model the parts are the intact view, the
masked view, the decoder, the text tower and the losses (the stage methods
``RILS.forward_train`` is written with), each counted on its own with its
inputs detached (the sum is checked against the whole step).
Achieved FLOP/s = step FLOPs / step time, against a matmul "peak" measured on
this machine with the same dtype and threads (a 1024^3 ``torch.mm``).
Every report starts with the CPU model, its SIMD/bf16 flags and the threads.

The measuring code is :mod:`rils_mm.benchmark`; this tool parses the options.
"""
import argparse
import json
import sys

from project_env import setup_tool

setup_tool(__name__)


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description='Benchmark a training step')
    parser.add_argument('config')
    parser.add_argument('--compare', metavar='CONFIG2',
                        help='second config, timed alternately with the first')
    parser.add_argument('--official', metavar='PATH',
                        help='folder of the official RILS code (models.py, '
                        'losses.py, ...); timm must be importable')
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--iters', type=int, default=3,
                        help='timed steps per runner (alternating)')
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--precision', default='fp32',
                        choices=['fp32', 'bf16', 'fp16'])
    parser.add_argument('--captions', default='laion', choices=['laion', 'full'],
                        help='synthetic caption lengths (see '
                        'rils_mm.benchmark.inputs.caption_lengths)')
    parser.add_argument('--device', default=None,
                        help='cpu or cuda (default: cuda if available)')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch CPU threads (default: torch default)')
    parser.add_argument('--plain-adamw', action='store_true',
                        help='both sides: plain torch.optim.AdamW(lr=1e-4) on '
                        'all parameters (torch default implementation) '
                        'instead of each side\'s own optimiser setup')
    parser.add_argument('--fused-adamw', action='store_true',
                        help='with --plain-adamw: AdamW(fused=True) on both '
                        'sides (CUDA; also CPU on torch>=2.4)')
    parser.add_argument('--compile', action='store_true',
                        help='torch.compile our model(s) before timing')
    parser.add_argument('--no-memory', action='store_true',
                        help='skip the peak-memory subprocesses')
    parser.add_argument('--part-times', action='store_true',
                        help='also time each part (forward + backward on '
                        'detached inputs) and the optimiser step alone, '
                        'best of 2 alternating rounds, with GFLOP/s per part')
    parser.add_argument('--aligned-ratio', type=float, default=1.0,
                        help='for RILS: the fraction of each batch counted as '
                        'correctly matched (the set C of Eq. 9, whose images '
                        'alone are decoded): the first round(ratio * B) '
                        'images. Default 1.0, the most work (every image '
                        'decoded); a random model would match about 1 / B')
    parser.add_argument('--global-batch', type=int, default=None, metavar='G',
                        help='simulate the global batch G (a multiple of --batch-size): '
                        'every runner contrasts and reconstructs against G gathered '
                        'embeddings, the G - B of the other ranks fixed '
                        '(rils_mm.benchmark.global_batch); default: B, one process')
    parser.add_argument('--no-flops', action='store_true',
                        help='skip FLOP counting')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='overrides applied to our config(s)')
    parser.add_argument('--compare-cfg-options', nargs='+', action=DictAction,
                        help='overrides applied to --compare only (default: '
                        'those of --cfg-options)')
    parser.add_argument('--memory-curve', type=int, nargs='+', metavar='B',
                        help='only measure peak memory, at these batch sizes '
                        '(one fresh process per runner and batch size)')
    parser.add_argument('--json', help='also write the results here')
    parser.add_argument('--memory-of', help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.fused_adamw and not args.plain_adamw:
        raise SystemExit('--fused-adamw only applies with --plain-adamw (by '
                         'default each side uses its own optimiser setup)')
    import torch

    from rils_mm.benchmark import report as rep
    from rils_mm.benchmark import train_step as ts
    from rils_mm.benchmark.precision import autocast_dtype
    from rils_mm.benchmark.timing import machine_summary, matmul_peak
    ts.setup(args)
    specs = ts.runner_specs(args)
    if args.memory_of is not None:
        print(json.dumps(ts.measure_memory(specs[int(args.memory_of)], args)))
        return
    print(machine_summary(args.device))
    if args.memory_curve:
        memory_curve(specs, args, argv)
        return

    runners = [ts.build_runner(spec, args) for spec in specs]
    peak = matmul_peak(args.device, autocast_dtype(args.precision))
    print(rep.header(runners, args, peak, torch.get_num_threads()))
    results, peak = ts.time_runners(runners, args, peak)
    del runners
    if not args.no_memory:
        for i, res in enumerate(results):
            res['memory'] = ts.memory_in_subprocess(__file__, i, argv)
    print(rep.report(results, args, peak))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(cpu=machine_summary(args.device), matmul_peak=peak,
                           args=vars(args), results=results), f, indent=1, default=str)


def memory_curve(specs, args, argv):
    """Peak memory of each runner at each batch size, plus a linear fit
    ``peak = a + b * batch`` and the batch size that fit puts at 24 GiB."""
    from rils_mm.benchmark.report import memory_curve_table
    from rils_mm.benchmark.train_step import memory_fit, memory_in_subprocess, spec_label
    print(f'peak memory (MiB) vs batch size, {args.precision}, captions '
          f'{args.captions}, {args.warmup} warm-up + 1 step per process')
    rows = {}
    for i, spec in enumerate(specs):
        label = spec_label(spec)
        rows[label] = []
        for b in args.memory_curve:
            try:
                mem = memory_in_subprocess(__file__, i, argv + ['--batch-size', str(b)])
            except RuntimeError as err:  # e.g. killed out of memory: the point, not the curve
                rows[label].append(None)
                print(f'  {label:<40} batch {b:>4}: failed, {str(err).splitlines()[0]}',
                      flush=True)
                continue
            rows[label].append(mem['peak_mib'])
            print(f'  {label:<40} batch {b:>4}: {mem["peak_mib"]:>9.0f} MiB '
                  f'({mem["kind"]}; {mem.get("optimizer", "?")})', flush=True)
    print(memory_curve_table(rows, args.memory_curve, memory_fit))


if __name__ == '__main__':
    main()
