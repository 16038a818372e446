"""rils_mm.utils.torch_compat: each torch-2.4 fallback gives what the newer API gives.

On the installed torch both ways run: the new API where it exists, and the fallback with
the new API hidden; on torch 2.4 (tools/run_tests_lowest_torch.sh) only the fallback."""
import operator
import os

import numpy as np
import pytest
import torch

from rils_mm.utils import torch_compat


def test_total_grad_norm_fallback_equals_the_plain_formula(monkeypatch):
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(3, 4, generator=g), torch.randn(7, generator=g)]
    expected = torch.sqrt(sum((x.double()**2).sum() for x in grads)).float()
    torch.testing.assert_close(torch_compat.total_grad_norm(grads), expected)
    monkeypatch.delattr(torch.nn.utils, 'get_total_norm', raising=False)
    torch.testing.assert_close(torch_compat.total_grad_norm(grads), expected)
    assert not torch.isfinite(torch_compat.total_grad_norm(grads + [torch.tensor([np.inf])]))


class _Unlisted:
    pass


def test_checkpoint_globals_fallback_finds_what_torch_refuses(tmp_path, monkeypatch):
    path = str(tmp_path / 'x.pth')
    torch.save({'w': torch.ones(2), 'odd': _Unlisted(), 'f': operator.add}, path)
    expected = {f'{__name__}._Unlisted', '_operator.add'}
    found = torch_compat.checkpoint_globals(path)
    assert set(found) == expected
    monkeypatch.delattr(torch.serialization, 'get_unsafe_globals_in_checkpoint',
                        raising=False)
    assert set(torch_compat.checkpoint_globals(path)) == expected
    with pytest.raises(ValueError, match='torch.save'):
        (tmp_path / 'plain.txt').write_text('no zip')
        torch_compat.checkpoint_globals(str(tmp_path / 'plain.txt'))


def _pickled_global(path, module, name):
    """A torch.save-like archive whose data.pkl calls ``module.name(3)``."""
    import zipfile
    data = (b'\x80\x02c' + module.encode() + b'\n' + name.encode() + b'\nK\x03\x85R.')
    with zipfile.ZipFile(path, 'w') as z:
        z.writestr('archive/data.pkl', data)
        z.writestr('archive/version', '3\n')
        z.writestr('archive/byteorder', 'little')


def _triple(x):
    return 3 * x


def test_named_entries_load_through_the_torch24_alias(tmp_path, monkeypatch):
    """A pair (obj, 'some.name') lets a pickle's global 'some.name' resolve to obj,
    through torch's own pairs or, as on torch 2.4, through a named alias function."""
    path = str(tmp_path / 'named.pth')
    _pickled_global(path, 'somewhere.else', 'triple')
    kept = list(torch.serialization.get_safe_globals())
    try:
        for takes_names in (True, False):
            if takes_names and not torch_compat.safe_globals_take_names():
                continue
            torch.serialization.clear_safe_globals()
            torch.serialization.add_safe_globals(kept)
            monkeypatch.setattr(torch_compat, 'safe_globals_take_names', lambda v=takes_names: v)
            with pytest.raises(Exception):
                torch.load(path, weights_only=True)
            torch_compat.add_safe_globals([(_triple, 'somewhere.else.triple')])
            assert torch.load(path, weights_only=True) == 9
            names = dict(torch_compat.unwrap_safe_global(e)
                         for e in torch.serialization.get_safe_globals())
            assert names['somewhere.else.triple'] is _triple
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(kept)
    assert os.path.exists(path)
