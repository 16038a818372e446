"""Crash-safe checkpoints: atomic writes, pointer last, pruning after; a failed
write (full disk, I/O error, read-only folder) changes nothing and is reported."""
import errno as errno_codes
import os
import os.path as osp
from contextlib import contextmanager
from typing import List, Optional

import torch
from mmengine.dist import all_reduce, is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook
from mmpretrain.registry import HOOKS

from rils_mm.utils.checkpoint import atomic_write_text, fsync_path

from ..resume import gather_rank_states

__all__ = ['AtomicCheckpointHook', 'CheckpointWriteError', 'gather_rank_states']

#: Suffix of a checkpoint being written; renamed to its final name when complete.
TMP_SUFFIX = '.tmp'
#: The write stages, in order (named in :class:`CheckpointWriteError` and the log).
STAGES = ('temporary file', 'fsync', 'rename', 'folder fsync', 'pointer', 'pruning')
_OK, _COMMITTED, _FAILED = 0, 1, 2  # outcomes of a write, worst last


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (``on_write_error='raise'``).

    Attributes:
        stage (str): One of :data:`STAGES`.
        path (str): The file or folder the failed operation acted on.
        errno (int | None): The ``OSError``'s errno (``errno.ENOSPC``, ...).
    """

    def __init__(self, stage: str, path: str, err: Optional[OSError] = None,
                 message: Optional[str] = None) -> None:
        self.stage, self.path = stage, path
        self.errno = getattr(err, 'errno', None)
        if message is None:
            code = errno_codes.errorcode.get(self.errno, '?') if self.errno else '?'
            reason = getattr(err, 'strerror', None) or str(err)
            message = (f'checkpoint write failed at stage "{stage}" ({path}): '
                       f'[Errno {self.errno} {code}] {reason}')
        super().__init__(message)


@contextmanager
def _stage(name: str, path: str):
    try:
        yield
    except OSError as err:
        raise CheckpointWriteError(name, path, err) from err


def _remove_quietly(path: str) -> Optional[str]:
    """Remove ``path`` if it exists; why not, if that fails."""
    try:
        if osp.lexists(path):
            os.remove(path)
    except OSError as err:
        return f'{path}: {err}'
    return None


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """:class:`mmengine.hooks.CheckpointHook` whose checkpoints survive kills.

    A kill (preemption, OOM killer, node failure) at any moment leaves the
    previous checkpoint and the ``last_checkpoint`` pointer loadable:

    1. the checkpoint is written to ``<name>.tmp`` in the same folder, flushed
       and ``fsync``-ed, then renamed to ``<name>`` (``os.replace`` is atomic
       on POSIX file systems) and the folder is ``fsync``-ed;
    2. only then is ``last_checkpoint`` rewritten, itself atomically;
    3. only then are checkpoints beyond ``max_keep_ckpts`` removed (mmengine's
       hook removes the oldest one *before* writing the new one).

    A write that fails with an ``OSError`` (``ENOSPC``, ``EIO``, ``EROFS``,
    ``EACCES``) at any stage of :data:`STAGES` leaves the previous checkpoint
    and ``last_checkpoint`` as they were: the temporary files (and a renamed
    checkpoint the pointer does not name yet) are removed, and the error is
    logged with the stage, the path and the errno. Then ``on_write_error``
    decides: ``'raise'`` stops training on every rank with a
    :class:`CheckpointWriteError`; ``'retry'`` keeps training and writes the
    next checkpoint at the next interval. A failed pruning (the new checkpoint
    and pointer are then complete) is reported the same way, and the files
    left over are removed at the next save.

    Left-over ``*.tmp`` files of a killed write are removed when training
    starts. Besides the per-epoch (or per-``interval`` iteration) checkpoints
    of the parent, ``interval_iters`` adds mid-epoch checkpoints
    ``iter_<n>.pth`` every ``interval_iters`` iterations of an epoch-based run
    (their meta holds the unfinished epoch and the iteration, which is what
    :class:`~rils_mm.engine.loops.ResumableEpochBasedTrainLoop` needs to
    continue at the next unseen batch). Both kinds share ``max_keep_ckpts``.
    :meth:`save_after_iter` / :meth:`save_after_epoch` write one now (the
    :class:`~rils_mm.engine.hooks.PreemptionHook` does on a signal).

    Non-local ``out_dir`` back-ends (``s3://`` ...) have no rename; there the
    parent's behaviour is used.

    Per-rank state: mmengine's ``Runner.save_checkpoint`` (and with it the
    ``before_save_checkpoint`` hooks) runs on rank 0 only, so before every save
    :func:`~rils_mm.engine.resume.gather_rank_states` runs on **all** ranks (a
    collective, in hook order): the per-rank participants of the resume
    contract (:class:`~rils_mm.engine.resume.RankStateHook`:
    :class:`~rils_mm.engine.hooks.RNGStateHook`,
    :class:`~rils_mm.engine.hooks.DataSkipCounterHook`) collect every rank's
    state, and write it from ``before_save_checkpoint``. After the write the
    ranks agree on its outcome (one small all-reduce), so all of them stop or
    go on together.

    Args:
        interval_iters (int): Mid-epoch checkpoint period in iterations when
            ``by_epoch=True``; -1 disables them. Defaults to -1.
        iter_filename_tmpl (str): File name of mid-epoch checkpoints.
            Defaults to ``'iter_{}.pth'``.
        on_write_error (str): ``'raise'`` or ``'retry'`` (see above).
            Defaults to ``'raise'``.
        **kwargs: see :class:`mmengine.hooks.CheckpointHook`.
    """

    def __init__(self,
                 interval_iters: int = -1,
                 iter_filename_tmpl: str = 'iter_{}.pth',
                 on_write_error: str = 'raise',
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if not isinstance(interval_iters, int) or interval_iters == 0 or \
                interval_iters < -1:
            raise ValueError('interval_iters must be a positive int or -1, '
                             f'got {interval_iters!r}')
        if on_write_error not in ('raise', 'retry'):
            raise ValueError("AtomicCheckpointHook: on_write_error must be 'raise' or "
                             f"'retry', got {on_write_error!r}")
        self.interval_iters = interval_iters
        self.iter_filename_tmpl = iter_filename_tmpl
        self.on_write_error = on_write_error
        self.keep_ckpt_files: List[str] = []
        #: ``meta.iter`` of the last checkpoint written completely (-1: none yet).
        self.saved_iter = -1
        #: Consecutive failed writes (``on_write_error='retry'``).
        self.failed_writes = 0
        self._prune_pending: List[str] = []

    def _is_local(self) -> bool:
        return isinstance(self.file_backend, LocalBackend)

    def before_train(self, runner) -> None:
        """Set up as the parent does, restore the kept files, drop stale tmps."""
        super().before_train(runner)
        self.keep_ckpt_files = list(
            runner.message_hub.get_info('keep_ckpt_files', []) or [])
        if is_main_process() and self._is_local() and osp.isdir(self.out_dir):
            for name in os.listdir(self.out_dir):
                if name.endswith('.pth' + TMP_SUFFIX):
                    os.remove(osp.join(self.out_dir, name))
                    runner.logger.warning(
                        f'Removed the incomplete checkpoint {name} of an '
                        'interrupted write.')

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs=None) -> None:
        """Parent's iteration checkpoints, plus mid-epoch ones."""
        super().after_train_iter(runner, batch_idx, data_batch, outputs)
        if not self.by_epoch or self.interval_iters <= 0:
            return
        if not self.every_n_train_iters(runner, self.interval_iters):
            return
        if self.end_of_epoch(runner.train_loop.dataloader, batch_idx):
            return  # the epoch checkpoint follows
        runner.logger.info(
            f'Saving mid-epoch checkpoint at {runner.iter + 1} iterations')
        self.save_after_iter(runner)

    # ------------------------------------------------------------ saving now
    def save_after_iter(self, runner) -> bool:
        """Write the checkpoint of the state after the current iteration (call
        from ``after_train_iter`` on every rank, not after an epoch's last
        iteration when ``by_epoch``): ``iter_<n>.pth``, resumable in the middle
        of the epoch. Nothing is written if it was already. ``True`` if the
        checkpoint is complete."""
        step = runner.iter + 1
        if self.saved_iter != step:
            meta = dict(epoch=runner.epoch, iter=step)
            tmpl = self.iter_filename_tmpl if self.by_epoch else None
            self._save_checkpoint_with_step(runner, step, meta=meta, filename_tmpl=tmpl)
        return self.saved_iter == step

    def save_after_epoch(self, runner) -> bool:
        """Write the end-of-epoch checkpoint ``epoch_<n>.pth`` (call from
        ``after_train_epoch`` on every rank) unless it was already; ``True`` if
        it is complete."""
        if self.saved_iter != runner.iter:
            self._save_checkpoint_with_step(
                runner, runner.epoch + 1, meta=dict(epoch=runner.epoch + 1, iter=runner.iter))
        return self.saved_iter == runner.iter

    # --------------------------------------------------------------- writing
    def _save_checkpoint_with_step(self,
                                   runner,
                                   step,
                                   meta,
                                   filename_tmpl: Optional[str] = None):
        """Write atomically, then update the pointer, then prune."""
        gather_rank_states(runner)
        if not self._is_local():
            super()._save_checkpoint_with_step(runner, step, meta)
            self.saved_iter = meta['iter']
            return
        name = (filename_tmpl or self.filename_tmpl).format(step)
        final = osp.join(self.out_dir, name)
        keep = [n for n in self.keep_ckpt_files if n != name] + [name]
        prune = [n for n in self._prune_pending if n != name]
        if self.max_keep_ckpts > 0 and len(keep) > self.max_keep_ckpts:
            prune += keep[:-self.max_keep_ckpts]
            keep = keep[-self.max_keep_ckpts:]
        hub = runner.message_hub
        before = (self.last_ckpt, hub.get_info('last_ckpt'), hub.get_info('keep_ckpt_files'))
        # Recorded before saving so that the checkpoint itself holds them.
        self.last_ckpt = final
        hub.update_info('last_ckpt', final)
        hub.update_info('keep_ckpt_files', keep)

        error, left = None, []
        try:
            self._write(runner, name, meta)
        except CheckpointWriteError as err:
            error = err
        # After a failure past the pointer's rename the checkpoint is in all the same.
        committed = error is None or self._pointer_names(
            osp.join(runner.work_dir, 'last_checkpoint'), final)
        if committed and is_main_process():
            left = self._prune(prune)
            if error is None and left:
                error = CheckpointWriteError('pruning', *left[0])
                if len(left) > 1:
                    error.args = (error.args[0] + ' (also ' + ', '.join(
                        path for path, _ in left[1:]) + ')', )
        outcome = _OK if error is None else _COMMITTED if committed else _FAILED
        outcome = self._agree(outcome)  # every rank learns what rank 0 saw

        if outcome == _FAILED:
            self.last_ckpt = before[0]
            hub.update_info('last_ckpt', before[1])
            hub.update_info('keep_ckpt_files', before[2] or [])
            self._report(runner, error, final, committed=False,
                         keep=name in self.keep_ckpt_files)
            return
        self.keep_ckpt_files = keep
        self.saved_iter = meta['iter']
        self._prune_pending = [osp.basename(path) for path, _ in left]
        self.failed_writes = 0
        if outcome == _COMMITTED:
            self._report(runner, error, final, committed=True, keep=True)

    def _write(self, runner, name: str, meta: dict) -> None:
        """Write ``name`` stage by stage (every rank calls it; rank 0 writes)."""
        tmp_name = name + TMP_SUFFIX
        tmp = osp.join(self.out_dir, tmp_name)
        final = osp.join(self.out_dir, name)
        with _stage('temporary file', tmp):
            runner.save_checkpoint(  # writes on the main process only
                self.out_dir,
                tmp_name,
                self.file_client_args,
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler,
                meta=meta,
                by_epoch=self.by_epoch,
                backend_args=self.backend_args,
                **self.args)
        if not is_main_process():
            return
        with _stage('fsync', tmp):
            fsync_path(tmp)
        with _stage('rename', final):
            os.replace(tmp, final)
        with _stage('folder fsync', self.out_dir):
            fsync_path(self.out_dir)
        pointer = osp.join(runner.work_dir, 'last_checkpoint')
        with _stage('pointer', pointer):
            atomic_write_text(pointer, final)

    def _prune(self, names: List[str]) -> list:
        """Remove the checkpoints ``names``; the (path, error) of those left."""
        left = []
        for old in names:
            path = osp.join(self.out_dir, old)
            try:
                if osp.isfile(path):
                    os.remove(path)
            except OSError as err:
                left.append((path, err))
        return left

    @staticmethod
    def _pointer_names(pointer: str, final: str) -> bool:
        if not is_main_process():
            return False
        try:
            with open(pointer) as f:
                return f.read().strip() == final
        except OSError:
            return False

    @staticmethod
    def _agree(outcome: int) -> int:
        flag = torch.tensor([outcome], dtype=torch.int64)
        all_reduce(flag, op='max')  # a no-op with one process
        return int(flag.item())

    def _report(self, runner, error: Optional[CheckpointWriteError], final: str,
                committed: bool, keep: bool) -> None:
        """Clean up after a failed write (rank 0), log it, then raise or go on."""
        if error is None:  # another rank's view: rank 0 has the details
            what = 'finish' if committed else 'write'
            error = CheckpointWriteError(
                'unknown', final, message=f'rank 0 failed to {what} the checkpoint {final} '
                '(its log names the stage, the path and the error)')
        if is_main_process():
            if not committed:
                leftovers = [final + TMP_SUFFIX,
                             osp.join(runner.work_dir, 'last_checkpoint') + '.tmp']
                if not keep:  # renamed, but the pointer does not name it
                    leftovers.append(final)
                undone = [p for p in map(_remove_quietly, leftovers) if p]
                if undone:
                    runner.logger.error('Could not remove ' + '; '.join(undone))
                self.failed_writes += 1
            state = (f'The new checkpoint {final} and last_checkpoint are complete; '
                     'checkpoints left over are removed at the next save.' if committed else
                     f'The previous checkpoint ({self.last_ckpt or "none"}) and '
                     'last_checkpoint are unchanged.')
            if self.on_write_error == 'raise':
                then = ("Training stops (on_write_error='raise'): free space or fix the "
                        'folder, then resume with `tools/train.py CONFIG --resume`.')
            else:
                then = (f"Training goes on (on_write_error='retry', {self.failed_writes} "
                        'failed write(s) in a row); the next checkpoint is tried at the '
                        'next interval.')
            runner.logger.error(f'{error}. {state} {then}')
        if self.on_write_error == 'raise':
            raise error
