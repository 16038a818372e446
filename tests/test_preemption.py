"""Preemption: on SIGUSR1 / SIGTERM the run finishes the iteration, writes a checkpoint
on every rank's behalf and exits 75 ("requeue me"); ``--resume`` then trains what the
uninterrupted run would have, bit for bit. In-process (a Runner) for where it stops,
end to end (``tools/train.py``, 1 process and 2 gloo ranks under ``torchrun`` with
data-loader workers) for the exact resume, and ``tools/slurm_train.sh``'s requeue
with stand-ins for ``srun`` / ``scontrol``."""
import functools
import os
import os.path as osp
import random
import signal
import subprocess
from collections import Counter

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner
from test_kill_resume import HELPER, _assert_bit_identical, _history, _toy_cfg, _train

from rils_mm.engine.hooks import REQUEUE_EXIT_CODE, Preempted, PreemptionHook
from rils_mm.testing import ToyData, ToyModel, generate_toy_corpus
from rils_mm.utils.checkpoint import checkpoint_problem, load_from_local

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.fixture(autouse=True)
def _keep_signal_handlers():
    saved = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGTERM)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


class _SignalAt(Hook):
    """Sends ``sig`` to this process while iteration ``at`` runs."""

    def __init__(self, at, sig=signal.SIGUSR1):
        self.at, self.sig = at, sig

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter == self.at:
            os.kill(os.getpid(), self.sig)


def _runner(work_dir, name, signal_at=-1, resume=False, epochs=3):
    torch.manual_seed(0)
    return Runner(
        model=ToyModel(noise=True), work_dir=str(work_dir), experiment_name=name,
        train_dataloader=dict(dataset=ToyData(8, with_index=True),
                              sampler=dict(type='ResumableSampler', shuffle=True),
                              collate_fn=dict(type='pseudo_collate'), batch_size=2,
                              num_workers=0),  # 4 iterations an epoch
        optim_wrapper=dict(type='FiniteStepOptimWrapper', optimizer=dict(type='AdamW', lr=0.1)),
        train_cfg=dict(type='ResumableEpochBasedTrainLoop', max_epochs=epochs),
        default_hooks=dict(checkpoint=dict(type='AtomicCheckpointHook', interval=1,
                                           interval_iters=3),
                           preemption=dict(type='PreemptionHook')),
        custom_hooks=[dict(type='RNGStateHook'), _SignalAt(signal_at)],
        randomness=dict(seed=0), resume=resume, default_scope='mmpretrain')


def _marker(work_dir):
    return open(osp.join(work_dir, 'preempted')).read().strip()


@pytest.mark.slow  # Runners (a second each)
def test_in_process_stop_points_and_exact_resume(tmp_path):
    ref = _runner(tmp_path / 'ref', 'pre_ref')
    ref.train()
    ref_weights = {k: v.clone() for k, v in ref.model.state_dict().items()}

    # Mid-epoch (iteration 5 of 12): iter_5.pth, the exit status 75.
    run = _runner(tmp_path / 'a', 'pre_mid', signal_at=4)
    with pytest.raises(Preempted) as stop:
        run.train()
    assert stop.value.code == REQUEUE_EXIT_CODE == 75
    assert run.iter == 4 and _marker(tmp_path / 'a') == str(tmp_path / 'a' / 'iter_5.pth')
    meta = load_from_local(str(tmp_path / 'a' / 'iter_5.pth'))['meta']
    assert (meta['epoch'], meta['iter']) == (1, 5)
    # A signal in the iteration of a regular mid-epoch checkpoint writes no second one.
    run = _runner(tmp_path / 'b', 'pre_interval', signal_at=2)
    with pytest.raises(Preempted):
        run.train()
    assert sorted(n for n in os.listdir(tmp_path / 'b') if '.pth' in n) == ['iter_3.pth']
    assert _marker(tmp_path / 'b') == str(tmp_path / 'b' / 'iter_3.pth')
    # In an epoch's last iteration: the epoch is finished, epoch_2.pth is the checkpoint.
    run = _runner(tmp_path / 'c', 'pre_epoch_end', signal_at=7)
    with pytest.raises(Preempted):
        run.train()
    assert _marker(tmp_path / 'c') == str(tmp_path / 'c' / 'epoch_2.pth')
    # In the last iteration of training: nothing to requeue, the run ends normally.
    run = _runner(tmp_path / 'd', 'pre_last', signal_at=11)
    run.train()
    assert run.iter == 12 and not osp.exists(tmp_path / 'd' / 'preempted')
    hook = next(h for h in run.hooks if isinstance(h, PreemptionHook))
    assert signal.getsignal(signal.SIGUSR1) != hook._on_signal  # handlers put back

    # The resumes of a and c end with the uninterrupted run's weights; the marker goes.
    for sub in ('a', 'c'):
        resumed = _runner(tmp_path / sub, f'pre_resume_{sub}', resume=True)
        resumed.train()
        assert resumed.iter == 12 and not osp.exists(tmp_path / sub / 'preempted')
        for k, v in resumed.model.state_dict().items():
            assert torch.equal(v, ref_weights[k]), (sub, k)


@pytest.mark.slow  # a Runner
def test_off_without_an_atomic_checkpoint_hook(tmp_path):
    class Seen(Hook):
        handlers = []

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            self.handlers.append(signal.getsignal(signal.SIGUSR1))

    seen = Seen()
    runner = Runner(
        model=ToyModel(), work_dir=str(tmp_path), experiment_name='pre_off',
        train_dataloader=dict(dataset=ToyData(4), sampler=dict(type='DefaultSampler'),
                              collate_fn=dict(type='default_collate'), batch_size=2),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        train_cfg=dict(by_epoch=True, max_epochs=1),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1),
                           preemption=dict(type='PreemptionHook')),
        custom_hooks=[seen], default_scope='mmpretrain')
    before = signal.getsignal(signal.SIGUSR1)
    runner.train()  # a config that replaced the checkpoint hook still trains
    assert seen.handlers == [before, before]  # no handler while training
    assert osp.isfile(tmp_path / 'epoch_1.pth')


def test_options_are_checked():
    with pytest.raises(ValueError, match="unknown signal 'SIGNOPE'"):
        PreemptionHook(signals=['SIGUSR1', 'SIGNOPE'])
    with pytest.raises(ValueError, match='exit_code must be an int in 1..127'):
        PreemptionHook(exit_code=143)
    assert PreemptionHook(signals=[signal.SIGUSR2]).signals == [signal.SIGUSR2]


# ------------------------------------------------------------------ end to end
# Added to the kill tests' helper: a signal while iteration SIGNAL_AT_ITER runs (to
# SIGNAL_RANK and, with SIGNAL_WORKERS, its data-loader workers, as SLURM signals
# every process of a step), and a second signal half-way through writing a file
# whose name starts with SIGNAL_WRITING (the write then takes 0.5 s longer).
SIGNAL_HELPER = HELPER + r'''
import time

_put_before = LocalBackend.put


def _children(pid):
    kids = []
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                stat = open(f'/proc/{entry}/stat').read()
            except OSError:
                continue
            if int(stat.rsplit(')', 1)[1].split()[1]) == pid:
                kids.append(int(entry))
    return kids


@HOOKS.register_module()
class SignalHook(Hook):

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if (runner.iter == int(os.environ.get('SIGNAL_AT_ITER', -1))
                and get_rank() == int(os.environ.get('SIGNAL_RANK', 0))):
            workers = _children(os.getpid()) if os.environ.get('SIGNAL_WORKERS') else []
            assert not os.environ.get('SIGNAL_WORKERS') or workers
            for pid in workers + [os.getpid()]:
                os.kill(pid, signal.SIGUSR1)


def _put_signalled(self, obj, filepath):
    if os.path.basename(str(filepath)).startswith(os.environ.get('SIGNAL_WRITING', '-')):
        with open(filepath, 'wb') as f:
            f.write(obj[:len(obj) // 2])
            f.flush()
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.5)
            f.write(obj[len(obj) // 2:])
        return
    return _put_before(self, obj, filepath)


LocalBackend.put = _put_signalled
'''


def _signal_cfg(tmp, data, name, epochs, batch, interval_iters, **extra):
    (tmp / 'kill_helper.py').write_text(SIGNAL_HELPER)
    cfg = _toy_cfg(data, epochs, batch, interval_iters=interval_iters)
    # Record each iteration before the preemption hook (LOWEST) stops the run.
    cfg.custom_hooks[-1]['priority'] = 'VERY_LOW'
    cfg.custom_hooks.append(dict(type='SignalHook'))
    cfg.merge_from_dict(extra)
    cfg.dump(str(tmp / name))


def _every_sample_once(dirs_ranks, epochs, per_epoch):
    for epoch in range(epochs):
        seen = Counter(k for work_dir, rank in dirs_ranks
                       for e, _, ks in _history(work_dir, rank).values() if e == epoch
                       for k in ks)
        assert len(seen) == per_epoch and set(seen.values()) == {1}, epoch


EPOCHS, ITERS, BATCH = 2, 10, 4


@pytest.mark.slow
def test_signal_then_resume_is_bit_identical_and_a_second_signal_is_ignored(tmp_path):
    data = tmp_path / 'toy'
    generate_toy_corpus(str(data), num_train=ITERS * BATCH, num_val=0, image_size=32,
                        seed=5, shard_size=64)
    _signal_cfg(tmp_path, data, 'toy_signal.py', EPOCHS, BATCH, interval_iters=3)
    train = functools.partial(_train, tmp_path, config='toy_signal.py')
    ref_dir, dir_ = tmp_path / 'uninterrupted', tmp_path / 'preempted'
    ref = train(ref_dir)
    assert ref.returncode == 0, ref.stderr[-3000:]

    # Not an iteration with a regular checkpoint, so the preemption writes one.
    at = random.Random(21).choice([k for k in range(2, 18) if (k + 1) % 3 and k != 9])
    name = f'iter_{at + 1}.pth'
    run = train(dir_, SIGNAL_AT_ITER=at, SIGNAL_WRITING=name)
    log = run.stdout + run.stderr
    assert run.returncode == REQUEUE_EXIT_CODE, log[-3000:]
    assert 'Preemption (SIGUSR1 on rank 0 of 1)' in log
    assert '1 more signal(s) arrived during the write; ignored.' in log
    # The write went on to the end: a complete checkpoint, named by the pointer.
    assert checkpoint_problem(str(dir_ / name)) is None
    assert open(dir_ / 'last_checkpoint').read() == str(dir_ / name) == _marker(dir_)
    assert not [n for n in os.listdir(dir_) if n.endswith('.tmp')]
    assert max(_history(dir_)) == at  # stopped right after the signalled iteration

    _resume_equals_uninterrupted(train, ref_dir, dir_, at, ITERS, ranks=1)


D_ITERS = 5  # 2 ranks x 4 samples an iteration, 40 samples


@pytest.mark.slow
def test_two_gloo_ranks_with_workers_stop_together_on_one_ranks_signal(tmp_path):
    data = tmp_path / 'toy'
    generate_toy_corpus(str(data), num_train=D_ITERS * BATCH * 2, num_val=0,
                        image_size=32, seed=6, shard_size=64)
    _signal_cfg(tmp_path, data, 'toy_signal_dist.py', EPOCHS, BATCH, interval_iters=2,
                randomness=dict(seed=0, diff_rank_seed=True),
                train_dataloader=dict(num_workers=2))
    train = functools.partial(_train, tmp_path, nproc=2, config='toy_signal_dist.py')
    ref_dir, dir_ = tmp_path / 'uninterrupted', tmp_path / 'preempted'
    ref = train(ref_dir)
    assert ref.returncode == 0, (ref.stdout + ref.stderr)[-5000:]

    # Rank 1 and its 2 workers get SIGUSR1 in a mid-epoch iteration; rank 0 nothing.
    at = random.Random(4).choice([2, 6, 8])
    run = train(dir_, SIGNAL_AT_ITER=at, SIGNAL_RANK=1, SIGNAL_WORKERS=1)
    log = run.stdout + run.stderr
    # torchrun reports each rank's status (and exits 1 itself)
    assert run.returncode != 0 and log.count(f'exitcode  : {REQUEUE_EXIT_CODE}') >= 1, \
        log[-5000:]
    assert 'killed by signal' not in log  # the workers ignored theirs
    name = f'iter_{at + 1}.pth'
    assert _marker(dir_) == str(dir_ / name) == open(dir_ / 'last_checkpoint').read()
    assert load_from_local(str(dir_ / name))['rng_state']['world_size'] == 2
    for rank in range(2):  # both stopped after the same iteration
        assert max(_history(dir_, rank)) == at

    _resume_equals_uninterrupted(train, ref_dir, dir_, at, D_ITERS, ranks=2)


# ------------------------------------------------------------- slurm_train.sh
FAKE_SRUN = r'''#!/usr/bin/env bash
# Records its arguments; exits with the next status of $FAKE/statuses, and leaves the
# marker of a preempted run when that status is "marker".
echo "$*" >> "$FAKE/calls"
status=$(head -n 1 "$FAKE/statuses"); sed -i 1d "$FAKE/statuses"
if [[ $status == marker ]]; then touch "$WORK_DIR/preempted"; exit 137; fi
exit "$status"
'''


@pytest.mark.slow  # subprocesses (bash, a second)
@pytest.mark.parametrize('batch_job', [False, True], ids=['login-shell', 'sbatch'])
def test_slurm_train_requeues_on_the_requeue_status(tmp_path, batch_job):
    bin_ = tmp_path / 'bin'
    bin_.mkdir()
    (bin_ / 'srun').write_text(FAKE_SRUN)
    (bin_ / 'scontrol').write_text('#!/usr/bin/env bash\necho "$*" >> "$FAKE/scontrol"\n')
    for f in bin_.iterdir():
        f.chmod(0o755)
    work = tmp_path / 'work'
    work.mkdir()
    env = dict(os.environ, PATH=f'{bin_}:{os.environ["PATH"]}', FAKE=str(tmp_path),
               WORK_DIR=str(work), PYTHON='python', GPUS='2', GPUS_PER_NODE='2')
    env.pop('SLURM_JOB_ID', None)
    env.pop('SLURM_RESTART_COUNT', None)
    cmd = ['bash', osp.join(ROOT, 'tools', 'slurm_train.sh'), 'part', 'job', 'cfg.py',
           str(work), '--amp']

    def calls():
        return open(tmp_path / 'calls').read().splitlines()

    if not batch_job:  # 75, then preempted with srun reporting 137, then done
        (tmp_path / 'statuses').write_text('75\nmarker\n0\n')
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        c = calls()
        assert len(c) == 3 and '--signal=USR1@120' in c[0]
        assert c[0].endswith('--launcher=slurm --amp')
        assert all(line.endswith('--launcher=slurm --amp --resume') for line in c[1:])
        (tmp_path / 'statuses').write_text('1\n')  # a failure is not requeued
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 1 and len(calls()) == 4
        return
    env['SLURM_JOB_ID'] = '4242'
    (tmp_path / 'statuses').write_text('75\n')
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert open(tmp_path / 'scontrol').read() == 'requeue 4242\n'
    assert not calls()[0].endswith('--resume')
    # The requeued job runs the script again: a restart resumes.
    env['SLURM_RESTART_COUNT'] = '1'
    (tmp_path / 'statuses').write_text('0\n')
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and calls()[1].endswith('--amp --resume'), out.stderr


def _resume_equals_uninterrupted(train, ref_dir, dir_, at, iters, ranks):
    """Resume the signalled run: it continues after iteration ``at`` and ends at
    the uninterrupted run's weights, history and samples, rank by rank."""
    last = train(dir_, resume=True)
    log = last.stdout + last.stderr
    assert last.returncode == 0, log[-5000:]
    epoch, batch = divmod(at + 1, iters)
    assert f'Continuing epoch {epoch + 1} at batch {batch + 1} of {iters}' in log
    _assert_bit_identical(ref_dir / f'epoch_{EPOCHS}.pth', dir_ / f'epoch_{EPOCHS}.pth',
                          EPOCHS * iters)
    for rank in range(ranks):
        assert _history(dir_, rank) == _history(ref_dir, rank)
    _every_sample_once([(dir_, r) for r in range(ranks)], EPOCHS, iters * BATCH * ranks)
