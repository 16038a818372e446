"""Crash-safe checkpoints: atomic writes, pointer after, pruning after, and
``--resume`` falling back to the newest intact checkpoint."""
import argparse
import logging
import os
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.runner import Runner

from rils_mm.testing import ToyData, ToyModel
from rils_mm.utils.checkpoint import (
    CorruptCheckpointError,
    checkpoint_problem,
    find_latest_intact_checkpoint,
    load_from_local,
    register_checkpoint_safety,
)

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
register_checkpoint_safety()


def _runner(work_dir, name, max_epochs=3, **ckpt):
    torch.manual_seed(0)
    return Runner(
        model=ToyModel(),
        work_dir=str(work_dir),
        experiment_name=name,
        train_dataloader=dict(dataset=ToyData(8),
                              sampler=dict(type='DefaultSampler', shuffle=False),
                              collate_fn=dict(type='default_collate'), batch_size=2,
                              num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.1)),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        default_hooks=dict(checkpoint=dict(type='AtomicCheckpointHook', **ckpt)),
        default_scope='mmpretrain')


def _pth(work_dir):
    return sorted(n for n in os.listdir(work_dir) if '.pth' in n)


def _pointer(work_dir):
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        return osp.basename(f.read())


@pytest.mark.slow  # a Runner
def test_epoch_and_mid_epoch_checkpoints_pruned_after_writing(tmp_path):
    # 4 iterations per epoch, mid-epoch checkpoints every 3 iterations: 3, 6, 9
    # (12 ends epoch 3, which has its own).
    runner = _runner(tmp_path, 'atomic_plain', interval=1, interval_iters=3, max_keep_ckpts=2)
    runner.train()
    assert _pth(tmp_path) == ['epoch_3.pth', 'iter_9.pth']
    assert _pointer(tmp_path) == 'epoch_3.pth'
    mid = load_from_local(str(tmp_path / 'iter_9.pth'))
    assert (mid['meta']['epoch'], mid['meta']['iter']) == (2, 9)  # unfinished epoch 2
    assert mid['message_hub']['runtime_info']['keep_ckpt_files'] == ['epoch_2.pth',
                                                                      'iter_9.pth']


@pytest.mark.slow  # a Runner
def test_a_failed_write_leaves_the_previous_checkpoint_and_pointer(tmp_path, monkeypatch):
    runner = _runner(tmp_path, 'atomic_fail', interval=1, max_keep_ckpts=1)
    calls = []
    real_replace = os.replace

    def dying_replace(src, dst):
        calls.append(osp.basename(dst))
        if osp.basename(dst) == 'epoch_2.pth':  # "killed" before the rename
            raise KeyboardInterrupt('killed')
        return real_replace(src, dst)

    monkeypatch.setattr(os, 'replace', dying_replace)
    with pytest.raises(KeyboardInterrupt):
        runner.train()
    monkeypatch.setattr(os, 'replace', real_replace)
    # The complete epoch_2.pth.tmp was never renamed: epoch_1 is still the last
    # checkpoint, and was not pruned (max_keep_ckpts=1 would remove it only
    # after epoch_2 is complete).
    assert _pth(tmp_path) == ['epoch_1.pth', 'epoch_2.pth.tmp']
    assert _pointer(tmp_path) == 'epoch_1.pth'
    assert checkpoint_problem(str(tmp_path / 'epoch_1.pth')) is None
    # Resuming removes the left-over and continues from epoch 1.
    runner = _runner(tmp_path, 'atomic_fail_resume', interval=1, max_keep_ckpts=1)
    runner._resume = True  # noqa: SLF001 (what cfg.resume=True sets)
    runner.train()
    assert _pth(tmp_path) == ['epoch_3.pth']
    assert _pointer(tmp_path) == 'epoch_3.pth'


def _truncate(path, keep=0.5):
    data = open(path, 'rb').read()
    with open(path, 'wb') as f:
        f.write(data[:int(len(data) * keep)])


@pytest.mark.slow  # Runners
def test_resume_falls_back_to_the_newest_intact_checkpoint(tmp_path):
    _runner(tmp_path, 'fallback_run', interval=1).train()
    assert _pth(tmp_path) == ['epoch_1.pth', 'epoch_2.pth', 'epoch_3.pth']
    _truncate(tmp_path / 'epoch_3.pth')  # e.g. written by an older, non-atomic writer
    problem = checkpoint_problem(str(tmp_path / 'epoch_3.pth'))
    assert problem.startswith('truncated or not a torch.save zip archive')
    with pytest.raises(CorruptCheckpointError, match='epoch_3.pth" cannot be read'):
        load_from_local(str(tmp_path / 'epoch_3.pth'))

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        # tools/train.py --resume
        sys.path.insert(0, osp.join(REPO_ROOT, 'tools'))
        from train import merge_args
        cfg = Config(dict(work_dir=str(tmp_path), optim_wrapper=dict(type='OptimWrapper')))
        args = argparse.Namespace(launcher='none', work_dir=None, no_validate=False, amp=None,
                                  resume='auto', auto_scale_lr=False, cfg_options=None)
        cfg = merge_args(cfg, args)
    finally:
        logger.removeHandler(handler)
        sys.path.remove(osp.join(REPO_ROOT, 'tools'))
    assert cfg.resume is True and cfg.load_from == str(tmp_path / 'epoch_2.pth')
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert any(f'Cannot resume from checkpoint {tmp_path}/epoch_3.pth: truncated' in w
               for w in warnings), warnings
    # The resumed run finishes from epoch 2.
    runner = _runner(tmp_path, 'fallback_resumed', interval=1)
    runner._resume, runner._load_from = True, cfg.load_from  # noqa: SLF001
    runner.train()
    assert runner.epoch == 3 and runner.iter == 12
    # Nothing intact: an error naming the files, not a silent fresh start.
    for name in ('epoch_1.pth', 'epoch_2.pth', 'epoch_3.pth'):
        _truncate(tmp_path / name, keep=0.3)
    with pytest.raises(CorruptCheckpointError, match='No intact checkpoint to resume from'):
        find_latest_intact_checkpoint(str(tmp_path))
    assert find_latest_intact_checkpoint(str(tmp_path / 'empty')) is None
