"""The device check's benchmark: one JSON of the figures a GPU run of RILS depends on.

    python -m rils_mm.benchmark.device --out-dir work_dirs/device_check [--official PATH]
    python -m rils_mm.benchmark.device --device cpu --tiny --out-dir /tmp/dry   # dry run

On one process, alternating step by step (so slow and fast phases hit all alike):

* ours: RILS ViT-B/16 (``configs/rils/rils_vitb16_l20m.py``) eager and under
  ``torch.compile``, and our CLIP (``configs/clip/clip_vitb16_l20m.py``);
* the official hustvl/RILS ``RILS_VITB16`` + ``RILSLoss`` + AdamW (``--official PATH``,
  a checkout kept outside this repository; needs timm);

each at per-GPU batch 128 in bf16 on synthetic images and LAION-like captions, through
the step ``tools/benchmark_train.py`` times (the config's optimiser wrapper; the official
code as SLIP's ``main.py``): step time, img/s, FLOPs (``FlopCounterMode``), achieved
TFLOP/s and MFU against a bf16 matmul measured in the same run, and peak CUDA memory
(``max_memory_allocated`` of each runner in a fresh process). Then the WebDataset
reader's images/s with one loader worker on LAION-like JPEG shards (the toy corpus
written at ``--wds-image-size`` px), and the workers one GPU needs at our measured rate.

``--tiny`` swaps in the toy configs shrunk to 32 px / width 64 (and batch 4), for a dry run
of the whole path on a CPU in seconds.
"""
import argparse
import json
import math
import os
import os.path as osp
import statistics
import sys
import tempfile
import time
from types import SimpleNamespace

from . import timing, train_step
from .precision import autocast_dtype

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# the entry point whose --memory-of INDEX measures one runner in a fresh process
BENCHMARK_TOOL = osp.join(ROOT, 'tools', 'benchmark_train.py')
CONFIGS = {
    'rils': 'configs/rils/rils_vitb16_l20m.py',
    'clip': 'configs/clip/clip_vitb16_l20m.py',
}
TINY_CONFIGS = {
    'rils': 'configs/rils/rils_vittiny_toy.py',
    'clip': 'configs/clip/clip_vittiny_toy.py',
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='GPU device-check benchmark')
    p.add_argument('--device', default='cuda')
    p.add_argument('--tiny', action='store_true', help='toy models, batch 4 (dry run)')
    p.add_argument('--batch-size', type=int, default=None, help='default 128 (4 --tiny)')
    p.add_argument('--iters', type=int, default=None, help='timed steps (default 10, 2 --tiny)')
    p.add_argument('--warmup', type=int, default=None, help='default 3 (1 --tiny)')
    p.add_argument('--official', metavar='PATH', help='official hustvl/RILS checkout')
    p.add_argument('--no-compile', action='store_true', help='skip the torch.compile runner')
    p.add_argument('--wds-image-size', type=int, default=None,
                   help='side of the LAION-like JPEGs (default 384, 64 --tiny)')
    p.add_argument('--wds-samples', type=int, default=None,
                   help='images read per loader measurement (default 1024, 64 --tiny)')
    p.add_argument('--out-dir', required=True, help='device_check.json goes here')
    args = p.parse_args(argv)
    tiny = args.tiny
    for key, full, small in (('batch_size', 128, 4), ('iters', 10, 2), ('warmup', 3, 1),
                             ('wds_image_size', 384, 64), ('wds_samples', 1024, 64)):
        if getattr(args, key) is None:
            setattr(args, key, small if tiny else full)
    return args


def _tiny_config(name, out_dir):
    """The toy config of ``name`` shrunk to 32 px / width 64 / 2 blocks, as a file."""
    from mmengine.config import Config

    from rils_mm.testing import shrink_toy_model
    cfg = Config.fromfile(osp.join(ROOT, TINY_CONFIGS[name]))
    has_neck = cfg.model.get('neck') is not None
    if not has_neck:
        cfg.model.neck = dict()  # shrink_toy_model updates it; dropped again below
    shrink_toy_model(cfg.model)
    if not has_neck:
        cfg.model.pop('neck')
    path = osp.join(out_dir, f'tiny_{name}.py')
    cfg.dump(path)
    return path


def _step_args(args, compile_=False):
    return SimpleNamespace(device=args.device, batch_size=args.batch_size, captions='laion',
                           aligned_ratio=1.0, precision='bf16', plain_adamw=False,
                           fused_adamw=False, compile=compile_)


def _specs(args, configs):
    specs = [('ours', (configs['rils'], None, 'ours RILS (eager)'), False)]
    if not args.no_compile:
        specs.append(('ours', (configs['rils'], None, 'ours RILS (torch.compile)'), True))
    specs.append(('ours', (configs['clip'], None, 'ours CLIP (eager)'), False))
    if args.official:
        specs.append(('official', args.official, False))
    return specs


def _memory(args, spec, compile_):
    """Peak memory of one runner in a fresh process (benchmark_train's --memory-of)."""
    kind, value, _ = spec
    argv = ([value[0]] if kind == 'ours' else [CONFIGS['rils'], '--official', value])
    argv += ['--batch-size', str(args.batch_size), '--precision', 'bf16', '--device',
             args.device, '--warmup', str(args.warmup)] + (['--compile'] if compile_ else [])
    return train_step.memory_in_subprocess(BENCHMARK_TOOL, 1 if kind == 'official' else 0, argv)


def time_steps(args, configs):
    import torch
    specs = _specs(args, configs)
    runners = []
    for kind, value, compile_ in specs:
        runners.append(train_step.build_runner((kind, value), _step_args(args, compile_)))
    results = []
    for (kind, value, compile_), r in zip(specs, runners):
        flops = train_step.whole_step_flops(r)[1] if not compile_ else None
        results.append(dict(label=value[2] if kind == 'ours' else r.label,
                            optimizer=r.optim_desc, params_m=r.params_m(),
                            step_flops=flops))
    eager_flops = results[0]['step_flops']
    for res in results:  # the compiled model computes the eager one's FLOPs
        res['step_flops'] = res['step_flops'] or eager_flops
    for _ in range(args.warmup):
        for r in runners:
            r.step()
    times = [[] for _ in runners]
    for _ in range(args.iters):
        for r, t in zip(runners, times):
            timing.sync(args.device)
            start = time.perf_counter()
            r.step()
            timing.sync(args.device)
            t.append(time.perf_counter() - start)
    del runners
    if args.device.startswith('cuda'):
        torch.cuda.empty_cache()
    n = 512 if args.tiny else 8192
    peak = timing.matmul_peak(args.device, autocast_dtype('bf16'), n=n) * 1e9  # FLOP/s
    for res, t, spec in zip(results, times, specs):
        res['times_s'] = t
        res['step_s'] = statistics.median(t)
        res['img_s'] = args.batch_size / res['step_s']
        res['tflops'] = res['step_flops'] / res['step_s'] / 1e12
        res['mfu'] = res['step_flops'] / res['step_s'] / peak
        res['memory'] = _memory(args, spec, spec[2])
    return results, peak


def reader_rate(args, out_dir):
    """Images/s of the WebDataset reader with one loader worker (decode, crop,
    tokenise, pack: the LAION pipeline) on LAION-like JPEG shards."""
    import torch
    from mmengine.config import Config
    from mmengine.dataset import default_collate
    from mmpretrain.registry import DATASETS

    from rils_mm.testing import generate_toy_corpus
    root = osp.join(out_dir, 'wds')
    n = args.wds_samples
    generate_toy_corpus(root, num_train=n, num_val=0, image_size=args.wds_image_size,
                        seed=0, shard_size=max(1, n // 4))
    cfg = Config.fromfile(osp.join(ROOT, 'configs/_base_/datasets/laion_wds.py'))
    ds_cfg = cfg.train_dataloader.dataset
    ds_cfg.update(urls=osp.join(root, 'shards', 'train-{000000..000003}.tar'),
                  num_samples=n, batch_size=min(32, n), shuffle_buffer=min(256, n))
    if args.tiny:
        ds_cfg.pipeline[0].scale = 32
    dataset = DATASETS.build(ds_cfg)
    loader = torch.utils.data.DataLoader(dataset, batch_size=ds_cfg.batch_size,
                                         num_workers=1, collate_fn=default_collate)
    it = iter(loader)
    first = next(it)  # worker start and first shard open are not the steady rate
    count, start = 0, time.perf_counter()
    for batch in it:
        count += len(batch['data_samples'])
    seconds = time.perf_counter() - start
    size = tuple(first['inputs'][0].shape)
    return dict(images=count, seconds=seconds, img_s_per_worker=count / max(seconds, 1e-9),
                jpeg_side=args.wds_image_size, output=size)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    import torch

    import rils_mm  # noqa: F401
    from rils_mm.utils.cpu import cpu_summary
    train_step.setup(SimpleNamespace(threads=None, device=args.device, precision='bf16',
                                fused_adamw=False, plain_adamw=False))
    with tempfile.TemporaryDirectory() as tmp:
        configs = ({k: _tiny_config(k, tmp) for k in TINY_CONFIGS} if args.tiny else
                   {k: osp.join(ROOT, v) for k, v in CONFIGS.items()})
        results, peak = time_steps(args, configs)
        reader = reader_rate(args, tmp)
    ours = results[0]
    reader['workers_per_gpu'] = math.ceil(ours['img_s'] / reader['img_s_per_worker'])
    report = dict(
        date=time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime()),
        device=(torch.cuda.get_device_name() if args.device.startswith('cuda') else 'cpu'),
        cpu=cpu_summary(), torch=torch.__version__, command=' '.join(sys.argv),
        batch_size=args.batch_size, precision='bf16', tiny=args.tiny,
        matmul_peak_tflops=peak / 1e12, steps=results, webdataset_reader=reader)
    official = [r for r in results if r['label'].startswith('official')]
    if official:
        o = official[0]
        report['vs_official'] = dict(
            speed=ours['img_s'] / o['img_s'],
            memory=ours['memory']['peak_mib'] / o['memory']['peak_mib'])
    path = osp.join(args.out_dir, 'device_check.json')
    with open(path, 'w') as f:
        json.dump(report, f, indent=1, default=str)
    for r in results:
        print(f"{r['label']:<28} step {r['step_s']:.4f} s  {r['img_s']:8.1f} img/s  "
              f"{r['tflops']:7.2f} TFLOP/s  MFU {100 * r['mfu']:5.1f}%  "
              f"peak {r['memory']['peak_mib']:8.0f} MiB")
    print(f"bf16 matmul: {peak / 1e12:.2f} TFLOP/s; reader "
          f"{reader['img_s_per_worker']:.0f} img/s per worker -> "
          f"{reader['workers_per_gpu']} workers per GPU; wrote {path}")
    return report


if __name__ == '__main__':
    main()
