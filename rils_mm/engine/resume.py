"""The exact-resume contract: what each part of a run saves in a checkpoint, and how
it continues from it, so that a run resumed from any checkpoint (also one written in
the middle of an epoch) trains bit for bit what the uninterrupted run would have.

A resumed run is exact when every piece of state that decides the next batches and
updates is either saved or can be derived from what is saved. There are two kinds
of parts:

**Stateful participants** (:class:`ResumeParticipant`) keep state in the checkpoint
dict under their :attr:`~ResumeParticipant.resume_key`:

* ``resume_state()`` returns what to save: plain containers, numbers, strings and
  tensors only (checkpoints are loaded with ``torch.load(weights_only=True)``,
  see :mod:`rils_mm.utils.checkpoint`);
* ``load_resume_state(state, saved)`` puts it back when a run resumes (``--resume``;
  a plain ``load_from`` restores nothing).
* ``per_rank``: ``False`` if the state is the same on every rank (rank 0's is saved:
  mmengine writes checkpoints on rank 0 only); ``True`` if each rank has its own
  (random generators with ``diff_rank_seed``, per-rank counts). A per-rank
  participant is a hook deriving from :class:`RankStateHook`: the checkpoint hook
  first calls :func:`gather_rank_states` on **all** ranks (a collective), and the
  checkpoint then holds ``{resume_key: dict(world_size=W, ranks=[state of rank 0,
  ..., state of rank W-1], **fields)}``; on resume rank ``r`` gets ``ranks[r]``.

**Streams** (:class:`ResumableStream`: a sampler or an iterable data set) save
nothing: their order is a function of the seed, the epoch and the position, so
``resume_at(ResumePosition(epoch, batches, batch_size))`` makes the next pass
leave out the first ``batches`` batches of that epoch, exactly as the
uninterrupted pass would have gone on.

The **loop position** is mmengine's: ``Runner.save_checkpoint`` writes
``meta.epoch`` / ``meta.iter`` and ``Runner.resume`` puts them back into the loop;
:class:`~rils_mm.engine.loops.ResumableEpochBasedTrainLoop` turns them into a
:class:`ResumePosition` (:meth:`~rils_mm.engine.loops.ResumableEpochBasedTrainLoop.resume_position`)
and hands it to the stream.

The participants today:

=============================================  ====================  ========  ========
part                                           checkpoint key        per rank  kind
=============================================  ====================  ========  ========
``ResumableEpochBasedTrainLoop``               ``meta``              no        position
``ResumableSampler``, ``WebImageTextDataset``  (none)                (own)     stream
``RNGStateHook``                               ``rng_state``         yes       stateful
``DataSkipCounterHook``                        ``data_skip_counts``  yes       stateful
``FiniteStepOptimWrapper`` & co.               ``optimizer``         no        stateful
=============================================  ====================  ========  ========

(the optimiser wrappers' state rides in mmengine's ``optimizer`` entry, through
their ``state_dict`` / ``load_state_dict``).

A new part plugs in by implementing one of these: e.g. a remote shard reader is a
:class:`ResumableStream` (or, if its cursor cannot be derived from the position, a
:class:`RankStateHook` saving the cursor per rank). A save outside the regular
intervals goes through the checkpoint hook, which calls :func:`gather_rank_states` on
every rank first: :class:`~rils_mm.engine.hooks.PreemptionHook` saves on a signal
with :meth:`~rils_mm.engine.hooks.AtomicCheckpointHook.save_after_iter`.
"""
import abc
from dataclasses import dataclass
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Tuple

from mmengine.dist import all_gather_object, get_dist_info
from mmengine.hooks import Hook

__all__ = [
    'ResumePosition', 'ResumableStream', 'ResumeParticipant', 'RankStateHook',
    'gather_rank_states'
]


@dataclass(frozen=True)
class ResumePosition:
    """Where an interrupted epoch goes on.

    Attributes:
        epoch (int): The epoch (0-based) being resumed.
        batches (int): Its batches already trained (``0 < batches <`` the epoch's
            length); every rank trained as many.
        batch_size (int): The data loader's (per-rank) batch size.
    """

    epoch: int
    batches: int
    batch_size: int


class ResumableStream(abc.ABC):
    """A sampler or iterable data set that can start an epoch part-way."""

    @abc.abstractmethod
    def resume_at(self, position: ResumePosition) -> None:
        """Make the next pass over ``position.epoch`` leave out its first
        ``position.batches`` batches (this rank's own), and go on with exactly
        the samples (and augmentations) the uninterrupted pass would have made."""


class ResumeParticipant(abc.ABC):
    """A part of the run whose state is saved in checkpoints (see the module)."""

    #: The checkpoint entry its state lives in.
    resume_key: ClassVar[str]
    #: Whether every rank has its own state (then it is a :class:`RankStateHook`).
    per_rank: ClassVar[bool] = False

    @abc.abstractmethod
    def resume_state(self) -> Any:
        """This process's state to save (``weights_only``-loadable types only)."""

    @abc.abstractmethod
    def load_resume_state(self, state: Any, saved: Mapping[str, Any]) -> None:
        """Put back ``state`` (this rank's, for a per-rank participant); ``saved``
        holds the fields stored beside the ranks' states (empty if none)."""


class RankStateHook(Hook, ResumeParticipant):
    """Base of hooks that save every rank's own state in checkpoints.

    Subclasses implement :meth:`resume_state` and :meth:`load_resume_state`,
    set :attr:`resume_key`, and may override :meth:`clear_resume_state`,
    :meth:`resume_fields`, :meth:`load_other_world_size`, :meth:`rank0_entry`
    and :meth:`load_rank0_entry`. The hook methods here do the rest:

    * :meth:`gather_rank_states` (all ranks, by the checkpoint hook before it
      saves) collects every rank's :meth:`resume_state`;
    * ``before_save_checkpoint`` (rank 0) writes ``dict(world_size=W,
      ranks=[...], **resume_fields())``; a checkpoint saved without the gather
      (another checkpoint hook, several ranks) gets :meth:`rank0_entry`, rank 0's
      state alone;
    * ``after_load_checkpoint`` (every rank, only when resuming) hands this
      rank's state to :meth:`load_resume_state`, or asks
      :meth:`load_other_world_size` / :meth:`load_rank0_entry`.
    """

    per_rank = True

    def __init__(self) -> None:
        self._gathered: Optional[Tuple[int, List[Any]]] = None

    # --------------------------------------------------------- the choices
    def clear_resume_state(self) -> None:
        """Forget a state loaded before (called first by every checkpoint load)."""

    def resume_fields(self, runner, checkpoint: dict) -> Dict[str, Any]:
        """Fields saved once beside the ranks' states. Defaults to none."""
        return {}

    def load_other_world_size(self, runner, states: List[Any],
                              saved: Mapping[str, Any]) -> None:
        """Resume with another number of ranks than ``len(states)`` saved ones.

        Defaults to refusing (``RuntimeError``).
        """
        raise RuntimeError(
            f'{type(self).__name__}: the checkpoint was written by {len(states)} rank(s), '
            f'this run has {get_dist_info()[1]}; resume with as many ranks.')

    def rank0_entry(self, runner, state: Any, fields: Dict[str, Any]) -> Any:
        """The entry of a checkpoint saved without the gather: rank 0's
        ``state`` and the ``fields``. Defaults to ``dict(state, **fields)``."""
        return dict(state, **fields)

    def load_rank0_entry(self, runner, entry: Any) -> None:
        """Resume from a :meth:`rank0_entry`: by default rank 0 loads it, the
        other ranks keep their state from the start."""
        if get_dist_info()[0] == 0:
            self.load_resume_state(entry, {})

    # ------------------------------------------------------- the mechanics
    def gather_rank_states(self, runner) -> None:
        """Collect every rank's state (a collective: call on all ranks)."""
        self._gathered = (runner.iter, all_gather_object(self.resume_state()))

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Write the gathered states (rank 0 writes checkpoints)."""
        gathered, self._gathered = self._gathered, None
        fields = self.resume_fields(runner, checkpoint)
        if gathered is not None and gathered[0] == runner.iter:
            states = gathered[1]
        elif get_dist_info()[1] == 1:
            states = [self.resume_state()]
        else:
            checkpoint[self.resume_key] = self.rank0_entry(runner, self.resume_state(), fields)
            return
        checkpoint[self.resume_key] = dict(world_size=len(states), ranks=states, **fields)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """On resume, hand this rank's saved state over."""
        self.clear_resume_state()
        entry = checkpoint.get(self.resume_key)
        if not entry or not getattr(runner, '_resume', False):
            return  # `load_from` alone restores nothing
        if 'ranks' not in entry:
            self.load_rank0_entry(runner, entry)
            return
        states = entry['ranks']
        saved = {k: v for k, v in entry.items() if k not in ('ranks', 'world_size')}
        rank, world_size = get_dist_info()
        if len(states) == world_size:
            self.load_resume_state(states[rank], saved)
        else:
            self.load_other_world_size(runner, states, saved)


def gather_rank_states(runner) -> None:
    """Let every per-rank participant among the runner's hooks collect all ranks'
    state for the next checkpoint (call on every rank, like a collective)."""
    for hook in runner.hooks:
        if isinstance(hook, RankStateHook):
            hook.gather_rank_states(runner)
