"""Exact resume under SIGKILL: ``tools/train.py`` on the toy config is killed at
random iterations (once in the middle of writing a checkpoint) and resumed with
``--resume`` each time; the final weights are bit-identical to an uninterrupted
run and every sample is trained exactly once per epoch."""
import os
import os.path as osp
import random
import signal
import subprocess
import sys
from collections import Counter

import pytest
import torch
from mmengine.config import Config

from rils_mm.testing import generate_toy_corpus
from rils_mm.utils.checkpoint import load_from_local

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(ROOT, 'configs', 'rils', 'rils_vittiny_toy.py')
EPOCHS, ITERS, BATCH = 3, 10, 4

# Imported by the config (custom_imports): records the sample keys of every
# trained iteration and kills the process where the environment says.
HELPER = r'''
import os
import signal

from mmengine.fileio.backends.local_backend import LocalBackend
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


@HOOKS.register_module()
class RecordAndKillHook(Hook):
    priority = 'LOWEST'  # after the checkpoint of the iteration was written

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        keys = [s.img_path.rsplit('/', 1)[-1] for s in data_batch['data_samples']]
        with open(os.path.join(runner.work_dir, 'trained.log'), 'a') as f:
            f.write(f'{runner.iter} {runner.epoch} {batch_idx} ' + ' '.join(keys) + '\n')
            f.flush()
            os.fsync(f.fileno())
        if runner.iter == int(os.environ.get('KILL_AFTER_ITER', -1)):
            _die()


_put = LocalBackend.put


def _put_then_die(self, obj, filepath):
    # Killed half-way through writing a checkpoint file.
    if os.path.basename(str(filepath)).startswith(os.environ.get('KILL_WRITING', '-')):
        with open(filepath, 'wb') as f:
            f.write(obj[:len(obj) // 2])
            f.flush()
            os.fsync(f.fileno())
        _die()
    return _put(self, obj, filepath)


LocalBackend.put = _put_then_die
'''


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('kill')
    data = tmp / 'toy'
    generate_toy_corpus(str(data), num_train=ITERS * BATCH, num_val=16,
                        image_size=32, seed=5, shard_size=64)
    (tmp / 'kill_helper.py').write_text(HELPER)
    cfg = Config.fromfile(CONFIG)
    cfg.model.backbone.update(
        arch=dict(embed_dims=32, num_layers=1, num_heads=2, feedforward_channels=64),
        img_size=32, patch_size=8)
    cfg.model.neck.update(num_patches=16, embed_dim=32, decoder_num_heads=2)
    cfg.model.text_encoder.update(width=32, layers=1, heads=2, context_length=16)
    cfg.model.head.update(vision_dims=32, text_dims=32, embed_dims=32)
    cfg.train_dataloader.dataset.data_root = str(data)
    cfg.train_dataloader.dataset.pipeline[1].scale = 32
    cfg.train_dataloader.dataset.pipeline[2].context_length = 16
    cfg.train_dataloader.batch_size = BATCH
    cfg.train_cfg.max_epochs = EPOCHS
    cfg.param_scheduler[-1].end = EPOCHS
    cfg.default_hooks.checkpoint.update(interval=1, interval_iters=3, max_keep_ckpts=2)
    cfg.default_hooks.logger.interval = 1
    cfg.custom_hooks = [h for h in cfg.custom_hooks if h.type != 'ZeroShotClassifierHook']
    cfg.custom_hooks.append(dict(type='RecordAndKillHook'))
    cfg.custom_imports = dict(imports=['rils_mm', 'kill_helper'], allow_failed_imports=False)
    cfg.randomness = dict(seed=0)
    cfg.dump(str(tmp / 'toy_kill.py'))
    return tmp


def _train(tmp, work_dir, resume=False, **kill):
    env = dict(os.environ, OMP_NUM_THREADS='1', **{k: str(v) for k, v in kill.items()})
    env['PYTHONPATH'] = os.pathsep.join(
        [ROOT, str(tmp)] + ([env['PYTHONPATH']] if env.get('PYTHONPATH') else []))
    cmd = [sys.executable, osp.join(ROOT, 'tools', 'train.py'), str(tmp / 'toy_kill.py'),
           '--work-dir', str(work_dir), '--no-validate'] + (['--resume'] if resume else [])
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


def _history(work_dir):
    """The trained batches, the latest record of each iteration winning (the
    iterations after the last checkpoint of a killed run are trained again)."""
    by_iter = {}
    with open(osp.join(work_dir, 'trained.log')) as f:
        for line in f:
            it, epoch, batch_idx, *keys = line.split()
            by_iter[int(it)] = (int(epoch), int(batch_idx), keys)
    return by_iter


@pytest.mark.slow
def test_sigkill_at_random_iterations_then_resume_is_bit_identical(setup):
    tmp = setup
    ref_dir, dir_ = tmp / 'uninterrupted', tmp / 'killed'
    ref = _train(tmp, ref_dir)
    assert ref.returncode == 0, ref.stderr[-3000:]

    rng = random.Random(12)
    kills = [dict(KILL_AFTER_ITER=rng.randrange(3, 8)),  # mid-epoch 0
             dict(KILL_WRITING='iter_12'),  # during the write of iter_12.pth
             dict(KILL_AFTER_ITER=rng.randrange(20, 29))]  # epoch 2
    for i, kill in enumerate(kills):
        run = _train(tmp, dir_, resume=i > 0, **kill)
        assert run.returncode == -signal.SIGKILL, (kill, run.stderr[-3000:])
        if 'KILL_WRITING' in kill:
            # Half of iter_12.pth was written, to its temporary name: the
            # previous checkpoint and the pointer stay the last complete ones.
            assert osp.getsize(dir_ / 'iter_12.pth.tmp') > 0
            assert not osp.exists(dir_ / 'iter_12.pth')
            assert open(dir_ / 'last_checkpoint').read().endswith('epoch_1.pth')
    last = _train(tmp, dir_, resume=True)
    assert last.returncode == 0, last.stderr[-3000:]
    assert 'Continuing epoch 3 at batch' in last.stderr + last.stdout

    a = load_from_local(str(ref_dir / 'epoch_3.pth'))
    b = load_from_local(str(dir_ / 'epoch_3.pth'))
    assert a['meta']['iter'] == b['meta']['iter'] == EPOCHS * ITERS
    for k, v in a['state_dict'].items():
        assert torch.equal(v, b['state_dict'][k]), k
    for pid, st in a['optimizer']['state'].items():
        for k, v in st.items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(
                b['optimizer']['state'][pid][k])), (pid, k)

    ref_hist, hist = _history(ref_dir), _history(dir_)
    assert sorted(hist) == list(range(EPOCHS * ITERS))
    assert hist == ref_hist  # the same batches in the same order
    for epoch in range(EPOCHS):
        seen = Counter(k for e, _, keys in hist.values() if e == epoch for k in keys)
        assert len(seen) == ITERS * BATCH and set(seen.values()) == {1}, epoch
