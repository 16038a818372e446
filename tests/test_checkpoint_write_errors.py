"""A checkpoint write that fails (a full disk, an I/O error, a read-only folder) at
any stage leaves the previous checkpoint and its pointer loadable, removes its
temporary files, logs the stage, the path and the errno, and then stops training
(``on_write_error='raise'``) or goes on and writes the next checkpoint (``'retry'``).

The faults are injected by patching the os / file functions each stage calls; the
second of three epoch checkpoints fails (4 iterations an epoch)."""
import errno
import logging
import os
import os.path as osp
import re

import pytest
from mmengine.fileio.backends.local_backend import LocalBackend
from test_atomic_checkpoint import _pointer, _pth, _runner

from rils_mm.engine.hooks import AtomicCheckpointHook, CheckpointWriteError
from rils_mm.utils.checkpoint import checkpoint_problem, load_from_local

FAILING = 'epoch_2.pth'


def _fd_path(fd):
    return os.readlink(f'/proc/self/fd/{fd}')


def _oserror(code, path):
    return OSError(code, os.strerror(code), path)


def _inject(stage, code, work_dir, monkeypatch):
    """Make ``stage`` of the write of ``FAILING`` fail once with ``code``; the path
    the failing operation acts on."""
    work_dir = str(work_dir)
    target = osp.join(work_dir, FAILING)
    fired = []

    def once(path):
        if fired:
            return False
        fired.append(path)
        return True

    if stage == 'temporary file':  # the disk fills up half-way through the data
        put = LocalBackend.put

        def put_half(self, obj, filepath):
            if str(filepath) == target + '.tmp' and once(filepath):
                with open(filepath, 'wb') as f:
                    f.write(obj[:len(obj) // 2])
                raise _oserror(code, filepath)
            return put(self, obj, filepath)

        monkeypatch.setattr(LocalBackend, 'put', put_half)
        return target + '.tmp'
    real_fsync, real_replace, real_remove = os.fsync, os.replace, os.remove
    if stage in ('fsync', 'folder fsync', 'pointer'):
        wanted = {'fsync': target + '.tmp', 'folder fsync': work_dir,
                  'pointer': osp.join(work_dir, 'last_checkpoint.tmp')}[stage]

        def fsync(fd):
            if osp.realpath(_fd_path(fd)) == osp.realpath(wanted):
                if stage == 'folder fsync':  # right after the rename, not the pointer's
                    ready = osp.exists(target) and _pointer(work_dir) != FAILING
                else:  # the tmp of the checkpoint, or the pointer's naming it
                    ready = stage == 'fsync' or open(wanted).read() == target
                if ready and once(wanted):
                    raise _oserror(code, wanted)
            return real_fsync(fd)

        monkeypatch.setattr(os, 'fsync', fsync)
        return osp.join(work_dir, 'last_checkpoint') if stage == 'pointer' else wanted
    if stage == 'rename':
        def replace(src, dst):
            if str(dst) == target and once(dst):
                raise _oserror(code, dst)
            return real_replace(src, dst)

        monkeypatch.setattr(os, 'replace', replace)
        return target
    assert stage == 'pruning'
    old = osp.join(work_dir, 'epoch_1.pth')

    def remove(path):
        if str(path) == old and once(path):
            raise _oserror(code, path)
        return real_remove(path)

    monkeypatch.setattr(os, 'remove', remove)
    return old


def _errors(runner):
    records = []
    handler = logging.Handler(level=logging.ERROR)
    handler.emit = records.append
    runner.logger.addHandler(handler)
    return records


CASES = [('temporary file', errno.ENOSPC), ('fsync', errno.EIO), ('rename', errno.EROFS),
         ('folder fsync', errno.EIO), ('pointer', errno.ENOSPC), ('pruning', errno.EROFS)]


@pytest.mark.slow  # a Runner (about a second)
@pytest.mark.parametrize('policy', ['raise', 'retry'])
@pytest.mark.parametrize('stage,code', CASES, ids=[s for s, _ in CASES])
def test_a_failed_stage_keeps_the_previous_checkpoint(tmp_path, monkeypatch, stage, code,
                                                      policy):
    keep = 1 if stage == 'pruning' else 2
    runner = _runner(tmp_path, f'werr_{stage}_{policy}', interval=1, max_keep_ckpts=keep,
                     on_write_error=policy)
    path = _inject(stage, code, tmp_path, monkeypatch)
    records = _errors(runner)
    if policy == 'raise':
        with pytest.raises(CheckpointWriteError) as info:
            runner.train()
        err = info.value
        assert (err.stage, err.path, err.errno) == (stage, path, code)
        assert runner.epoch == 1  # stopped at the end of epoch 2: it was not written
    else:
        runner.train()  # goes on; epoch 3 is written
        assert runner.epoch == 3
    assert not any(n.endswith('.tmp') for n in os.listdir(tmp_path)), os.listdir(tmp_path)
    # The log names the stage, the path and the errno.
    logged = [r.getMessage() for r in records]
    assert len(logged) == 1, logged
    assert f'stage "{stage}" ({path}): [Errno {code} {errno.errorcode[code]}]' in logged[0]
    assert f"on_write_error='{policy}'" in logged[0]

    if stage == 'pruning':  # epoch 2 and its pointer were complete; epoch 1 stayed
        if policy == 'raise':
            assert _pth(tmp_path) == ['epoch_1.pth', 'epoch_2.pth']
            assert _pointer(tmp_path) == 'epoch_2.pth'
        else:  # the next save removed what was left
            assert _pth(tmp_path) == ['epoch_3.pth'] and _pointer(tmp_path) == 'epoch_3.pth'
        return
    if policy == 'raise':
        assert _pth(tmp_path) == ['epoch_1.pth']
        assert _pointer(tmp_path) == 'epoch_1.pth'
        ckpt = load_from_local(str(tmp_path / 'epoch_1.pth'))
        assert ckpt['meta']['epoch'] == 1 and ckpt['meta']['iter'] == 4
        assert ckpt['message_hub']['runtime_info']['last_ckpt'] == str(tmp_path / 'epoch_1.pth')
        # and the run resumes from it
        resumed = _runner(tmp_path, f'werr_{stage}_resumed', interval=1, max_keep_ckpts=keep)
        resumed._resume = True  # noqa: SLF001 (what cfg.resume=True sets)
        resumed.train()
        assert resumed.iter == 12 and _pth(tmp_path) == ['epoch_2.pth', 'epoch_3.pth']
    else:
        assert _pth(tmp_path) == ['epoch_1.pth', 'epoch_3.pth']
        assert _pointer(tmp_path) == 'epoch_3.pth'
        assert checkpoint_problem(str(tmp_path / 'epoch_1.pth')) is None
        ckpt = load_from_local(str(tmp_path / 'epoch_3.pth'))
        # the failed epoch 2 is not among the files the run keeps
        assert ckpt['message_hub']['runtime_info']['keep_ckpt_files'] == ['epoch_1.pth',
                                                                          'epoch_3.pth']


@pytest.mark.slow  # a Runner
def test_retry_counts_failures_in_a_row(tmp_path, monkeypatch):
    runner = _runner(tmp_path, 'werr_full', max_epochs=3, interval=1,
                     on_write_error='retry')
    put = LocalBackend.put

    def full(self, obj, filepath):
        if osp.basename(str(filepath)) != 'epoch_1.pth.tmp':
            raise _oserror(errno.ENOSPC, filepath)
        return put(self, obj, filepath)

    monkeypatch.setattr(LocalBackend, 'put', full)
    records = _errors(runner)
    runner.train()
    logged = [r.getMessage() for r in records]
    assert [re.search(r"'retry', (\d+) failed write\(s\) in a row", m).group(1)
            for m in logged] == ['1', '2']
    assert _pth(tmp_path) == ['epoch_1.pth'] and _pointer(tmp_path) == 'epoch_1.pth'


def test_on_write_error_is_checked():
    with pytest.raises(ValueError, match="on_write_error must be 'raise' or 'retry'"):
        AtomicCheckpointHook(on_write_error='ignore')
