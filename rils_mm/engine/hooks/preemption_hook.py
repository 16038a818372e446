"""Preemption: on a signal, finish the step, write a checkpoint, exit "requeue me"."""
import os
import os.path as osp
import signal
import threading
from typing import Dict, List, Optional, Sequence, Union

import torch
from mmengine.dist import all_reduce, barrier, get_dist_info, is_main_process
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS

from rils_mm.utils.checkpoint import atomic_write_text

from .checkpoint_hook import AtomicCheckpointHook, CheckpointWriteError

__all__ = ['PreemptionHook', 'Preempted', 'REQUEUE_EXIT_CODE', 'PREEMPTED_MARKER']

#: Exit status of a preempted run: ``EX_TEMPFAIL`` of ``sysexits.h`` ("a temporary
#: failure; the user is invited to retry"). Distinct from 0 (done), 1 (errors),
#: 124 (``timeout``), 128 + n (killed by signal n) and 137 (SIGKILL / OOM killer).
REQUEUE_EXIT_CODE = 75
#: File in the work dir that the main process writes after the checkpoint of a
#: preempted run (it names the checkpoint): a launcher that cannot trust the exit
#: status (``srun --kill-on-bad-exit`` kills the ranks that exit later) requeues
#: when it is there.
PREEMPTED_MARKER = 'preempted'


class Preempted(SystemExit):
    """Raised on every rank after the checkpoint of a preempted run.

    A :class:`SystemExit` whose ``code`` is the requeue status, so a script that
    does not catch it still exits with that status; ``tools/train.py`` catches it
    to leave the process group cleanly first.
    """


@HOOKS.register_module()
class PreemptionHook(Hook):
    """Stop on a scheduler's warning signal, losing nothing.

    Cluster schedulers signal a job before they stop it (SLURM: ``--signal=USR1@120``
    120 s before the time limit, SIGTERM on preemption). Here

    1. the handler of each of ``signals`` (installed in ``before_train``, main
       thread) only records the signal;
    2. after every ``interval``-th iteration (``after_train_iter``, after the other
       hooks) all ranks take the maximum of their flags (one all-reduce of one
       number), so a signal on any rank stops every rank after the same iteration;
    3. then every rank asks :class:`~rils_mm.engine.hooks.AtomicCheckpointHook` for a
       checkpoint of the state after that iteration (``iter_<n>.pth``, with every
       rank's RNG and data-counter states, what ``--resume`` continues from exactly
       in the middle of an epoch; nothing is written if that iteration's checkpoint
       was already). After an epoch's last iteration the epoch is finished first
       (its ``after_train_epoch`` hooks run) and ``epoch_<n>.pth`` is the checkpoint;
    4. all ranks wait for the write to be complete (a barrier), the main process
       writes :data:`PREEMPTED_MARKER` in the work dir, and every rank raises
       :class:`Preempted` with ``exit_code`` (:data:`REQUEUE_EXIT_CODE`, 75).

    Without an :class:`~rils_mm.engine.hooks.AtomicCheckpointHook` (a config that
    replaced or removed ``default_hooks.checkpoint``) the hook is off, with a warning.

    A signal during the write only adds to the record (reported after it): the write
    goes on to the end. If the write fails (a full disk, see ``on_write_error`` of
    the checkpoint hook) the run still exits with ``exit_code``: the previous
    checkpoint is intact and the requeued run resumes from it. A signal in the last
    iteration of training ends the run normally (status 0, nothing to requeue).

    Data-loader workers started with ``fork`` (the default ``mp_start_method``)
    inherit the handler, so a signal sent to the whole job step (SLURM signals
    every process of the step) does not kill them.

    Args:
        signals (Sequence[str | int]): Signals to act on. Defaults to
            ``('SIGUSR1', 'SIGTERM')``.
        exit_code (int): Exit status after the checkpoint. Defaults to 75.
        interval (int): Check for a signal every ``interval`` iterations (and at
            the end of each epoch). Defaults to 1.
    """

    priority = 'LOWEST'  # after the iteration's other hooks (checkpoint included)

    def __init__(self,
                 signals: Sequence[Union[str, int]] = ('SIGUSR1', 'SIGTERM'),
                 exit_code: int = REQUEUE_EXIT_CODE,
                 interval: int = 1) -> None:
        self.signals: List[signal.Signals] = []
        for sig in signals:
            try:
                self.signals.append(signal.Signals[sig] if isinstance(sig, str)
                                    else signal.Signals(sig))
            except (KeyError, ValueError):
                raise ValueError(f'PreemptionHook: unknown signal {sig!r} in signals='
                                 f'{list(signals)!r} (expected names like "SIGUSR1")') from None
        if not isinstance(exit_code, int) or not 0 < exit_code < 128:
            raise ValueError(f'PreemptionHook: exit_code must be an int in 1..127 (128 + n '
                             f'means "killed by signal n"), got {exit_code!r}')
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f'PreemptionHook: interval must be a positive int, got {interval!r}')
        self.exit_code = exit_code
        self.interval = interval
        self.received: List[int] = []  # signal numbers, in order of arrival
        self._previous: Dict[signal.Signals, object] = {}
        self._stop_after_epoch = False

    # ------------------------------------------------------------ the signal
    def _on_signal(self, signum, frame) -> None:
        self.received.append(signum)  # nothing else: the loop acts on it

    def before_train(self, runner) -> None:
        """Install the handlers; remove the marker of an earlier preemption."""
        self.received, self._stop_after_epoch = [], False
        ckpt = self._checkpoint_hook(runner)
        if ckpt is None:
            runner.logger.warning(
                'PreemptionHook is off: it writes its checkpoint through an '
                "AtomicCheckpointHook (default_hooks.checkpoint=dict(type="
                "'AtomicCheckpointHook', ...), as configs/_base_/default_runtime.py has), "
                'and this run has none. Signals keep their default action.')
            return
        if is_main_process():
            marker = osp.join(runner.work_dir, PREEMPTED_MARKER)
            if osp.isfile(marker):
                os.remove(marker)
        if threading.current_thread() is not threading.main_thread():
            runner.logger.warning('PreemptionHook: not in the main thread, so no signal '
                                  'handler is installed; preemption signals stop the run.')
            return
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._on_signal)
        runner.logger.info(
            'On ' + '/'.join(s.name for s in self.signals) + ' the run finishes the '
            f'iteration, writes a checkpoint to {ckpt.out_dir} and exits with status '
            f'{self.exit_code}; resume it with --resume.')

    def after_train(self, runner) -> None:
        """Put the earlier handlers back (training ended normally)."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    @staticmethod
    def _checkpoint_hook(runner) -> Optional[AtomicCheckpointHook]:
        return next((h for h in runner.hooks if isinstance(h, AtomicCheckpointHook)), None)

    def _agreed(self) -> bool:
        """Whether any rank got a signal (all ranks call it at the same points)."""
        flag = torch.tensor([1 if self.received else 0], dtype=torch.int64)
        all_reduce(flag, op='max')  # a no-op with one process
        return bool(flag.item())

    # ---------------------------------------------------------- the stopping
    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        """Stop after this iteration if any rank got a signal."""
        if self._stop_after_epoch or not self._previous:
            return  # stopping already, or off (no handlers installed on any rank)
        loop = runner.train_loop
        by_epoch = hasattr(loop, 'max_epochs')
        end_of_epoch = by_epoch and self.end_of_epoch(loop.dataloader, batch_idx)
        if not (end_of_epoch or self.every_n_train_iters(runner, self.interval)):
            return
        if not self._agreed():
            return
        if runner.iter + 1 >= runner.max_iters:
            runner.logger.info('Preemption signal in the last iteration: training ends '
                               'normally.')
            self._stop_after_epoch = True  # nothing left to stop
            return
        if end_of_epoch:
            runner.logger.info(f'Preemption signal: finishing epoch {runner.epoch + 1} '
                               'first, then writing its checkpoint.')
            self._stop_after_epoch = True
            return
        self._stop(runner, after_epoch=False)

    def after_train_epoch(self, runner) -> None:
        """Stop after an epoch whose last iteration got the signal."""
        if self._stop_after_epoch and runner.epoch + 1 < runner.max_epochs:
            self._stop(runner, after_epoch=True)

    def _stop(self, runner, after_epoch: bool) -> None:
        names = ', '.join(signal.Signals(s).name for s in self.received) or 'another rank'
        before = len(self.received)
        rank, world_size = get_dist_info()
        where = f'epoch {runner.epoch + 1}' if after_epoch else f'iteration {runner.iter + 1}'
        runner.logger.info(f'Preemption ({names} on rank {rank} of {world_size}): writing '
                           f'the checkpoint after {where}.')
        ckpt = self._checkpoint_hook(runner)
        try:
            done = ckpt.save_after_epoch(runner) if after_epoch else ckpt.save_after_iter(runner)
        except CheckpointWriteError:
            done = False  # logged by the checkpoint hook
        barrier()  # no rank exits before the checkpoint is complete
        later = len(self.received) - before
        if later:
            runner.logger.info(f'{later} more signal(s) arrived during the write; ignored.')
        path = ckpt.last_ckpt if done else None
        if is_main_process():
            atomic_write_text(osp.join(runner.work_dir, PREEMPTED_MARKER),
                              f'{path or ""}\n')
        runner.logger.warning(
            f'Preempted: exiting with status {self.exit_code} (requeue me). '
            + (f'`tools/train.py ... --resume` continues after {where} from {path}.' if done
               else 'The checkpoint could not be written: a resume starts from the '
               'previous one.'))
        raise Preempted(self.exit_code)
