"""Whole runs of ``tools/train.py`` / ``tools/dist_train.sh`` on the CPU and on a GPU.

* Exact mid-epoch resume with deterministic algorithms: a run interrupted after 18 of
  its 24 iterations (in the middle of epoch 2) and resumed from ``iter_18.pth`` ends with
  weights and AdamW moments bit-identical to the uninterrupted run. On a GPU the
  checkpoint carries the CUDA generator states (masking noise is drawn on the GPU).
* One-GPU NCCL: ``tools/dist_train.sh CONFIG 1`` initialises an NCCL process group and
  trains.
"""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from rils_mm.testing import free_port, generate_toy_corpus, shrink_toy_model
from rils_mm.utils.checkpoint import load_from_local

from .conftest import DEVICES

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(ROOT, 'configs', 'rils', 'rils_vittiny_toy.py')


@pytest.fixture(scope='module')
def toy_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('toy')
    generate_toy_corpus(str(root), num_train=192, num_val=16, image_size=32, seed=3,
                        shard_size=64)
    return str(root)


def _cfg(toy_root, path):
    """The toy config at 32 px / width 64 / 2 blocks: 12 iterations an epoch, 2 epochs,
    a checkpoint every 6 iterations, deterministic algorithms."""
    cfg = Config.fromfile(CONFIG)
    shrink_toy_model(cfg.model)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[key].dataset.data_root = toy_root
    cfg.train_dataloader.batch_size = 16
    cfg.train_dataloader.dataset.pipeline[1].scale = 32
    cfg.train_cfg.max_epochs = 2
    cfg.param_scheduler[-1].end = 2
    cfg.default_hooks.checkpoint.update(interval=1, interval_iters=6, max_keep_ckpts=10)
    cfg.default_hooks.logger.interval = 1
    cfg.randomness = dict(seed=0, deterministic=True)
    cfg.dump(str(path))
    return str(path)


def _env(device):
    env = dict(os.environ, PYTHONPATH=ROOT, CUBLAS_WORKSPACE_CONFIG=':4096:8',
               PATH=osp.dirname(sys.executable) + ':' + os.environ['PATH'])
    if device == 'cpu':
        env['CUDA_VISIBLE_DEVICES'] = ''  # the CPU run, also on a machine with a GPU
    return env


def _train(cfg, work_dir, device, *extra):
    run = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'train.py'), cfg,
                          '--work-dir', str(work_dir), '--no-validate', *extra],
                         cwd=ROOT, env=_env(device), capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    return run.stdout + run.stderr


@pytest.mark.slow
@pytest.mark.parametrize('device', DEVICES)
def test_mid_epoch_resume_is_bit_identical(toy_root, tmp_path, device):
    cfg = _cfg(toy_root, tmp_path / 'cfg.py')
    _train(cfg, tmp_path / 'straight', device)
    mid = tmp_path / 'straight' / 'iter_18.pth'
    ckpt = load_from_local(str(mid), map_location='cpu')
    assert ckpt['meta']['iter'] == 18 and ckpt['meta']['epoch'] == 1  # inside epoch 2
    assert ('cuda' in ckpt['rng_state']) == (device == 'cuda')
    log = _train(cfg, tmp_path / 'resumed', device, '--resume', str(mid))
    assert 'resumed' in log.lower()

    a = load_from_local(str(tmp_path / 'straight' / 'epoch_2.pth'), map_location='cpu')
    b = load_from_local(str(tmp_path / 'resumed' / 'epoch_2.pth'), map_location='cpu')
    assert a['meta']['iter'] == b['meta']['iter'] == 24
    assert a['state_dict'].keys() == b['state_dict'].keys()
    for k, v in a['state_dict'].items():
        assert torch.equal(v, b['state_dict'][k]), k
    sa, sb = a['optimizer']['state'], b['optimizer']['state']
    assert sa.keys() == sb.keys()
    for pid, st in sa.items():
        for k, v in st.items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(sb[pid][k])), (pid, k)


@pytest.mark.slow
@pytest.mark.cuda
def test_one_gpu_nccl_through_dist_train(toy_root, tmp_path):
    cfg = _cfg(toy_root, tmp_path / 'cfg.py')
    env = dict(_env('cuda'), PORT=str(free_port()))
    run = subprocess.run(['bash', osp.join(ROOT, 'tools', 'dist_train.sh'), cfg, '1',
                          '--work-dir', str(tmp_path / 'w'), '--no-validate',
                          '--cfg-options', 'env_cfg.dist_cfg.backend=nccl',
                          'train_cfg.max_epochs=1'],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-5000:]
    assert "'backend': 'nccl'" in log and 'Distributed training: True' in log
    assert 'Epoch(train) [1][12/12]' in log
    assert (tmp_path / 'w' / 'epoch_1.pth').exists()
