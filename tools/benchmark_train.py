"""Measure a training step of a config: step time, images/s, peak memory, parameters and
forward FLOPs per image, in fp32 and under bf16 (or fp16) autocast, on CPU or GPU.

    python tools/benchmark_train.py configs/rils/rils_vitb16_l20m.py --batch-size 8

Each precision runs in a fresh subprocess so that the peak-memory figures (max RSS on
CPU, max allocated on CUDA) belong to it alone. Synthetic inputs; no data needed.
"""
import argparse
import json
import os.path as osp
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


def parse_args():
    parser = argparse.ArgumentParser(description='Benchmark a training step')
    parser.add_argument('config')
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--iters', type=int, default=5, help='timed steps')
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--device', default=None, help='cpu or cuda (default: cuda if any)')
    parser.add_argument('--precisions', nargs='+', default=['fp32', 'bf16'],
                        choices=['fp32', 'bf16', 'fp16'])
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    parser.add_argument('--single', default=None, help=argparse.SUPPRESS)
    return parser.parse_args()


def run_one(args, precision):
    """One precision, in this process; returns a dict of measurements."""
    import torch
    from mmengine.config import Config
    from mmpretrain.registry import MODELS
    from torch.utils.flop_counter import FlopCounterMode

    import rils_mm  # noqa: F401
    from rils_mm.testing import fake_batch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    cfg = Config.fromfile(args.config)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.to(device).train()
    bb = cfg.model.backbone
    img_size, patch = bb.get('img_size', 224), bb.get('patch_size', 16)
    ctx = cfg.model.text_encoder.get('context_length', 77)
    images, tokens, noise = fake_batch(args.batch_size, img_size, ctx,
                                       num_patches=(img_size // patch)**2)
    images, tokens, noise = images.to(device), tokens.to(device), noise.to(device)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-4)
    dtype = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}[precision]
    scaler = torch.amp.GradScaler(device) if precision == 'fp16' else None

    def step():
        with torch.autocast(device, dtype=dtype, enabled=dtype is not None):
            losses = model.forward_train(images, tokens, mask_noise=noise)
            loss = losses['loss_contrastive'] + losses['loss_recon']
        optim.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optim)
            scaler.update()
        else:
            loss.backward()
            optim.step()

    def sync():
        if device.startswith('cuda'):
            torch.cuda.synchronize()

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.forward_train(images, tokens, mask_noise=noise)
    flops = counter.get_total_flops() / args.batch_size
    for _ in range(args.warmup):
        step()
    sync()
    if device.startswith('cuda'):
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.iters):
        t = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t)
    if device.startswith('cuda'):
        peak = torch.cuda.max_memory_allocated() / 2**20
        peak_kind = 'CUDA max allocated'
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        peak_kind = 'process max RSS'
    step_time = statistics.median(times)
    return dict(
        precision=precision, device=device,
        device_name=(torch.cuda.get_device_name() if device.startswith('cuda')
                     else f'CPU x{torch.get_num_threads()} threads'),
        batch_size=args.batch_size, step_time_s=step_time,
        images_per_s=args.batch_size / step_time, peak_mem_mib=peak, peak_kind=peak_kind,
        params_m={name: sum(p.numel() for p in getattr(model, name).parameters()) / 1e6
                  for name in ('backbone', 'neck', 'text_encoder', 'head')},
        fwd_gflops_per_image=flops / 1e9)


def main():
    args = parse_args()
    if args.single:
        print(json.dumps(run_one(args, args.single)))
        return
    results = []
    for precision in args.precisions:
        cmd = [sys.executable, __file__, *sys.argv[1:], '--single', precision]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
    r0 = results[0]
    print(f'config: {args.config}')
    print(f'device: {r0["device_name"]}, batch {args.batch_size}, '
          f'median of {args.iters} steps after {args.warmup} warm-up')
    print('parameters (M): ' + ', '.join(f'{k} {v:.2f}' for k, v in r0['params_m'].items())
          + f', total {sum(r0["params_m"].values()):.2f}')
    print(f'forward GFLOPs per image (both views + decoder + text + losses): '
          f'{r0["fwd_gflops_per_image"]:.2f}')
    print(f'{"precision":<10}{"step (s)":>10}{"img/s":>10}{"peak MiB":>12}  ratio vs first')
    for r in results:
        print(f'{r["precision"]:<10}{r["step_time_s"]:>10.3f}{r["images_per_s"]:>10.2f}'
              f'{r["peak_mem_mib"]:>12.0f}  x{r0["step_time_s"] / r["step_time_s"]:.2f} speed')
    print(f'(peak memory = {r0["peak_kind"]})')


if __name__ == '__main__':
    main()
