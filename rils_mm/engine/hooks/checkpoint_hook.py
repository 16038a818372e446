"""Crash-safe checkpoints: atomic writes, pointer last, pruning after."""
import os
import os.path as osp
from typing import List, Optional

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook
from mmpretrain.registry import HOOKS

from rils_mm.utils.checkpoint import atomic_write_text, fsync_path

from ..resume import gather_rank_states

__all__ = ['AtomicCheckpointHook', 'gather_rank_states']

#: Suffix of a checkpoint being written; renamed to its final name when complete.
TMP_SUFFIX = '.tmp'


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

    Left-over ``*.tmp`` files of a killed write are removed when training
    starts. Besides the per-epoch (or per-``interval`` iteration) checkpoints
    of the parent, ``interval_iters`` adds mid-epoch checkpoints
    ``iter_<n>.pth`` every ``interval_iters`` iterations of an epoch-based run
    (their meta holds the unfinished epoch and the iteration, which is what
    :class:`~rils_mm.engine.loops.ResumableEpochBasedTrainLoop` needs to
    continue at the next unseen batch). Both kinds share ``max_keep_ckpts``.

    Non-local ``out_dir`` back-ends (``s3://`` ...) have no rename; there the
    parent's behaviour is used.

    Per-rank state: mmengine's ``Runner.save_checkpoint`` (and with it the
    ``before_save_checkpoint`` hooks) runs on rank 0 only, so before every save
    :func:`~rils_mm.engine.resume.gather_rank_states` runs on **all** ranks (a
    collective, in hook order): the per-rank participants of the resume
    contract (:class:`~rils_mm.engine.resume.RankStateHook`:
    :class:`~rils_mm.engine.hooks.RNGStateHook`,
    :class:`~rils_mm.engine.hooks.DataSkipCounterHook`) collect every rank's
    state, and write it from ``before_save_checkpoint``.

    Args:
        interval_iters (int): Mid-epoch checkpoint period in iterations when
            ``by_epoch=True``; -1 disables them. Defaults to -1.
        iter_filename_tmpl (str): File name of mid-epoch checkpoints.
            Defaults to ``'iter_{}.pth'``.
        **kwargs: see :class:`mmengine.hooks.CheckpointHook`.
    """

    def __init__(self,
                 interval_iters: int = -1,
                 iter_filename_tmpl: str = 'iter_{}.pth',
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if not isinstance(interval_iters, int) or interval_iters == 0 or \
                interval_iters < -1:
            raise ValueError('interval_iters must be a positive int or -1, '
                             f'got {interval_iters!r}')
        self.interval_iters = interval_iters
        self.iter_filename_tmpl = iter_filename_tmpl
        self.keep_ckpt_files: List[str] = []

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
        self._save_checkpoint_with_step(
            runner,
            runner.iter + 1,
            meta=dict(epoch=runner.epoch, iter=runner.iter + 1),
            filename_tmpl=self.iter_filename_tmpl)

    def _save_checkpoint_with_step(self,
                                   runner,
                                   step,
                                   meta,
                                   filename_tmpl: Optional[str] = None):
        """Write atomically, then update the pointer, then prune."""
        gather_rank_states(runner)
        if not self._is_local():
            return super()._save_checkpoint_with_step(runner, step, meta)
        name = (filename_tmpl or self.filename_tmpl).format(step)
        final = osp.join(self.out_dir, name)
        keep = [n for n in self.keep_ckpt_files if n != name] + [name]
        prune: List[str] = []
        if self.max_keep_ckpts > 0 and len(keep) > self.max_keep_ckpts:
            prune = keep[:-self.max_keep_ckpts]
            keep = keep[-self.max_keep_ckpts:]
        # Recorded before saving so that the checkpoint itself holds them.
        self.last_ckpt = final
        runner.message_hub.update_info('last_ckpt', final)
        runner.message_hub.update_info('keep_ckpt_files', keep)

        tmp_name = name + TMP_SUFFIX
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
        self.keep_ckpt_files = keep
        if not is_main_process():
            return
        tmp = osp.join(self.out_dir, tmp_name)
        fsync_path(tmp)
        os.replace(tmp, final)
        fsync_path(self.out_dir)
        atomic_write_text(osp.join(runner.work_dir, 'last_checkpoint'), final)
        for old in prune:
            path = osp.join(self.out_dir, old)
            if osp.isfile(path):
                os.remove(path)
