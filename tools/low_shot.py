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
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import numpy as np  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.runner import load_checkpoint  # noqa: E402
from mmpretrain.registry import DATASETS, MODELS  # noqa: E402

import rils_mm  # noqa: E402,F401
from rils_mm.evaluation.benchmark_runner import _fit_pipeline, model_image_size  # noqa: E402
from rils_mm.evaluation.low_shot import (  # noqa: E402
    extract_features,
    low_shot_logistic_regression,
    sample_k_per_class,
)


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


def run_low_shot(model_cfg: Config, bench: Config, checkpoint: str,
                 train_root=None, test_root=None, shots=None, seeds=None,
                 C=None, logger=print) -> dict:
    """Build the model, load ``checkpoint``, encode and fit; returns
    ``{k: dict(mean, std, accs, seconds)}``."""
    model = MODELS.build(model_cfg.model)
    load_checkpoint(model, checkpoint, map_location='cpu', strict=False,
                    logger='current')
    model.eval()
    shots = tuple(shots or bench.shots)
    seeds = tuple(seeds if seeds is not None else bench.seeds)
    size = model_image_size(model_cfg)
    datasets = {}
    for which, root in (('train', train_root), ('test', test_root)):
        cfg = bench[f'{which}_dataset'].copy()
        if root:
            cfg['data_root'] = root
        _fit_pipeline(cfg['pipeline'], size, 77)
        datasets[which] = DATASETS.build(cfg)
    labels = datasets['train'].get_labels()
    per_seed = {(k, s): sample_k_per_class(labels, k, s)
                for k in shots for s in seeds}
    union = np.unique(np.concatenate(list(per_seed.values())))
    tic = time.time()
    train_x, train_y = extract_features(model, datasets['train'], union,
                                        bench.get('batch_size', 64))
    test_x, test_y = extract_features(model, datasets['test'], None,
                                      bench.get('batch_size', 64))
    logger(f'encoded {len(union)} train and {len(test_y)} test images in '
           f'{time.time() - tic:.1f} s')
    # features of the whole train split are only needed at the sampled rows
    full_x = np.zeros((len(labels), train_x.shape[1]), np.float32)
    full_x[union] = train_x
    return low_shot_logistic_regression(
        full_x, labels, test_x, test_y, shots=shots, seeds=seeds,
        C=C if C is not None else bench.get('C', 1.0),
        max_iter=bench.get('max_iter', 1000), logger=logger)


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
