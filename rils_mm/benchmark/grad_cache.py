"""What ``grad_cache`` costs: peak memory, step time and FLOPs against one pass.

    python tools/benchmark_grad_cache.py --batch-size 64 --micro-batch-sizes 8 16 32 64

Each setting runs in a fresh process (so that its peak resident memory, VmHWM,
is its own): ViT-B/16 RILS (``configs/rils/rils_vitb16_l20m.py``) at the given
per-rank batch on synthetic 224 px images and 77-token captions, through
``train_step`` and the config's AdamW in the chosen precision, half of the images
in C (L_recon's share of a step at paper scale; a random network matches few).
One step counts the FLOPs (torch's formulas), then ``--steps`` steps are
timed. ``None`` is today's step (no ``grad_cache``). Ratios are to it, measured
in the same run.
"""
import argparse
import json
import subprocess
import sys
import time
from typing import List, Optional

from .memory import peak_rss_mib

CONFIG = 'configs/rils/rils_vitb16_l20m.py'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--config', default=CONFIG, help='a RILS (or CLIP) config')
    parser.add_argument('--batch-size', type=int, default=64, help='per-rank batch B')
    parser.add_argument('--micro-batch-sizes', type=int, nargs='+', default=[8, 16, 32, 64],
                        help='values of grad_cache.micro_batch_size M')
    parser.add_argument('--steps', type=int, default=2, help='timed steps per setting')
    parser.add_argument('--precision', choices=['fp32', 'bf16'], default='bf16')
    parser.add_argument('--aligned-ratio', type=float, default=0.5,
                        help='share of the images in C (forced)')
    parser.add_argument('--out', help='write the results as JSON here')
    parser.add_argument('--one', type=int, help=argparse.SUPPRESS)  # child: M, 0 = None
    return parser.parse_args(argv)


class FlopCount:
    """FLOPs of the ops run inside the block, by torch's own formulas
    (``torch.utils.flop_counter``'s registry) in a plain dispatch mode:
    ``FlopCounterMode`` also tracks modules with autograd-graph hooks, which
    ``torch.autograd.grad`` (grad_cache's first pass) does not support."""

    def __enter__(self):
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils.flop_counter import flop_registry
        counter = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                out = func(*args, **kwargs)
                formula = flop_registry.get(func._overloadpacket)
                if formula is not None:
                    counter.total += formula(*args, **kwargs, out_val=out)
                return out

        self.total = 0
        self._mode = _Mode()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc):
        self._mode.__exit__(*exc)


def measure_one(args, micro_batch_size: Optional[int]) -> dict:
    """Build, count FLOPs of one step, time ``args.steps`` steps (this process)."""
    import torch
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample

    import rils_mm  # noqa: F401
    from rils_mm.testing import fake_batch
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(args.config)
    model_cfg = cfg.model.to_dict()
    if micro_batch_size:
        model_cfg['grad_cache'] = dict(micro_batch_size=micro_batch_size)
    torch.manual_seed(0)
    model = MODELS.build(model_cfg).train()
    optim_cfg = cfg.optim_wrapper.to_dict()
    optim_cfg.pop('loss_scale', None)
    optim_cfg.update(type='AutocastOptimWrapper', dtype='bfloat16', cpu_without_bf16='bf16') \
        if args.precision == 'bf16' else optim_cfg.update(type='FiniteStepOptimWrapper')
    optim_cfg.pop('dtype', None) if args.precision == 'fp32' else None
    wrapper = build_optim_wrapper(model, optim_cfg)
    num_aligned = round(args.aligned_ratio * args.batch_size)
    if hasattr(model.head, 'aligned_images'):
        # the first images of the rank's batch are in C, whatever the split
        def aligned_images(z_image, all_text, state={'seen': 0}):
            start = state['seen'] % args.batch_size
            state['seen'] += z_image.shape[0]
            index = torch.arange(start, start + z_image.shape[0])
            return index < num_aligned
        model.head.aligned_images = aligned_images
    images, tokens, _ = fake_batch(args.batch_size, img_size=224, context_length=77,
                                   num_patches=196)
    samples = []
    for t in tokens:
        s = DataSample()
        s.set_field(t, 'text_tokens')
        samples.append(s)
    data = dict(inputs=images, data_samples=samples)
    with FlopCount() as counter:
        model.train_step(data, wrapper)
    flops = counter.total
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        model.train_step(data, wrapper)
        times.append(time.perf_counter() - start)
    return dict(micro_batch_size=micro_batch_size, step_s=min(times), steps_s=times,
                img_per_s=args.batch_size / min(times), flops=flops,
                peak_rss_mib=peak_rss_mib())


def run(argv: Optional[List[str]] = None) -> List[dict]:
    """Every setting in its own process; ratios to ``None`` (today's step)."""
    args = parse_args(argv)
    results = []
    for mb in [0] + [m for m in args.micro_batch_sizes if m != 0]:
        cmd = [sys.executable, '-m', 'rils_mm.benchmark.grad_cache', *(argv or sys.argv[1:]),
               '--one', str(mb)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(f'setting M={mb or None} failed:\n{out.stderr[-3000:]}')
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = results[0]
    for r in results:
        r['time_ratio'] = r['step_s'] / base['step_s']
        r['memory_ratio'] = r['peak_rss_mib'] / base['peak_rss_mib']
        r['flop_ratio'] = r['flops'] / base['flops']
    return results


def report(results: List[dict], batch_size: int) -> str:
    lines = [f'per-rank batch {batch_size}',
             '| micro-batch M | K | step (s) | img/s | peak RSS (MiB) | time | memory | FLOPs |',
             '|---|---|---|---|---|---|---|---|']
    for r in results:
        m = r['micro_batch_size']
        k = batch_size // m if m else 1
        lines.append(f"| {m or 'none'} | {k} | {r['step_s']:.2f} | {r['img_per_s']:.2f} | "
                     f"{r['peak_rss_mib']:.0f} | {r['time_ratio']:.2f}x | "
                     f"{r['memory_ratio']:.2f}x | {r['flop_ratio']:.3f}x |")
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    if args.one is not None:
        print(json.dumps(measure_one(args, args.one or None)))
        return
    results = run(argv)
    print(report(results, args.batch_size))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(args=vars(args), results=results), f, indent=2)


if __name__ == '__main__':
    main()
