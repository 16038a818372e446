"""Everything that decides a run's random draws, in one place: seeds, the states of
the global generators, and the epoch that data sets share with their loader workers.

* :func:`int_seed` makes a process-independent seed of named parts (``('augment',
  seed, epoch, rank, worker)``); data sets seed their shuffles and augmentations
  with it, so what they draw depends on the position in the run only.
* :func:`seed_global_generators`, :func:`seeded_generators` seed python's, numpy's
  and torch's global (CPU) generators, which random transforms draw from.
* :func:`get_rng_states` / :func:`set_rng_states` save and put back those states
  (and CUDA's) in a form a checkpoint loads with ``torch.load(weights_only=True)``;
  :class:`~rils_mm.engine.hooks.RNGStateHook` keeps every rank's in checkpoints.
* :class:`SharedEpoch` is the epoch given to a data set's ``set_epoch`` (by
  :class:`~rils_mm.engine.hooks.DatasetEpochHook`, with the run's seed), in shared
  memory so that persistent loader workers see it.
"""
import contextlib
import hashlib
import random
from typing import Iterator, Optional

import numpy as np
import torch

__all__ = [
    'int_seed', 'seed_global_generators', 'seeded_generators', 'get_rng_states',
    'set_rng_states', 'SharedEpoch', 'EpochSeeded'
]


def int_seed(*parts) -> int:
    """A process-independent 63-bit seed from ``parts`` (unlike ``hash``)."""
    digest = hashlib.sha256('/'.join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], 'little') >> 1


def seed_global_generators(seed: int) -> None:
    """Seed python's, numpy's (``seed mod 2**32``) and torch's CPU generator."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def get_rng_states(cuda: bool = True) -> dict:
    """This process's python, numpy, torch (and, if ``cuda`` and initialised, CUDA)
    generator states; numpy's key as plain ints, so that a checkpoint holding them
    needs no numpy type allow-listed."""
    np_state = np.random.get_state(legacy=False)
    np_state['state']['key'] = np_state['state']['key'].tolist()
    state = dict(python=random.getstate(), numpy=np_state, torch=torch.get_rng_state())
    if cuda and torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_states(state: dict) -> None:
    """Put back states saved by :func:`get_rng_states`."""
    random.setstate(_as_tuple(state['python']))
    np_state = dict(state['numpy'])
    np_state['state'] = dict(np_state['state'])
    np_state['state']['key'] = np.asarray(np_state['state']['key'], dtype=np.uint32)
    np.random.set_state(np_state)
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def _as_tuple(x):
    """``random.setstate`` wants nested tuples; some loaders turn them to lists."""
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


@contextlib.contextmanager
def seeded_generators(seed: int, restore: bool = True) -> Iterator[None]:
    """Run the body with python's, numpy's and torch's (CPU) global generators
    seeded from ``seed``, and (``restore``) put their previous states back
    afterwards.

    Random transforms draw from the global generators; inside this block what
    they draw depends on ``seed`` only, not on the process (main or data-loader
    worker) or on what it drew before, and with ``restore`` the caller's
    streams (e.g. the masking noise of the training process) do not move.
    Restoring costs about 0.2 ms (numpy's state round trip); a data-loader
    worker, whose generators serve nothing else, can skip it. CUDA generators
    are not touched.
    """
    if restore:
        py_state, np_state, torch_state = random.getstate(), np.random.get_state(), \
            torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        if restore:
            random.setstate(py_state)
            np.random.set_state(np_state)
            torch.set_rng_state(torch_state)


class SharedEpoch:
    """The epoch (and the run's seed) given to a data set's ``set_epoch``, in
    shared memory: a data loader's persistent workers hold copies of the data set
    made when they started, and see later ``set_epoch`` calls through it.

    Args:
        epoch (int): Epoch before any :meth:`set`. Defaults to 0.
    """

    def __init__(self, epoch: int = 0) -> None:
        # [epoch, seed, whether set() was called]
        self._values = torch.zeros(3, dtype=torch.int64).share_memory_()
        self._values[0] = int(epoch)
        # per process: which shared value the last next_iteration() saw
        self._last_shared: Optional[int] = None
        self._local: Optional[int] = None

    def set(self, epoch: int, seed: Optional[int] = None) -> None:
        """Use ``epoch`` from now on (in every process); keep ``seed`` if given."""
        self._values[0] = int(epoch)
        if seed is not None:
            self._values[1] = int(seed)
        self._values[2] = 1

    @property
    def epoch(self) -> int:
        """The epoch last set (0 before any :meth:`set`)."""
        return int(self._values[0])

    @property
    def seed(self) -> int:
        """The seed last given to :meth:`set` (0 if none was)."""
        return int(self._values[1])

    @property
    def is_set(self) -> bool:
        """Whether :meth:`set` was ever called."""
        return bool(self._values[2])

    def next_iteration(self) -> int:
        """The epoch of a new pass over an iterable data set in this process: the
        one last set if it changed since the previous pass, else one more than the
        previous pass's (so that, without ``set_epoch``, epochs still differ)."""
        shared = self.epoch
        if self._local is None or shared != self._last_shared:
            epoch = shared
        else:
            epoch = self._local + 1
        self._last_shared, self._local = shared, epoch
        return epoch


class EpochSeeded:
    """Mixin of data sets whose random draws follow the epoch and the run's seed.

    :class:`~rils_mm.engine.hooks.DatasetEpochHook` calls ``set_epoch(epoch,
    seed=runner.seed)`` on them before every train epoch (other data sets with a
    ``set_epoch`` get the epoch only, the torch convention). A subclass creates
    :attr:`shared_epoch` in its ``__init__`` and reads it where it seeds.
    """

    shared_epoch: SharedEpoch

    def set_epoch(self, epoch: int, seed: Optional[int] = None) -> None:
        """Use ``epoch`` (and the run's ``seed``) from the next pass on, in all
        loader workers."""
        self.shared_epoch.set(epoch, seed)
