"""Evaluate a checkpoint with mmengine's test loop.

    # the config's own test set (zero-shot on the toy split for the toy config)
    python tools/test.py configs/rils/rils_vittiny_toy.py work_dirs/.../epoch_10.pth
    # a downstream benchmark (configs/benchmarks/): zero-shot, OOD, retrieval
    python tools/test.py configs/rils/rils_vitb16_l20m.py rils.pth \
        --benchmark configs/benchmarks/zero_shot/cifar10.py --data-root data/cifar10

With ``--benchmark`` the model comes from CONFIG and the data, pipeline and
metric from the benchmark config; images are resized / cropped to the model's
``img_size`` and captions tokenised at its context length.
"""
import argparse
import os
import os.path as osp

from project_env import setup_tool

setup_tool(__name__)  # run by an interpreter without the stack: use .venv's

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.runner import Runner  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description='Evaluate a rils-mm model')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--benchmark', help='a configs/benchmarks/ config to run instead of '
                        "CONFIG's own test set")
    parser.add_argument('--data-root', help="replaces the benchmark data set's data_root")
    parser.add_argument('--work-dir', help='where evaluation logs go')
    parser.add_argument('--out', help='dump the metrics to this json file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, xxx=yyy')
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm', 'mpi'])
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main():
    args = parse_args()
    cfg = Config.fromfile(args.config)
    if args.benchmark:
        from rils_mm.evaluation.benchmark_runner import merge_benchmark_cfg
        cfg = merge_benchmark_cfg(cfg, Config.fromfile(args.benchmark), args.data_root)
    elif args.data_root:
        cfg.test_dataloader.dataset.data_root = args.data_root
    cfg.launcher = args.launcher
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or osp.join(
        'work_dirs', osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    metrics = Runner.from_cfg(cfg).test()
    if args.out:
        import json
        with open(args.out, 'w') as f:
            json.dump({k: float(v) for k, v in metrics.items()}, f, indent=2)
    return metrics


if __name__ == '__main__':
    main()
