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

from project_env import setup_tool

setup_tool(__name__)

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
    p.add_argument('--synthetic', type=int, nargs=3, metavar=('CLASSES', 'DIM', 'TEST'),
                   help='time the regression alone on random Gaussian-cluster features '
                   '(e.g. 1000 768 50000 for ImageNet-1K with ViT-B); CONFIG and '
                   'CHECKPOINT are then ignored')
    return p.parse_args(argv)


def synthetic_features(num_classes, dim, num_test, per_class_pool=12, seed=0):
    """Gaussian clusters: class means on the unit sphere plus isotropic noise."""
    import numpy as np
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((num_classes, dim)).astype(np.float32)
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    train_y = np.repeat(np.arange(num_classes), per_class_pool)
    test_y = rng.integers(0, num_classes, num_test)
    noise = 4.0 / np.sqrt(dim)  # tuned so that 10 shots reach ~50-70% top-1
    train_x = means[train_y] + noise * rng.standard_normal((len(train_y), dim), np.float32)
    test_x = means[test_y] + noise * rng.standard_normal((num_test, dim), np.float32)
    return train_x, train_y, test_x, test_y


def main(argv=None):
    args = parse_args(argv)
    if args.synthetic:
        import time

        from rils_mm.evaluation.low_shot import low_shot_logistic_regression
        tic = time.perf_counter()
        data = synthetic_features(*args.synthetic)
        print(f'synthetic features {args.synthetic}: {time.perf_counter() - tic:.1f} s')
        results = low_shot_logistic_regression(
            *data, shots=args.shots or (1, 2, 5, 10), seeds=args.seeds or (0, 1, 2),
            C=args.C or 1.0, logger=print)
        for k, r in results.items():
            print(f"k={k}: fit+predict {sum(r['seconds']) / len(r['seconds']):.1f} s per seed "
                  f"(mean over {len(r['seconds'])}), top-1 {r['mean']:.1f} ± {r['std']:.2f}")
        return results
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
