"""The README's main job learns: zero-shot accuracy well above chance on held-out data."""
import importlib.util
import os.path as osp

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.mark.slow
def test_quickstart_learns_zero_shot(tmp_path):
    spec = importlib.util.spec_from_file_location(
        '_quickstart', osp.join(ROOT, 'tools', 'quickstart.py'))
    quickstart = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quickstart)
    # 4 of the configured 10 epochs (measured: 34.8 % at seed 0; the full job 39-46 %
    # over seeds 0-2); chance is 1/16
    acc, chance = quickstart.main(['--epochs', '4', '--seed', '0',
                                   '--data-root', str(tmp_path / 'toy'),
                                   '--work-dir', str(tmp_path / 'work')])
    assert chance == pytest.approx(100 / 16)
    assert acc > 3 * chance, acc
