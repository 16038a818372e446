"""End-to-end: the toy config trains through mmengine's Runner, its loss falls, resuming
from a checkpoint continues identically, and tools/train.py + tools/test.py work."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

import rils_mm  # noqa: F401
from rils_mm.testing import free_port, generate_toy_corpus, shrink_toy_model

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(ROOT, 'configs', 'rils', 'rils_vittiny_toy.py')


@pytest.fixture(scope='module')
def toy_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('toy')
    generate_toy_corpus(str(root), num_train=192, num_val=48, image_size=32, seed=3,
                        shard_size=64)
    return str(root)


def small_cfg(toy_root, work_dir, max_epochs=2, lr=2e-3):
    """The toy config shrunk to 32 px / width 64 / 2 blocks, 12 iterations per epoch."""
    cfg = Config.fromfile(CONFIG)
    cfg.work_dir = str(work_dir)
    shrink_toy_model(cfg.model)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[key].dataset.data_root = toy_root
    cfg.train_dataloader.batch_size = 16
    cfg.train_dataloader.dataset.pipeline[1].scale = 32
    for key in ('val_dataloader', 'test_dataloader'):
        cfg[key].dataset.pipeline[1].scale = 32
        cfg[key].dataset.pipeline[2].crop_size = 32
    cfg.train_cfg.max_epochs = max_epochs
    cfg.train_cfg.val_interval = max_epochs
    cfg.param_scheduler[-1].end = max_epochs
    cfg.optim_wrapper.optimizer.lr = lr
    cfg.default_hooks.checkpoint.interval = 1
    cfg.default_hooks.checkpoint.max_keep_ckpts = 5
    cfg.default_hooks.logger.interval = 1
    cfg.log_processor = dict(window_size=1)
    cfg.randomness = dict(seed=0)
    return cfg


@pytest.mark.slow
def test_toy_training_loss_falls_and_zero_shot_runs(toy_root, tmp_path):
    cfg = small_cfg(toy_root, tmp_path, max_epochs=4)
    runner = Runner.from_cfg(cfg)
    runner.train()
    history = runner.message_hub.get_scalar('train/loss_contrastive').data[0]
    assert len(history) == 4 * 12
    first, last = history[:6].mean(), history[-6:].mean()
    assert last < first - 0.3, (first, last)
    assert 'train/loss_recon' in runner.message_hub.log_scalars
    assert 'train/aligned_ratio' in runner.message_hub.log_scalars
    metrics = runner.val_loop.run()
    assert 0 <= metrics['accuracy/top1'] <= 100


@pytest.mark.slow
def test_resume_continues_identically(toy_root, tmp_path):
    straight = Runner.from_cfg(small_cfg(toy_root, tmp_path / 'a'))
    straight.train()
    ckpt = tmp_path / 'a' / 'epoch_1.pth'
    assert ckpt.exists()

    cfg = small_cfg(toy_root, tmp_path / 'b')
    cfg.resume, cfg.load_from = True, str(ckpt)
    resumed = Runner.from_cfg(cfg)
    resumed.train()
    assert resumed.iter == straight.iter == 24 and resumed.epoch == 2
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0, msg=lambda m: f'{k}: {m}')
    # and the optimizer moments too
    sa, sb = straight.optim_wrapper.state_dict(), resumed.optim_wrapper.state_dict()
    for i, st in sa['state'].items():
        torch.testing.assert_close(sb['state'][i]['exp_avg'], st['exp_avg'], rtol=0, atol=0)


@pytest.mark.slow
def test_train_and_test_tools(toy_root, tmp_path):
    cfg = small_cfg(toy_root, tmp_path, max_epochs=2)
    cfg_path = tmp_path / 'cfg.py'
    cfg.dump(str(cfg_path))
    env = dict(os.environ, PYTHONPATH=ROOT)
    run = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'train.py'), str(cfg_path),
                          '--work-dir', str(tmp_path / 'w')], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    ckpt = tmp_path / 'w' / 'epoch_2.pth'
    assert ckpt.exists()
    out = tmp_path / 'metrics.json'
    run = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'test.py'), str(cfg_path),
                          str(ckpt), '--work-dir', str(tmp_path / 't'), '--out', str(out)],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = json.loads(out.read_text())
    assert 0 <= metrics['accuracy/top1'] <= 100


@pytest.mark.slow
def test_corrupt_samples_are_skipped_counted_and_training_continues(tmp_path):
    import csv
    import shutil
    root = tmp_path / 'toy'
    generate_toy_corpus(str(root), num_train=96, num_val=16, image_size=32, seed=4,
                        shard_size=32)
    with open(root / 'train.csv') as f:
        rows = list(csv.DictReader(f))
    # break 3 images in 3 ways (truncated, not an image, deleted) and 1 caption
    first = root / rows[5]['filepath']
    first.write_bytes(first.read_bytes()[:100])
    (root / rows[20]['filepath']).write_text('not a jpeg')
    (root / rows[40]['filepath']).unlink()
    rows[60]['caption'] = '   '
    with open(root / 'train.csv', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=['filepath', 'caption'])
        writer.writeheader()
        writer.writerows(rows)

    cfg = small_cfg(str(root), tmp_path / 'w', max_epochs=2)
    cfg.custom_hooks = [h for h in cfg.custom_hooks if h.type != 'DataSkipCounterHook']
    cfg.custom_hooks.append(dict(type='DataSkipCounterHook', max_skip_ratio=0.5,
                                 min_samples=10))
    cfg.train_dataloader.batch_size = 19  # 95 valid rows: 5 iterations
    runner = Runner.from_cfg(cfg)
    assert runner.train_dataloader.dataset.num_invalid_rows == 1  # the blank caption
    runner.train()
    assert runner.epoch == 2
    info = runner.message_hub.runtime_info
    assert info['train/data_skipped'] == 3  # each broken image exactly once per epoch
    # 95 rows loaded, 3 of them broken: 92 distinct samples used, 3 stand-ins
    # (repeats), and the blank caption dropped at load time.
    assert info['train/data_used'] == 92
    assert info['train/data_repeats'] == 3
    assert info['train/data_dropped_rows'] == 1
    assert info['train/data_skipped_by_kind'] == {'corrupt image': 2, 'missing image': 1,
                                                  'empty caption': 1}
    shutil.rmtree(root)


@pytest.mark.slow
def test_dist_train_launcher_on_two_cpu_ranks(toy_root, tmp_path):
    """tools/dist_train.sh (torchrun) + mmengine DDP over gloo, 2 ranks."""
    cfg = small_cfg(toy_root, tmp_path, max_epochs=2)
    cfg.train_dataloader.batch_size = 8  # x 2 ranks = 16, 12 iterations per epoch
    cfg_path = tmp_path / 'cfg.py'
    cfg.dump(str(cfg_path))
    env = dict(os.environ, PYTHONPATH=ROOT, PORT=str(free_port()),
               PATH=osp.dirname(sys.executable) + ':' + os.environ['PATH'])
    run = subprocess.run(['bash', osp.join(ROOT, 'tools', 'dist_train.sh'), str(cfg_path), '2',
                          '--work-dir', str(tmp_path / 'w')], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-5000:]
    assert (tmp_path / 'w' / 'epoch_2.pth').exists()
    assert 'Epoch(train) [2][12/12]' in log
    # the skip counter sums over both ranks: the whole data set once per epoch
    assert log.count('data: 192 distinct samples used, 0 skipped, 0 repeats') == 2  # per epoch
    assert 'accuracy/top1' in log
