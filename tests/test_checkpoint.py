"""Tests for safe (``weights_only=True``) checkpoint loading.

See :mod:`rils_mm.utils.checkpoint`.
"""
import builtins
import copy
import operator
import os
import os.path as osp
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.data import Dataset

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from mmengine.hooks import Hook  # noqa: E402
from mmengine.logging import HistoryBuffer  # noqa: E402
from mmengine.model import BaseModel  # noqa: E402
from mmengine.runner import Runner, load_checkpoint  # noqa: E402
from mmengine.runner.checkpoint import CheckpointLoader  # noqa: E402

from rils_mm.utils.checkpoint import (  # noqa: E402
    CHECKPOINT_SAFE_GLOBALS,
    UnsafeCheckpointError,
    allow_checkpoint_types,
    load_from_local,
    register_checkpoint_safety,
)
from rils_mm.utils.torch_compat import checkpoint_globals, unwrap_safe_global  # noqa: E402

register_checkpoint_safety()

EPOCHS, ITERS_PER_EPOCH = 2, 4


class ToyDataset(Dataset):
    """8 fixed samples of a 4 -> 2 regression, with a dataset meta."""

    def __init__(self):
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randn(8, 4, generator=gen)
        self.y = torch.randn(8, 2, generator=gen)

    @property
    def metainfo(self):
        return dict(classes=('red circle', 'blue square'))

    def __len__(self):
        return len(self.x)

    def __getitem__(self, idx):
        return dict(inputs=self.x[idx], targets=self.y[idx])


class ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 2)

    def forward(self, inputs, targets=None, mode='tensor'):
        out = self.linear(inputs)
        if mode == 'loss':
            return dict(loss=((out.float() - targets)**2).mean())
        if mode == 'predict':
            return [dict(pred=o) for o in out]
        return out


class RecordIterHook(Hook):
    """Records the (epoch, iter) of every training iteration it sees."""

    def __init__(self):
        self.seen = []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.seen.append((runner.epoch, runner.iter))


def _build_runner(work_dir, name, **kwargs):
    torch.manual_seed(0)  # same initial weights for every runner
    hook = RecordIterHook()
    runner = Runner(
        model=ToyModel(),
        work_dir=str(work_dir),
        experiment_name=name,
        train_dataloader=dict(
            dataset=ToyDataset(),
            sampler=dict(type='DefaultSampler', shuffle=True),
            collate_fn=dict(type='default_collate'),
            batch_size=2,
            num_workers=0),
        optim_wrapper=dict(
            type='OptimWrapper',
            optimizer=dict(type='AdamW', lr=1e-2, weight_decay=0.05)),
        param_scheduler=[
            dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
                 end=4),
            dict(type='CosineAnnealingLR', by_epoch=False, begin=4, end=8,
                 T_max=4),
        ],
        train_cfg=dict(by_epoch=True, max_epochs=EPOCHS),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1)),
        custom_hooks=[hook],
        randomness=dict(seed=0),
        **kwargs)
    return runner, hook


@pytest.fixture(scope='module')
def full_run(tmp_path_factory):
    """An uninterrupted 2-epoch run; yields (work_dir, final state dict)."""
    work_dir = tmp_path_factory.mktemp('full_run')
    runner, hook = _build_runner(work_dir, 'ckpt_full_run')
    runner.train()
    assert hook.seen == [(e, e * ITERS_PER_EPOCH + i) for e in range(EPOCHS)
                         for i in range(ITERS_PER_EPOCH)]
    state = copy.deepcopy(runner.model.state_dict())
    return work_dir, state


@pytest.fixture
def torch_load_calls(monkeypatch):
    """Records the keyword arguments of every ``torch.load`` call."""
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, 'load', spy)
    return calls


def _safe_global_map():
    """Name -> object of everything allow-listed through add_safe_globals."""
    return dict(
        unwrap_safe_global(item)
        for item in torch.serialization.get_safe_globals())


def test_register_is_idempotent():
    before = list(torch.serialization.get_safe_globals())
    register_checkpoint_safety()
    register_checkpoint_safety()
    assert len(torch.serialization.get_safe_globals()) == len(before)
    assert CheckpointLoader._get_checkpoint_loader('/a/b.pth') \
        is load_from_local
    # Other schemes are untouched.
    assert CheckpointLoader._get_checkpoint_loader('https://x/y.pth') \
        is not load_from_local


@pytest.mark.slow  # a Runner (full_run)
def test_saved_checkpoint_needs_only_allow_listed_globals(full_run):
    work_dir, _ = full_run
    for epoch in range(1, EPOCHS + 1):
        path = osp.join(work_dir, f'epoch_{epoch}.pth')
        assert checkpoint_globals(path) == []
        ckpt = load_from_local(path, map_location='cpu')
        assert set(ckpt) >= {
            'meta', 'state_dict', 'message_hub', 'optimizer',
            'param_schedulers'
        }
        assert ckpt['meta']['epoch'] == epoch
        assert ckpt['meta']['seed'] == 0
        assert ckpt['meta']['dataset_meta'] == ToyDataset().metainfo
        buffers = ckpt['message_hub']['log_scalars']
        assert isinstance(buffers['train/loss'], HistoryBuffer)
        assert buffers['train/loss'].current() == pytest.approx(
            buffers['train/loss'].data[0][-1])
        assert isinstance(ckpt['message_hub']['runtime_info']['eta'],
                          np.floating)


@pytest.mark.slow  # Runners
def test_resume_continues_and_matches_uninterrupted_run(
        full_run, tmp_path, torch_load_calls):
    full_dir, full_state = full_run
    ckpt = osp.join(full_dir, 'epoch_1.pth')
    runner, hook = _build_runner(
        tmp_path, 'ckpt_resumed_run', load_from=ckpt, resume=True)
    runner.train()

    # Only the second epoch ran, starting right after the checkpoint.
    assert hook.seen == [(1, ITERS_PER_EPOCH + i)
                         for i in range(ITERS_PER_EPOCH)]
    assert runner.epoch == EPOCHS
    assert runner.iter == EPOCHS * ITERS_PER_EPOCH
    # Optimizer, scheduler and weights were restored: same end point.
    state = runner.model.state_dict()
    assert state.keys() == full_state.keys()
    for key in state:
        assert torch.allclose(state[key], full_state[key], rtol=0, atol=1e-7)
    # The resume went through torch.load(weights_only=True).
    assert torch_load_calls
    assert all(call.get('weights_only') is True for call in torch_load_calls)


@pytest.mark.slow  # Runners
def test_load_from_and_load_checkpoint_use_safe_loader(
        full_run, tmp_path, torch_load_calls):
    full_dir, full_state = full_run
    ckpt = osp.join(full_dir, f'epoch_{EPOCHS}.pth')

    model = ToyModel()
    load_checkpoint(model, ckpt, map_location='cpu')
    for key, value in model.state_dict().items():
        assert torch.equal(value, full_state[key])

    runner, _ = _build_runner(tmp_path, 'ckpt_load_from', load_from=ckpt)
    runner.load_or_resume()
    for key, value in runner.model.state_dict().items():
        assert torch.equal(value, full_state[key])

    assert len(torch_load_calls) == 2
    assert all(call.get('weights_only') is True for call in torch_load_calls)


@pytest.mark.slow  # a Runner (full_run)
def test_checkpoints_of_either_numpy_load(full_run, tmp_path):
    """Files written under numpy 1.x name ``numpy.core.multiarray``, under
    numpy 2 ``numpy._core.multiarray``: either loads with either numpy."""
    written, other = ((b'numpy._core.multiarray', b'numpy.core.multiarray')
                      if int(np.__version__.split('.')[0]) >= 2 else
                      (b'numpy.core.multiarray', b'numpy._core.multiarray'))
    full_dir, _ = full_run
    src = osp.join(full_dir, 'epoch_1.pth')
    dst = str(tmp_path / 'numpy1.pth')
    with zipfile.ZipFile(src) as zin, \
            zipfile.ZipFile(dst, 'w', zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith('/data.pkl'):
                assert written in data
                data = data.replace(written, other)
            zout.writestr(info, data)
    ckpt = load_from_local(dst)
    assert isinstance(ckpt['message_hub']['runtime_info']['eta'], np.float64)


# ---------------------------------------------------------------------------
# Refusals
# ---------------------------------------------------------------------------
def _side_effect(path):
    with open(path, 'w') as f:
        f.write('pwned')
    return 0


class _Malicious:
    """Unpickling calls ``_side_effect(marker)``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (_side_effect, (self.marker, ))


class _OsSystem:

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


class _GetattrEscape:
    """Tries to reach beyond HistoryBuffer's statistics through getattr."""

    def __reduce__(self):
        return (getattr, (HistoryBuffer, '__init__'))


def _save_with(obj, path):
    model = ToyModel()
    torch.save(dict(state_dict=model.state_dict(), meta=dict(x=obj)), path)


@pytest.mark.parametrize('kind', ['module_function', 'os_system'])
def test_arbitrary_object_is_refused(tmp_path, kind):
    marker = tmp_path / 'side_effect_happened'
    path = str(tmp_path / f'evil_{kind}.pth')
    if kind == 'module_function':
        _save_with(_Malicious(str(marker)), path)
        refused = f'{_side_effect.__module__}._side_effect'
    else:
        _save_with(_OsSystem(str(marker)), path)
        refused = f'{os.system.__module__}.system'  # posix.system

    with pytest.raises(UnsafeCheckpointError) as excinfo:
        load_checkpoint(ToyModel(), path, map_location='cpu')
    message = str(excinfo.value)
    assert path in message
    assert refused in message
    assert 'allow_checkpoint_types' in message
    # Chained to torch's own refusal, and never retried unsafely.
    assert isinstance(excinfo.value.__cause__, pickle.UnpicklingError)
    assert isinstance(excinfo.value, pickle.UnpicklingError)
    assert not marker.exists()


def test_env_var_cannot_switch_safety_off(tmp_path, monkeypatch):
    """weights_only=True is passed explicitly, which the env var can't undo."""
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    marker = tmp_path / 'side_effect_happened'
    path = str(tmp_path / 'evil_env.pth')
    _save_with(_Malicious(str(marker)), path)
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint(ToyModel(), path, map_location='cpu')
    assert not marker.exists()


def test_getattr_is_restricted_to_history_buffer_statistics(tmp_path):
    path = str(tmp_path / 'getattr.pth')
    _save_with(_GetattrEscape(), path)
    with pytest.raises(UnsafeCheckpointError) as excinfo:
        load_checkpoint(ToyModel(), path, map_location='cpu')
    assert path in str(excinfo.value)
    assert '__init__' in str(excinfo.value)


def test_allow_checkpoint_types_admits_a_trusted_type(tmp_path):
    path = str(tmp_path / 'trusted.pth')
    _save_with(_Trusted(3), path)
    with pytest.raises(UnsafeCheckpointError, match='_Trusted'):
        load_from_local(path)
    allow_checkpoint_types(_Trusted)
    try:
        assert load_from_local(path)['meta']['x'].value == 3
    finally:
        # Keep the process-wide allow-list as it was for other tests.
        kept = [
            g for g in torch.serialization.get_safe_globals()
            if g is not _Trusted
        ]
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(kept)


class _Trusted:

    def __init__(self, value):
        self.value = value


def test_allow_list_is_exact_and_not_broad():
    names = _safe_global_map()
    expected = {
        'mmengine.logging.history_buffer.HistoryBuffer',
        'builtins.getattr',
        'numpy.ndarray',
        'numpy._core.multiarray._reconstruct',
        'numpy.core.multiarray._reconstruct',
        'numpy._core.multiarray.scalar',
        'numpy.core.multiarray.scalar',
        'numpy.dtype',
        'numpy.dtypes.Float64DType',
        'numpy.dtypes.Int64DType',
    }
    ours = set()
    for item in CHECKPOINT_SAFE_GLOBALS:
        ours.add(item[1] if isinstance(item, tuple) else
                 f'{item.__module__}.{item.__qualname__}')
    assert ours == expected
    assert expected <= set(names)

    allowed_objects = list(names.values())
    dangerous = [
        builtins.getattr, builtins.setattr, builtins.eval, builtins.exec,
        builtins.compile, builtins.open, builtins.__import__, builtins.type,
        builtins.object, os.system, os.popen, subprocess.Popen,
        operator.attrgetter, operator.methodcaller, pickle.loads, np.load,
        torch.load
    ]
    for obj in dangerous:
        assert not any(obj is allowed for allowed in allowed_objects), obj
    for name in ('builtins.eval', 'builtins.exec', 'os.system',
                 'posix.system', 'subprocess.Popen', 'builtins.__import__',
                 'functools.partial', 'numpy.load'):
        assert name not in names
    # The 'builtins.getattr' entry is a narrow stand-in, not getattr itself.
    stand_in = names['builtins.getattr']
    assert stand_in is not builtins.getattr
    assert stand_in(HistoryBuffer, 'mean') is HistoryBuffer.mean
    for obj, attr in ((HistoryBuffer, '__init__'), (HistoryBuffer,
                                                     '__dict__'),
                      (os, 'system'), (np, 'load')):
        with pytest.raises(pickle.UnpicklingError):
            stand_in(obj, attr)


def test_url_checkpoints_are_downloaded_then_loaded_safely(tmp_path):
    """http(s):// goes through our loader (mmengine's used weights_only=False).
    urllib serves file:// URLs, so the download path runs offline."""
    from rils_mm.utils.checkpoint import load_from_http
    assert CheckpointLoader._schemes['https://'] is load_from_http
    assert CheckpointLoader._schemes['http://'] is load_from_http
    good, evil = tmp_path / 'src' / 'good.pth', tmp_path / 'src' / 'evil.pth'
    good.parent.mkdir()
    torch.save(ToyModel().state_dict(), good)
    marker = tmp_path / 'side_effect_happened'
    _save_with(_OsSystem(str(marker)), str(evil))
    cache = tmp_path / 'cache'
    state = load_from_http(good.as_uri(), map_location='cpu', model_dir=str(cache))
    assert set(state) == set(ToyModel().state_dict())
    assert (cache / 'good.pth').is_file()
    with pytest.raises(UnsafeCheckpointError, match='evil.pth'):
        load_from_http(evil.as_uri(), map_location='cpu', model_dir=str(cache))
    assert not marker.exists()
