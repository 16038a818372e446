"""Exact resume under SIGKILL: ``tools/train.py`` on the toy config is killed at
random iterations (once in the middle of writing a checkpoint) and resumed with
``--resume`` each time; the final weights are bit-identical to an uninterrupted
run and every sample is trained exactly once per epoch. With one process, and
with two gloo processes launched by ``torchrun`` as users do."""
import functools
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
WDS_CONFIG = osp.join(ROOT, 'configs', 'rils', 'rils_vittiny_toy_wds.py')
EPOCHS, ITERS, BATCH = 3, 10, 4

# Imported by the config (custom_imports): records the sample keys of every
# trained iteration and kills the process where the environment says.
HELPER = r'''
import os
import signal

from mmengine.dist import get_rank
from mmengine.fileio.backends.local_backend import LocalBackend
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


@HOOKS.register_module()
class RecordAndKillHook(Hook):
    priority = 'LOWEST'  # after the checkpoint of the iteration was written

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        # the sample keys; '*' marks a stand-in for a bad sample (not a distinct one)
        keys = [s.img_path.rsplit('/', 1)[-1] + ('*' if s.metainfo.get('is_repeat') else '')
                for s in data_batch['data_samples']]
        rank = get_rank()
        with open(os.path.join(runner.work_dir, f'trained_rank{rank}.log'), 'a') as f:
            f.write(f'{runner.iter} {runner.epoch} {batch_idx} ' + ' '.join(keys) + '\n')
            f.flush()
            os.fsync(f.fileno())
        if (runner.iter == int(os.environ.get('KILL_AFTER_ITER', -1))
                and rank == int(os.environ.get('KILL_RANK', 0))):
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


def _toy_cfg(data, epochs, batch, interval_iters, config=CONFIG):
    """The toy config (CSV, or WebDataset shards with ``WDS_CONFIG``) at 32 px with
    a 1-block, width-32 RILS."""
    cfg = Config.fromfile(config)
    cfg.model.backbone.update(
        arch=dict(embed_dims=32, num_layers=1, num_heads=2, feedforward_channels=64),
        img_size=32, patch_size=8)
    cfg.model.neck.update(num_patches=16, embed_dim=32, decoder_num_heads=2)
    cfg.model.text_encoder.update(width=32, layers=1, heads=2, context_length=16)
    cfg.model.head.update(vision_dims=32, text_dims=32, embed_dims=32)
    dataset = cfg.train_dataloader.dataset
    if config == WDS_CONFIG:  # no loading transform
        dataset.urls = str(data) + '/shards/train-{000000..000003}.tar'
        dataset.batch_size = batch
        dataset.pipeline[0].scale = 32
        dataset.pipeline[1].context_length = 16
    else:
        dataset.data_root = str(data)
        dataset.pipeline[1].scale = 32
        dataset.pipeline[2].context_length = 16
    cfg.train_dataloader.batch_size = batch
    cfg.train_cfg.max_epochs = epochs
    cfg.param_scheduler[-1].end = epochs
    cfg.default_hooks.checkpoint.update(interval=1, interval_iters=interval_iters,
                                        max_keep_ckpts=2)
    cfg.default_hooks.logger.interval = 1
    cfg.custom_hooks = [h for h in cfg.custom_hooks if h.type != 'ZeroShotClassifierHook']
    cfg.custom_hooks.append(dict(type='RecordAndKillHook'))
    cfg.custom_imports = dict(imports=['rils_mm', 'kill_helper'], allow_failed_imports=False)
    cfg.randomness = dict(seed=0)
    return cfg


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('kill')
    data = tmp / 'toy'
    generate_toy_corpus(str(data), num_train=ITERS * BATCH, num_val=16,
                        image_size=32, seed=5, shard_size=64)
    (tmp / 'kill_helper.py').write_text(HELPER)
    _toy_cfg(data, EPOCHS, BATCH, interval_iters=3).dump(str(tmp / 'toy_kill.py'))
    return tmp


def _train(tmp, work_dir, resume=False, nproc=1, config='toy_kill.py', **kill):
    """``tools/train.py`` (``nproc > 1``: under ``torchrun`` with ``--launcher
    pytorch``, gloo on CPU, as ``tools/dist_train.sh`` runs it)."""
    env = dict(os.environ, OMP_NUM_THREADS='1', **{k: str(v) for k, v in kill.items()})
    env['PYTHONPATH'] = os.pathsep.join(
        [ROOT, str(tmp)] + ([env['PYTHONPATH']] if env.get('PYTHONPATH') else []))
    args = [osp.join(ROOT, 'tools', 'train.py'), str(tmp / config), '--work-dir',
            str(work_dir), '--no-validate'] + (['--resume'] if resume else [])
    if nproc > 1:  # a free port of its own (--standalone): tests may run side by side
        cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone',
               f'--nproc_per_node={nproc}'] + args + ['--launcher', 'pytorch']
    else:
        cmd = [sys.executable] + args
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


def _history(work_dir, rank=0):
    """The batches ``rank`` trained, the latest record of each iteration winning
    (the iterations after the last checkpoint of a killed run are trained again)."""
    by_iter = {}
    with open(osp.join(work_dir, f'trained_rank{rank}.log')) as f:
        for line in f:
            it, epoch, batch_idx, *keys = line.split()
            by_iter[int(it)] = (int(epoch), int(batch_idx), keys)
    return by_iter


def _assert_bit_identical(ref_ckpt, ckpt, iters=None, optimizer=True):
    """The resumed run's final checkpoint equals the uninterrupted run's bit for bit:
    every weight and (``optimizer``) every AdamW moment; returns the resumed one."""
    a, b = load_from_local(str(ref_ckpt)), load_from_local(str(ckpt))
    if iters is not None:
        assert a['meta']['iter'] == b['meta']['iter'] == iters
    for k, v in a['state_dict'].items():
        assert torch.equal(v, b['state_dict'][k]), k
    if optimizer:
        for pid, st in a['optimizer']['state'].items():
            for k, v in st.items():
                assert torch.equal(torch.as_tensor(v), torch.as_tensor(
                    b['optimizer']['state'][pid][k])), (pid, k)
    return b


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

    _assert_bit_identical(ref_dir / 'epoch_3.pth', dir_ / 'epoch_3.pth', EPOCHS * ITERS)

    ref_hist, hist = _history(ref_dir), _history(dir_)
    assert sorted(hist) == list(range(EPOCHS * ITERS))
    assert hist == ref_hist  # the same batches in the same order
    for epoch in range(EPOCHS):
        seen = Counter(k for e, _, keys in hist.values() if e == epoch for k in keys)
        assert len(seen) == ITERS * BATCH and set(seen.values()) == {1}, epoch


# ------------------------------------------------------------ 2 gloo processes
D_EPOCHS, D_ITERS, D_BATCH = 2, 5, 4  # 2 ranks x 4 = 8 samples an iteration
BAD = '000013.jpg'  # a corrupt image: skipped, a stand-in trains in its place


@pytest.fixture(scope='module')
def dist_setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('kill_dist')
    data = tmp / 'toy'
    generate_toy_corpus(str(data), num_train=D_ITERS * D_BATCH * 2, num_val=0,
                        image_size=32, seed=6, shard_size=64)
    (data / 'train' / 'images' / BAD).write_bytes(b'\xff\xd8 not a JPEG' * 8)
    (tmp / 'kill_helper.py').write_text(HELPER)
    cfg = _toy_cfg(data, D_EPOCHS, D_BATCH, interval_iters=2)
    # Each rank its own generators (crops, masks), as the paper configs: a
    # resume that gave every rank rank 0's states would not be exact.
    cfg.randomness = dict(seed=0, diff_rank_seed=True)
    # Data-loader workers (restarted by every resume): the crops are seeded per
    # sample, so they are the uninterrupted run's too.
    cfg.train_dataloader.num_workers = 2
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    cfg.dump(str(tmp / 'toy_kill_dist.py'))
    return tmp


def _data_lines(run):
    """The per-epoch ``data:`` lines of a run's log (time stamps cut off)."""
    log = run.stdout + run.stderr
    return [line[line.index('data: '):] for line in log.splitlines() if 'data: ' in line
            and 'distinct samples used' in line]


@pytest.mark.slow
def test_two_gloo_ranks_sigkilled_then_resumed_is_bit_identical(dist_setup):
    tmp = dist_setup
    ref_dir, dir_ = tmp / 'uninterrupted', tmp / 'killed'
    train = functools.partial(_train, tmp, nproc=2, config='toy_kill_dist.py')
    ref = train(ref_dir)
    assert ref.returncode == 0, (ref.stdout + ref.stderr)[-5000:]
    ref_lines = _data_lines(ref)
    # 40 rows, one corrupt: 39 distinct samples, 1 skipped, its stand-in a repeat
    assert len(ref_lines) == D_EPOCHS and all(
        line.startswith('data: 39 distinct samples used, 1 skipped, 1 repeats')
        for line in ref_lines), ref_lines

    # Rank 0 dies half-way through writing iter_4.pth (epoch 0), then rank 1
    # dies after a random iteration of epoch 1; torchrun stops the other rank
    # each time. Both resumes start in the middle of an epoch.
    kill_iter = random.Random(3).randrange(6, 9)  # iter_6 or iter_8 is the last
    kills = [dict(KILL_WRITING='iter_4'), dict(KILL_AFTER_ITER=kill_iter, KILL_RANK=1)]
    runs = []
    for i, kill in enumerate(kills):
        run = train(dir_, resume=i > 0, **kill)
        log = run.stdout + run.stderr
        assert run.returncode != 0 and 'Signal 9 (SIGKILL)' in log, (kill, log[-5000:])
        if i == 0:
            assert not osp.exists(dir_ / 'iter_4.pth')
            assert open(dir_ / 'last_checkpoint').read().endswith('iter_2.pth')
        runs.append(run)
    last = train(dir_, resume=True)
    log = last.stdout + last.stderr
    assert last.returncode == 0, log[-5000:]
    assert 'Continuing epoch 2 at batch' in log
    assert 'Continuing epoch 1 at batch 3 of 5' in runs[1].stdout + runs[1].stderr

    b = _assert_bit_identical(ref_dir / f'epoch_{D_EPOCHS}.pth',
                              dir_ / f'epoch_{D_EPOCHS}.pth', D_EPOCHS * D_ITERS)
    assert b['rng_state']['world_size'] == 2
    # The skip counts of each resumed epoch are the uninterrupted ones (both
    # ranks' counts of the epoch's first part were restored).
    assert _data_lines(runs[1]) == ref_lines[:1] and _data_lines(last) == ref_lines[1:]

    for rank in range(2):
        assert _history(dir_, rank) == _history(ref_dir, rank)  # same batches, same order
        assert sorted(_history(dir_, rank)) == list(range(D_EPOCHS * D_ITERS))
    for epoch in range(D_EPOCHS):
        keys = [k for rank in range(2) for e, _, ks in _history(dir_, rank).values()
                if e == epoch for k in ks]
        distinct = Counter(k for k in keys if not k.endswith('*'))
        assert len(keys) == D_ITERS * D_BATCH * 2
        # every good sample exactly once an epoch; the corrupt one never, a
        # stand-in (another sample, marked *) trained in its place
        assert set(distinct.values()) == {1} and len(distinct) == D_ITERS * D_BATCH * 2 - 1
        assert BAD not in distinct and sum(k.endswith('*') for k in keys) == 1


@pytest.mark.slow
def test_two_gloo_ranks_on_webdataset_shards_sigkilled_then_resumed(tmp_path):
    """The same with the WebDataset toy config: 4 shards of 10 pairs, one per rank
    and worker; each worker replays its stream up to the resumed position (killed
    once, half-way through writing a checkpoint)."""
    data = tmp_path / 'toy'
    generate_toy_corpus(str(data), num_train=40, num_val=0, image_size=32, seed=7,
                        shard_size=10)
    (tmp_path / 'kill_helper.py').write_text(HELPER)
    epochs, batch = 2, 5  # 2 ranks x 5 = 10 pairs an iteration, 4 an epoch
    cfg = _toy_cfg(data, epochs, batch, interval_iters=1, config=WDS_CONFIG)
    cfg.train_dataloader.dataset.num_samples = 40
    cfg.train_dataloader.num_workers = 2
    cfg.randomness = dict(seed=0, diff_rank_seed=True)
    cfg.dump(str(tmp_path / 'toy_kill_wds.py'))
    train = functools.partial(_train, tmp_path, nproc=2, config='toy_kill_wds.py')
    ref_dir, dir_ = tmp_path / 'uninterrupted', tmp_path / 'killed'
    ref = train(ref_dir)
    assert ref.returncode == 0, (ref.stdout + ref.stderr)[-5000:]
    ref_lines = _data_lines(ref)
    assert ref_lines == ['data: 40 distinct samples used, 0 skipped, 0 repeats (0.0% bad) '
                         'this epoch'] * epochs

    # Rank 0 dies writing iter_3.pth; the resume continues at batch 3 of epoch 1
    # (one kill here, to keep the test short; the CSV test above kills twice).
    run = train(dir_, KILL_WRITING='iter_3')
    log = run.stdout + run.stderr
    assert run.returncode != 0 and 'Signal 9 (SIGKILL)' in log, log[-5000:]
    assert open(dir_ / 'last_checkpoint').read().endswith('iter_2.pth')
    last = train(dir_, resume=True)
    log = last.stdout + last.stderr
    assert last.returncode == 0, log[-5000:]
    assert 'Continuing epoch 1 at batch 3 of 4' in log

    _assert_bit_identical(ref_dir / f'epoch_{epochs}.pth', dir_ / f'epoch_{epochs}.pth',
                          optimizer=False)
    assert _data_lines(last) == ref_lines
    for rank in range(2):
        assert _history(dir_, rank) == _history(ref_dir, rank)
        assert sorted(_history(dir_, rank)) == list(range(epochs * 4))
    for epoch in range(epochs):
        seen = Counter(k for rank in range(2) for e, _, ks in _history(dir_, rank).values()
                       if e == epoch for k in ks)
        assert len(seen) == 40 and set(seen.values()) == {1}, epoch
