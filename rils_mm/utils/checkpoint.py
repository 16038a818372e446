# Copyright (c) rils-mm contributors. All rights reserved.
"""Safe (``weights_only=True``) loading of mmengine checkpoints.

Since torch 2.6, :func:`torch.load` defaults to ``weights_only=True``, which
only rebuilds tensors, containers and primitive types plus the globals that
were explicitly allow-listed with :func:`torch.serialization.add_safe_globals`.
mmengine 0.10.7 calls ``torch.load`` without ``weights_only``, so a checkpoint
written by its ``Runner`` (which holds a :class:`~mmengine.logging.MessageHub`
state with :class:`~mmengine.logging.HistoryBuffer` objects and numpy arrays /
scalars) can no longer be loaded or resumed.

This module keeps the safe unpickler switched on and instead

1. allow-lists exactly the globals found in the checkpoints mmengine's
   ``Runner`` writes for this project (see :data:`CHECKPOINT_SAFE_GLOBALS`),
2. replaces mmengine's local-file checkpoint loader with one that always
   passes ``weights_only=True`` and turns a refusal into an error naming the
   file, the refused global(s) and how to allow a trusted type.

It never falls back to ``weights_only=False``.

Example:
    >>> from rils_mm.utils.checkpoint import register_checkpoint_safety
    >>> register_checkpoint_safety()
    >>> # mmengine's load_checkpoint / Runner.resume / load_from now load
    >>> # local files with torch.load(..., weights_only=True).
"""
import logging
import os
import os.path as osp
import pickle
import re
import zipfile
from typing import Any, Callable, List, Optional, Tuple, Union

import numpy as np
import torch
from mmengine.dist import barrier, get_dist_info
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

from .torch_compat import add_safe_globals, checkpoint_globals, unwrap_safe_global

__all__ = [
    'CHECKPOINT_SAFE_GLOBALS', 'UnsafeCheckpointError', 'CorruptCheckpointError',
    'allow_checkpoint_types', 'load_from_http', 'load_from_local',
    'register_checkpoint_safety', 'fsync_path', 'atomic_write_text',
    'checkpoint_problem', 'find_latest_intact_checkpoint'
]

#: The only attribute names :func:`_history_buffer_getattr` resolves. They
#: are the statistics methods every ``HistoryBuffer`` registers by default.
_HISTORY_BUFFER_STATISTICS = ('min', 'max', 'mean', 'current')


def _history_buffer_getattr(obj: Any, name: str) -> Callable:
    """A narrow stand-in for ``builtins.getattr`` used while unpickling.

    ``HistoryBuffer.__getstate__`` stores its ``_statistics_methods`` dict,
    whose values are unbound methods such as ``HistoryBuffer.min``. Pickle
    (protocol 2, as used by :func:`torch.save`) writes a method with a dotted
    qualname as ``getattr(HistoryBuffer, 'min')``, i.e. a reference to
    ``builtins.getattr``. Allow-listing the real ``getattr`` would let a
    checkpoint reach any attribute of any allow-listed object, so this
    function is registered under the name ``builtins.getattr`` instead and
    only resolves the default statistics methods of ``HistoryBuffer``.

    Args:
        obj (Any): The object whose attribute is requested.
        name (str): The attribute name.

    Returns:
        Callable: ``getattr(HistoryBuffer, name)``.

    Raises:
        pickle.UnpicklingError: For any other object or attribute name.
    """
    if obj is HistoryBuffer and name in _HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'Refused getattr({obj!r}, {name!r}) while loading a checkpoint: '
        'only the default HistoryBuffer statistics methods '
        f'{_HISTORY_BUFFER_STATISTICS} can be resolved.')


# ``numpy._core.multiarray`` is the numpy>=2 location; numpy 1.x pickles the
# same functions as ``numpy.core.multiarray.*``. Both names are mapped to the
# very same objects so checkpoints written with either numpy load with either.
try:  # numpy >= 2
    from numpy._core import multiarray as _np_multiarray
except ImportError:  # numpy 1.26 (its numpy._core has no multiarray module)
    from numpy.core import multiarray as _np_multiarray

#: Everything allow-listed for ``torch.load(weights_only=True)``. Entries are
#: either an object (registered under ``{__module__}.{__qualname__}``) or an
#: ``(object, 'name.in.pickle')`` pair. Determined by saving checkpoints with
#: mmengine's ``Runner`` (AdamW in OptimWrapper or AmpOptimWrapper, LinearLR +
#: CosineAnnealingLR by iteration, EpochBasedTrainLoop with and without a
#: ValLoop, CheckpointHook, ``randomness=dict(seed=0)``, a dataset meta),
#: listing their globals with
#: ``torch.serialization.get_unsafe_globals_in_checkpoint`` and adding the
#: instance types the unpickler has to ``BUILD``; each entry was checked to
#: be necessary. AmpOptimWrapper only adds ``GradScaler.state_dict()``
#: (Python floats/ints), optimizer and scheduler states are tensors and
#: primitives, so they need nothing.
#:
#: Note: ``HistoryBuffer.__setstate__`` merges the pickled statistics methods
#: into the class-level registry; with this allow-list those can only be
#: allow-listed callables, never arbitrary code.
CHECKPOINT_SAFE_GLOBALS: List[Union[Callable, Tuple[Callable, str]]] = [
    # message_hub['log_scalars'] values.
    HistoryBuffer,
    # HistoryBuffer's pickled statistics methods (see the function above).
    (_history_buffer_getattr, 'builtins.getattr'),
    # np.ndarray: HistoryBuffer._log_history (float64) / _count_history
    # (int64).
    np.ndarray,
    (_np_multiarray._reconstruct, 'numpy._core.multiarray._reconstruct'),
    (_np_multiarray._reconstruct, 'numpy.core.multiarray._reconstruct'),
    # np.float64 scalars, e.g. message_hub['runtime_info']['eta'].
    (_np_multiarray.scalar, 'numpy._core.multiarray.scalar'),
    (_np_multiarray.scalar, 'numpy.core.multiarray.scalar'),
    # dtypes of the above: created by calling np.dtype, then BUILD sets the
    # state on the instance whose type is the concrete DType class.
    np.dtype,
    np.dtypes.Float64DType,
    np.dtypes.Int64DType,
]

_REGISTERED = False


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds a global that is not allow-listed for loading.

    Subclasses :class:`pickle.UnpicklingError` so that callers which catch
    torch's own refusal keep working.
    """


class CorruptCheckpointError(RuntimeError):
    """A checkpoint file is truncated or damaged (named in the message)."""


def allow_checkpoint_types(*types: Union[Callable, Tuple[Callable, str]]
                           ) -> None:
    """Allow-list trusted classes/functions for checkpoint loading.

    Only call this for types whose unpickling you trust (a class rebuilt
    from a checkpoint gets its ``__setstate__``/``__dict__`` set from file
    contents, a function gets called with arguments from the file).

    Args:
        *types (Callable | tuple[Callable, str]): Classes or functions, or
            ``(obj, 'module.qualname')`` pairs when the name stored in the
            checkpoint differs from ``obj.__module__ + '.' +
            obj.__qualname__``.

    Example:
        >>> from my_project.structures import MyMeta
        >>> allow_checkpoint_types(MyMeta)
    """
    add_safe_globals(types)


def _allowed_names() -> set:
    """Names of the user allow-listed globals (torch's defaults excluded)."""
    return {unwrap_safe_global(item)[0]
            for item in torch.serialization.get_safe_globals()}


def _refused_globals(filename: str, message: str) -> List[str]:
    """Work out which global(s) made the safe unpickler refuse a file.

    Args:
        filename (str): The checkpoint path.
        message (str): Torch's error message.

    Returns:
        list[str]: The refused globals, or the refused types torch names in
        its message when the file cannot be scanned statically.
    """
    refused: List[str] = []
    try:
        allowed = _allowed_names()
        refused = [
            name for name in
            checkpoint_globals(filename)
            if name not in allowed
        ]
    except Exception:  # legacy (non-zip) format, torchscript, ...
        pass
    if not refused:
        # Not visible to the static scan, e.g. an instance of a type that is
        # not allow-listed but was created by an allow-listed callable.
        patterns = (r'GLOBAL (\S+) was not an allowed global',
                    r'GLOBAL (\S+) whose module \S+ is blocked',
                    r'but got (<class [^>]+>)',
                    r'Refused (getattr\(.*?\)) while')
        for pattern in patterns:
            refused.extend(re.findall(pattern, message))
    return sorted(set(refused))


def _unpickler_reason(message: str) -> str:
    """Extract the unpickler's own complaint from torch's error message.

    Torch wraps it in advice that includes switching ``weights_only`` off,
    which this project does not do, so only the core sentence is kept.

    Args:
        message (str): Torch's error message.

    Returns:
        str: The core reason, at most 300 characters.
    """
    match = re.search(r'WeightsUnpickler error:\s*(\S[^\n]*)', message)
    if match is None:
        paragraphs = [p.strip() for p in message.split('\n\n') if p.strip()]
        reason = paragraphs[1] if len(paragraphs) > 1 else message.strip()
        reason = reason.splitlines()[0] if reason else ''
    else:
        reason = match.group(1)
    # Drop torch's own "Please use `torch.serialization.add_safe_globals...`"
    reason = reason.split(' Please use ')[0].strip()
    return reason[:300]


def load_from_local(filename: str,
                    map_location: Optional[Union[str, Callable,
                                                 torch.device]] = None
                    ) -> Any:
    """Load a local checkpoint with ``torch.load(weights_only=True)``.

    Drop-in replacement for :func:`mmengine.runner.checkpoint.load_from_local`
    (registered for the empty prefix, i.e. every plain path). The name is kept
    so that mmengine logs ``Loads checkpoint by local backend``.

    Args:
        filename (str): Local checkpoint file path.
        map_location (str | Callable | torch.device, optional): Same as
            :func:`torch.load`. Defaults to None.

    Returns:
        dict | OrderedDict: The loaded checkpoint.

    Raises:
        FileNotFoundError: If ``filename`` is not a file.
        UnsafeCheckpointError: If the checkpoint holds a global that is not
            allow-listed. The original error is chained.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    try:
        return torch.load(
            filename, map_location=map_location, weights_only=True)
    except RuntimeError as err:
        if 'zip archive' not in str(err) and 'PytorchStreamReader' not in str(err):
            raise
        problem = checkpoint_problem(filename) or str(err).splitlines()[0]
        raise CorruptCheckpointError(
            f'Checkpoint "{filename}" cannot be read: {problem}. It was probably cut '
            'off by a crash or a full disk; `tools/train.py --resume` (no path) '
            'falls back to the newest intact checkpoint of the work dir.') from err
    except pickle.UnpicklingError as err:
        refused = _refused_globals(filename, str(err))
        names = ', '.join(refused) if refused else 'unknown'
        reason = _unpickler_reason(str(err))
        raise UnsafeCheckpointError(
            f'Refused to load checkpoint "{filename}" with '
            f'torch.load(weights_only=True): it contains global(s) that are '
            f'not allow-listed: {names}. Unpickler said: {reason} '
            'If, and only if, you trust this file and these types, allow '
            'them before loading with '
            '`rils_mm.utils.checkpoint.allow_checkpoint_types(<type>, ...)` '
            '(wraps torch.serialization.add_safe_globals). Loading with '
            'weights_only=False is not supported.') from err


def load_from_http(filename: str,
                   map_location: Optional[Union[str, Callable,
                                                torch.device]] = None,
                   model_dir: Optional[str] = None,
                   progress: bool = False) -> Any:
    """Download an ``http(s)://`` checkpoint once, then load it safely.

    Replaces mmengine's ``load_from_http``, which goes through
    ``torch.hub.load_state_dict_from_url`` and so ``weights_only=False``. The
    file is downloaded into ``model_dir`` (default: torch hub's
    ``checkpoints`` folder) by local rank 0 first, then read with
    :func:`load_from_local` (``weights_only=True``, same refusal message).
    """
    from urllib.parse import urlparse
    model_dir = model_dir or osp.join(torch.hub.get_dir(), 'checkpoints')
    cached = osp.join(model_dir, osp.basename(urlparse(filename).path))

    def fetch():
        if not osp.isfile(cached):
            os.makedirs(model_dir, exist_ok=True)
            torch.hub.download_url_to_file(filename, cached, progress=progress)

    rank, world_size = get_dist_info()
    if rank == 0:
        fetch()
    if world_size > 1:
        barrier()
        fetch()  # other nodes' local rank 0 when the cache is not shared
    return load_from_local(cached, map_location=map_location)


def register_checkpoint_safety() -> None:
    """Allow-list the project's checkpoint types and install the safe loader.

    Idempotent: calling it several times has the same effect as calling it
    once. Afterwards :func:`mmengine.runner.load_checkpoint`,
    ``Runner.load_checkpoint``, ``Runner.resume`` and ``load_from`` load local
    files via :func:`load_from_local`.
    """
    global _REGISTERED
    # add_safe_globals stores a set, re-adding is harmless; force=True
    # re-binds the '' prefix. The flag just skips redundant work.
    if (_REGISTERED and CheckpointLoader._schemes.get('') is load_from_local
            and CheckpointLoader._schemes.get('https://') is load_from_http):
        return
    add_safe_globals(CHECKPOINT_SAFE_GLOBALS)
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_from_local, force=True)
    CheckpointLoader.register_scheme(
        prefixes=('http://', 'https://'), loader=load_from_http, force=True)
    _REGISTERED = True


# ------------------------------------------------------------------ crash safety
def fsync_path(path: str) -> None:
    """``fsync`` a file or a folder (the latter makes a rename durable).

    Folders cannot be opened on Windows; there it is a no-op for them.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except (IsADirectoryError, PermissionError):
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: str, text: str) -> None:
    """Replace ``path`` by ``text`` so that a kill leaves the old or the new
    content, never a mix: write ``path.tmp``, fsync, rename, fsync folder."""
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_path(osp.dirname(osp.abspath(path)))


def checkpoint_problem(filename: str) -> Optional[str]:
    """Why ``filename`` is not a complete checkpoint, or ``None`` if it is.

    ``torch.save`` writes a zip archive that ends with its central directory
    and stores a CRC-32 per record: a truncated file has no central directory,
    a damaged one fails the CRC check. Reads the whole file once (a few
    seconds for a ViT-B/16 checkpoint with optimiser state) but unpickles
    nothing.
    """
    if not osp.isfile(filename):
        return 'no such file'
    if osp.getsize(filename) == 0:
        return 'empty file'
    try:
        with zipfile.ZipFile(filename) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        return f'truncated or not a torch.save zip archive ({err})'
    if bad is not None:
        return f'record {bad!r} fails its CRC check'
    return None


def _newest_first(path: str) -> Tuple[float, str]:
    return (osp.getmtime(path), path)


def find_latest_intact_checkpoint(work_dir: str,
                                  logger=None) -> Optional[str]:
    """The newest complete checkpoint of ``work_dir`` for ``--resume``.

    Tries the file named by ``work_dir/last_checkpoint`` first, then every
    ``*.pth`` in ``work_dir`` from newest to oldest (modification time); each
    candidate that is truncated or damaged (see :func:`checkpoint_problem`)
    is reported with a warning naming the file and skipped.

    Args:
        work_dir (str): The run's work dir.
        logger (optional): Where warnings go; ``print_log``'s current logger
            by default.

    Returns:
        str | None: Path of the newest intact checkpoint, ``None`` if the work
        dir has no checkpoint at all (then training starts from scratch).

    Raises:
        CorruptCheckpointError: If there are checkpoints but none is intact
            (starting from scratch silently would be a different run).
    """
    from mmengine.logging import print_log

    def warn(msg):
        print_log(msg, logger=logger or 'current', level=logging.WARNING)

    candidates: List[str] = []
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer) as f:
            named = f.read().strip()
        if named:
            candidates.append(named)
    if osp.isdir(work_dir):
        found = [
            osp.join(work_dir, n) for n in os.listdir(work_dir)
            if n.endswith('.pth') and osp.isfile(osp.join(work_dir, n))
        ]
        found.sort(key=_newest_first, reverse=True)
        candidates += [p for p in found if p not in candidates]
    rejected = []
    for path in candidates:
        problem = checkpoint_problem(path)
        if problem is None:
            if rejected:
                warn(f'Resuming from {path}, the newest intact checkpoint; '
                     'skipped ' + '; '.join(rejected))
            return path
        rejected.append(f'{path}: {problem}')
        warn(f'Cannot resume from checkpoint {path}: {problem}')
    if rejected:
        raise CorruptCheckpointError(
            f'No intact checkpoint to resume from in {work_dir}: ' + '; '.join(rejected)
            + '. Remove them to start from scratch.')
    return None
