"""Peak memory of a RILSViT forward at detection resolution, windows on vs off.

ViTDet's point (and issue 11's trap): a plain ViT-B at 1024x1024 has 4096 tokens;
global attention in all 12 blocks materialises 12 x 4096 x 4096 scores per block,
window attention (14x14) in all but 4 blocks does not. Each setting runs in a
fresh subprocess; the figure is the process's peak resident memory (``VmHWM``, see
:mod:`rils_mm.benchmark.memory`) minus the resident memory just before the forward (model
and input built), on CPU, fp32, batch 1.

    python tools/analysis/backbone_memory.py --size 1024            # ViT-B, inference
    python tools/analysis/backbone_memory.py --size 1024 --grad --depth 1   # one block
"""
import argparse
import json
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from project_env import setup_tool  # noqa: E402

setup_tool(__name__)


def _child(args) -> dict:
    import torch
    from mmpretrain.registry import MODELS

    import rils_mm  # noqa: F401
    from rils_mm.benchmark.memory import current_rss_mib, peak_rss_mib
    torch.manual_seed(0)
    arch = args.arch
    if args.depth:  # the first `depth` blocks of ViT-B (per-block figures)
        arch = dict(embed_dims=768, num_layers=args.depth, num_heads=12,
                    feedforward_channels=3072)
    cfg = dict(type='RILSViT', arch=arch, img_size=args.size, patch_size=16,
               final_norm=False, out_type='featmap', out_indices=(-1, ),
               use_rel_pos=True)
    if args.windows:
        cfg.update(window_size=14, global_attn_indexes=[
            i for i in (2, 5, 8, 11) if not args.depth or i < args.depth])
    model = MODELS.build(cfg)
    model.init_weights()
    model.train(args.grad)
    x = torch.randn(1, 3, args.size, args.size)
    base = current_rss_mib()
    t0 = time.perf_counter()
    with torch.set_grad_enabled(args.grad):
        out = model(x)[0]
        if args.grad:
            out.float().mean().backward()
    seconds = time.perf_counter() - t0
    peak = peak_rss_mib()
    return dict(windows=args.windows, grad=args.grad, size=args.size, depth=args.depth,
                out_shape=list(out.shape), peak_mib=round(peak - base, 1),
                seconds=round(seconds, 2), threads=torch.get_num_threads())


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--size', type=int, default=1024)
    p.add_argument('--arch', default='b')
    p.add_argument('--depth', type=int, default=0,
                   help='only the first DEPTH ViT-B blocks (default: the whole --arch)')
    p.add_argument('--grad', action='store_true',
                   help='training-mode forward + backward (activations kept)')
    p.add_argument('--windows', type=int, choices=(0, 1), default=None,
                   help=argparse.SUPPRESS)  # child mode
    args = p.parse_args()
    if args.windows is not None:
        print(json.dumps(_child(args)))
        return
    from rils_mm.benchmark.memory import run_json_child
    rows = []
    for windows in (1, 0):
        cmd = [sys.executable, __file__, '--size', str(args.size), '--arch', args.arch,
               '--depth', str(args.depth), '--windows', str(windows)]
        cmd += ['--grad'] if args.grad else []
        rows.append(run_json_child(cmd))
    print('| attention | blocks | input | mode | peak memory (MiB) | time (s) |')
    print('|---|---|---|---|---|---|')
    for r in rows:
        att = '14x14 windows + 4 global' if r['windows'] else 'global in all blocks'
        mode = 'forward+backward' if r['grad'] else 'forward (no grad)'
        blocks = r['depth'] or args.arch
        if r['depth'] and r['depth'] < 3:
            att = '14x14 windows' if r['windows'] else 'global'
        print(f'| {att} | {blocks} | {r["size"]}x{r["size"]} | {mode} | {r["peak_mib"]} | '
              f'{r["seconds"]} |')


if __name__ == '__main__':
    main()
