"""The few torch APIs rils-mm uses that are newer than its lowest supported torch (2.4).

Each function takes the new API where torch has it and otherwise computes the same
thing with what torch 2.4 has; ``tests/test_torch_compat.py`` checks both ways on the
installed torch. Nothing else in the package may use an API newer than torch 2.4
(``tools/run_tests_lowest_torch.sh`` runs the suite's pretraining and evaluation tests on
torch 2.4).
"""
import io
import pickletools
import zipfile
from typing import Any, Callable, Iterable, List, Sequence, Tuple, Union

import torch

__all__ = [
    'LOWEST_TORCH', 'add_safe_globals', 'checkpoint_globals', 'total_grad_norm',
    'safe_globals_take_names', 'torch_version', 'unwrap_safe_global'
]

#: The lowest torch rils-mm supports (``requirements/torch.txt``).
LOWEST_TORCH = (2, 4)

SafeGlobal = Union[Callable, Tuple[Callable, str]]


def safe_globals_take_names() -> bool:
    """Whether ``torch.serialization.add_safe_globals`` accepts ``(obj, 'name')``
    pairs (torch >= 2.5); torch 2.4 keys every entry by its own
    ``__module__`` + ``__name__``."""
    return torch_version() >= (2, 5)


def torch_version() -> Tuple[int, int]:
    """``(major, minor)`` of the installed torch."""
    major, minor = torch.__version__.split('+')[0].split('.')[:2]
    return int(major), int(minor)


def _named_alias(obj: Callable, name: str) -> Callable:
    """A function that calls ``obj`` and is named ``name`` (``module.qualname``):
    how torch 2.4 can be told that a pickle's global ``name`` means ``obj``."""
    module, _, short = name.rpartition('.')

    def alias(*args, **kwargs):
        return obj(*args, **kwargs)

    alias.__module__, alias.__name__, alias.__qualname__ = module, short, short
    alias.__wrapped_global__ = obj
    return alias


def add_safe_globals(entries: Iterable[SafeGlobal]) -> None:
    """``torch.serialization.add_safe_globals(entries)``.

    On torch 2.4 (whose unpickler knows neither name pairs nor pickle protocol 2's
    Python 2 names) each ``(obj, 'module.name')`` pair becomes a function of that
    name calling ``obj`` (every entry rils-mm registers under another name is a
    function), a ``builtins.X`` entry is also registered as ``__builtin__.X``, and
    ``_codecs.encode`` (how protocol 2 writes the bytes of a numpy scalar; torch >=
    2.5 allows it by default) is added.
    """
    entries = list(entries)
    if not safe_globals_take_names():
        import codecs
        named = []
        for e in entries:
            obj, name = e if isinstance(e, tuple) else (e, None)
            if name is not None:
                named.append(_named_alias(obj, name))
            else:
                named.append(obj)
                name = f'{obj.__module__}.{obj.__qualname__}'
            if name.startswith('builtins.'):
                named.append(_named_alias(obj, '__builtin__.' + name[9:]))
        entries = named + [_named_alias(codecs.encode, '_codecs.encode')]
    torch.serialization.add_safe_globals(entries)


def _pickle_globals(data: bytes) -> List[str]:
    """``module.name`` of every GLOBAL / STACK_GLOBAL in a pickle (static scan,
    like torch's ``get_globals_in_pkl``)."""
    found, strings = [], []
    for op, arg, _ in pickletools.genops(io.BytesIO(data)):
        if op.name == 'GLOBAL':
            found.append(arg.replace(' ', '.'))
        elif op.name in ('SHORT_BINUNICODE', 'BINUNICODE', 'UNICODE',
                         'BINUNICODE8'):
            strings.append(arg)
        elif op.name == 'STACK_GLOBAL' and len(strings) >= 2:
            found.append(f'{strings[-2]}.{strings[-1]}')
    return found


def _allowed_global_names() -> set:
    from torch import _weights_only_unpickler as wou
    return set(wou._get_allowed_globals()) | set(wou._get_user_allowed_globals())


def checkpoint_globals(filename: str) -> List[str]:
    """The globals in a ``torch.save`` file that ``torch.load(weights_only=True)``
    would refuse: ``torch.serialization.get_unsafe_globals_in_checkpoint`` (torch
    >= 2.5) or the same static scan of its ``data.pkl``.

    Raises:
        ValueError: the file is not a ``torch.save`` zip archive.
    """
    if hasattr(torch.serialization, 'get_unsafe_globals_in_checkpoint'):
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(filename))
    if not zipfile.is_zipfile(filename):
        raise ValueError(f'{filename}: expected a checkpoint written by torch.save')
    with zipfile.ZipFile(filename) as zf:
        pkl = [n for n in zf.namelist() if n.endswith('/data.pkl') or n == 'data.pkl']
        if not pkl:
            raise ValueError(f'{filename}: no data.pkl (not a torch.save archive)')
        names = _pickle_globals(zf.read(pkl[0]))
    allowed = _allowed_global_names()
    return sorted(set(n for n in names if n not in allowed))


def total_grad_norm(grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """2-norm of all ``grads`` together (NaN / inf when any of them is):
    ``torch.nn.utils.get_total_norm`` (torch >= 2.6) or the same number from the
    per-tensor norms."""
    if hasattr(torch.nn.utils, 'get_total_norm'):
        return torch.nn.utils.get_total_norm(
            list(grads), norm_type=2.0, error_if_nonfinite=False)
    device = grads[0].device
    norms = [n.to(device, torch.float32) for n in torch._foreach_norm(list(grads), 2.0)]
    return torch.linalg.vector_norm(torch.stack(norms), 2.0)


def unwrap_safe_global(item: Any) -> Tuple[str, Any]:
    """``(name, object)`` of one entry of ``torch.serialization.get_safe_globals()``
    whichever way it was registered (a pair, an object, a 2.4 alias)."""
    if isinstance(item, tuple):
        return item[1], item[0]
    name = f'{item.__module__}.{item.__qualname__}'
    return name, getattr(item, '__wrapped_global__', item)
