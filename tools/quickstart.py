"""The README's main job: toy corpus -> train a tiny RILS on CPU -> zero-shot accuracy.

    python tools/quickstart.py [--seed 0] [--epochs N] [--work-dir DIR]
"""
import argparse
import os.path as osp
import time
import warnings

from project_env import setup_tool

ROOT = setup_tool(__name__)  # run by an interpreter without the stack: use .venv's

# Pretraining needs none of mmcv's C++ ops; with mmcv-lite (tools/setup_env.sh --lite)
# mmcv warns once that its deformable attention op is missing.
warnings.filterwarnings('ignore', message='Fail to import ``MultiScaleDeformableAttention``')

from mmengine.config import Config  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from rils_mm.testing import generate_toy_corpus  # noqa: E402

CONFIG = osp.join(ROOT, 'configs', 'rils', 'rils_vittiny_toy.py')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--data-root', default=osp.join(ROOT, 'data', 'toy'))
    parser.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs', 'quickstart'))
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--epochs', type=int, default=None,
                        help='override the config (default: as configured)')
    parser.add_argument('--amp', action='store_true',
                        help='bfloat16 autocast (faster on CPUs with bf16 support)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    t0 = time.time()
    corpus = generate_toy_corpus(args.data_root)
    print(f'[quickstart] toy corpus: {corpus["num_train"]} train pairs, '
          f'{corpus["num_val"]} held-out images, {len(corpus["classes"])} classes '
          f'in {args.data_root}')

    cfg = Config.fromfile(CONFIG)
    cfg.work_dir = args.work_dir
    cfg.randomness = dict(seed=args.seed, deterministic=False)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[key].dataset.data_root = args.data_root
    if args.epochs:
        cfg.train_cfg.max_epochs = args.epochs
        cfg.param_scheduler[-1].end = args.epochs
        cfg.default_hooks.checkpoint.interval = args.epochs
    if args.amp:
        cfg.optim_wrapper.type = 'AutocastOptimWrapper'
        cfg.optim_wrapper.dtype = 'bfloat16'
    cfg.train_cfg.val_interval = cfg.train_cfg.max_epochs  # evaluated once, at the end
    runner = Runner.from_cfg(cfg)
    runner.train()
    acc = runner.message_hub.get_scalar('val/accuracy/top1').current()
    chance = 100.0 / len(corpus['classes'])
    print(f'\n[quickstart] zero-shot top-1 on the held-out toy split: {acc:.1f}% '
          f'(chance {chance:.1f}%), seed {args.seed}, {time.time() - t0:.0f} s in all')
    return acc, chance


if __name__ == '__main__':
    main()
