"""Low-shot classification (paper Table 4) of a checkpoint: logistic regression
on frozen features of k images per class, several seeds, mean +- std.

    python tools/low_shot.py MODEL_CONFIG CHECKPOINT \
        --benchmark configs/benchmarks/low_shot/imagenet_lowshot.py \
        [--train-root DIR --test-root DIR] [--shots 1 2 5 10] [--seeds 0 1 2]

Only the sampled train images (at most max(shots) x classes x seeds) and the
test split are encoded.
"""
import argparse
import json
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmengine.config import Config  # noqa: E402

import rils_mm  # noqa: E402,F401
from rils_mm.evaluation.low_shot import run_low_shot  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config')
    p.add_argument('checkpoint')
    p.add_argument('--benchmark',
                   default='configs/benchmarks/low_shot/imagenet_lowshot.py')
    p.add_argument('--train-root')
    p.add_argument('--test-root')
    p.add_argument('--shots', type=int, nargs='+')
    p.add_argument('--seeds', type=int, nargs='+')
    p.add_argument('--C', type=float)
    p.add_argument('--out', help='dump results to this JSON file')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    results = run_low_shot(Config.fromfile(args.config),
                           Config.fromfile(args.benchmark), args.checkpoint,
                           args.train_root, args.test_root, args.shots,
                           args.seeds, args.C)
    print('| images per class | ' + ' | '.join(str(k) for k in results) + ' |')
    print('|---' * (len(results) + 1) + '|')
    print('| top-1 (%) | ' + ' | '.join(
        f'{r["mean"]:.1f} ± {r["std"]:.2f}' for r in results.values()) + ' |')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump({str(k): v for k, v in results.items()}, f, indent=2)
    return results


if __name__ == '__main__':
    main()
