"""Train a rils-mm config with mmengine's Runner.

    python tools/train.py configs/rils/rils_vittiny_toy.py
    tools/dist_train.sh configs/rils/rils_vitb16_l20m.py 32
"""
import argparse
import os
import os.path as osp
import sys

from project_env import setup_tool

setup_tool(__name__)  # run by an interpreter without the stack: use .venv's

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.runner import Runner  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description='Train a rils-mm model')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--work-dir', help='where logs and checkpoints go')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from this checkpoint, or (no value) from the newest intact one '
        'in the work dir')
    parser.add_argument(
        '--amp', nargs='?', const='float16', choices=['float16', 'bfloat16'],
        help='automatic mixed precision (default fp16 + dynamic loss scale; '
        'bfloat16 needs no scaler and also speeds up CPUs)')
    parser.add_argument('--no-validate', action='store_true',
                        help='skip evaluation during training')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale lr by actual / config base batch size')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, xxx=yyy')
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm', 'mpi'])
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def merge_args(cfg: Config, args) -> Config:
    """Apply the command-line switches to the config."""
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    if args.amp is not None:
        from rils_mm.benchmark.precision import precision_optim_wrapper
        # float16 (GPU): fp16 autocast + dynamic loss scaling, non-finite steps skipped;
        # bfloat16: any device, CPU included, no scaler. The same mapping as the benchmark's
        cfg.optim_wrapper = precision_optim_wrapper(cfg.optim_wrapper, args.amp)
    if args.resume == 'auto':
        # The file `last_checkpoint` names may be truncated (a crash or a full
        # disk while an older, non-atomic writer saved it): fall back to the
        # newest intact checkpoint, with a warning naming the bad file(s).
        from rils_mm.utils.checkpoint import find_latest_intact_checkpoint
        cfg.resume, cfg.load_from = True, find_latest_intact_checkpoint(cfg.work_dir)
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    if args.auto_scale_lr:
        cfg.auto_scale_lr.enable = True
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    return cfg


def setup_cpu_distributed(cfg: Config) -> None:
    """Let ``--launcher pytorch`` run on machines without a GPU (gloo).

    mmengine 0.10.7's ``init_dist`` always calls ``torch.cuda.set_device`` and
    its default DDP wrapper passes ``device_ids``; both fail without CUDA. Here
    the process group is initialised first (mmengine then skips its own) and
    DDP is built without device ids. Useful to debug multi-rank code on CPUs;
    GPU runs are untouched.
    """
    import torch
    import torch.distributed as dist
    if cfg.launcher != 'pytorch' or torch.cuda.is_available():
        return
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    cfg.setdefault('model_wrapper_cfg', dict(
        type='MMDistributedDataParallel', device_ids=None, broadcast_buffers=False))


def main():
    args = parse_args()
    from rils_mm.engine.hooks.preemption_hook import Preempted
    cfg = merge_args(Config.fromfile(args.config), args)
    setup_cpu_distributed(cfg)
    runner = Runner.from_cfg(cfg)
    status = 0
    try:
        runner.train()
    except Preempted as stop:  # checkpoint written on a signal: "requeue me" (75)
        status = stop.code
    del runner  # free DDP and its pending gloo work while the interpreter is whole
    shutdown_distributed()
    sys.exit(status)


def shutdown_distributed() -> None:
    """Leave the process group together and destroy it.

    mmengine never destroys it; exiting with it alive lets gloo's threads die
    mid-teardown ("terminate called without an active exception", SIGABRT)
    and makes NCCL warn.
    """
    import gc

    import torch.distributed as dist
    gc.collect()
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == '__main__':
    main()
