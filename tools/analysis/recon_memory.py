"""Peak memory of the L_recon forward + backward pass: plain autograd vs. recomputation.

For K selected patches (rows), T texts and width D, both paths compute Eq. 9 in chunks of
``--chunk-size`` rows. The plain path lets autograd keep every chunk's softmax for the backward
pass (about 2 K x T floats); :class:`PrototypeKLDivergence` keeps none and recomputes them chunk
by chunk in the backward pass. Each measurement runs in a fresh process; the figure is the
growth of the peak resident set size (``VmHWM``, see :mod:`rils_mm.benchmark.memory`) over the
resident size after creating the inputs, so it counts everything the loss allocates on the CPU.

    python tools/analysis/recon_memory.py --rows 8192 --texts 1024 4096 16384 32768
"""
import argparse
import json
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from project_env import setup_tool  # noqa: E402

setup_tool(__name__)


def _worker(path: str, rows: int, texts: int, dim: int, chunk: int) -> dict:
    import torch
    import torch.nn.functional as F

    from rils_mm.benchmark.memory import current_rss_mib, peak_rss_mib
    from rils_mm.models.losses.recon import PrototypeKLDivergence  # before measuring
    torch.manual_seed(0)
    pred = F.normalize(torch.randn(rows, dim), dim=-1).requires_grad_()
    target = F.normalize(torch.randn(rows, dim), dim=-1)
    text = F.normalize(torch.randn(texts, dim), dim=-1)
    tau1, tau2 = 0.04, 0.1
    base = current_rss_mib()
    start = time.perf_counter()
    if path == 'plain':
        total = pred.new_zeros(())
        for s in range(0, rows, chunk):
            with torch.no_grad():
                p = F.softmax(target[s:s + chunk] @ text.t() / tau1, dim=-1)
            log_q = F.log_softmax(pred[s:s + chunk] @ text.t() / tau2, dim=-1)
            total = total - (p * log_q).sum()
        del p, log_q
    else:
        _, total = PrototypeKLDivergence.apply(pred, target, text, tau1, tau2, chunk)
    total.backward()
    seconds = time.perf_counter() - start
    peak = peak_rss_mib()
    return dict(path=path, rows=rows, texts=texts, dim=dim, chunk_size=chunk,
                peak_mib=round(peak - base, 1), seconds=round(seconds, 2),
                logits_mib=round(rows * texts * 4 / 2**20, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rows', type=int, default=8192, help='selected patches K')
    parser.add_argument('--texts', type=int, nargs='+', default=[1024, 4096, 16384, 32768])
    parser.add_argument('--dim', type=int, default=512)
    parser.add_argument('--chunk-size', type=int, default=2048)
    parser.add_argument('--paths', nargs='+', default=['plain', 'recompute'],
                        choices=['plain', 'recompute'])
    parser.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.paths[0], args.rows, args.texts[0], args.dim,
                                 args.chunk_size)))
        return
    from rils_mm.benchmark.memory import run_json_child
    print('| texts T | rows K | chunk | K x T fp32 logits (MiB) | plain peak (MiB) | '
          'recompute peak (MiB) | plain s | recompute s |')
    print('|---:|---:|---:|---:|---:|---:|---:|---:|')
    for texts in args.texts:
        res = {}
        for path in args.paths:
            res[path] = run_json_child(
                [sys.executable, __file__, '--worker', '--paths', path, '--rows',
                 str(args.rows), '--texts', str(texts), '--dim', str(args.dim),
                 '--chunk-size', str(args.chunk_size)])
        any_ = next(iter(res.values()))
        cells = [str(texts), str(args.rows), str(args.chunk_size), str(any_['logits_mib'])]
        cells += [str(res[p]['peak_mib']) if p in res else '-' for p in ('plain', 'recompute')]
        cells += [str(res[p]['seconds']) if p in res else '-' for p in ('plain', 'recompute')]
        print('| ' + ' | '.join(cells) + ' |', flush=True)


if __name__ == '__main__':
    main()
