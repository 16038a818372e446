"""Pretraining needs none of mmcv's C++ ops, nor mmdet / mmseg / clip-benchmark.

`bash tools/quickstart.sh` sets up the lite environment (mmcv-lite, no compiler;
tools/setup_env.sh --lite). This runs `import rils_mm` and two training iterations
of the quick-start config through mmengine's Runner in a process where `mmcv._ext`
(what mmcv-lite lacks), mmdet, mmseg, clip_benchmark, transformers and pycocotools cannot
be imported (and mmpretrain sees no transformers / pycocotools installed, as in the lite
setup), so a module-level import of any of them in the pretraining path, or a registry
name clashing with mmpretrain's placeholders for its multimodal models, fails here.
"""
import os
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

SCRIPT = r'''
import sys

import pytest
for name in ('mmcv._ext', 'mmdet', 'mmseg', 'clip_benchmark', 'transformers', 'pycocotools'):
    sys.modules[name] = None  # `import name` raises ImportError, find_spec gives None
# mmpretrain decides by installed distributions whether to register its multimodal
# models or placeholders (named e.g. 'CLIP'): make it see the lite setup's.
import importlib_metadata
_distribution = importlib_metadata.distribution


def distribution(name):
    if name in ('transformers', 'pycocotools'):
        raise importlib_metadata.PackageNotFoundError(name)
    return _distribution(name)


importlib_metadata.distribution = distribution

from mmengine.config import Config
from mmengine.runner import Runner
from mmengine.utils.dl_utils import mmcv_full_available

import rils_mm  # noqa: F401
from mmpretrain.utils.dependency import WITH_MULTIMODAL
from rils_mm.testing import generate_toy_corpus, shrink_toy_model

assert not mmcv_full_available()
assert not WITH_MULTIMODAL  # mmpretrain's placeholders are registered
try:
    import mmcv.ops  # noqa: F401
except ImportError:
    pass
else:
    raise AssertionError('mmcv.ops imported although mmcv._ext is blocked')

data, work = sys.argv[1], sys.argv[2]
generate_toy_corpus(data, num_train=32, num_val=16, image_size=32, shard_size=16)
cfg = Config.fromfile(sys.argv[3])
cfg.work_dir = work
shrink_toy_model(cfg.model)
for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
    cfg[key].dataset.data_root = data
cfg.train_dataloader.batch_size = 16
cfg.train_dataloader.dataset.pipeline[1].scale = 32
for key in ('val_dataloader', 'test_dataloader'):
    cfg[key].dataset.pipeline[1].scale = 32
    cfg[key].dataset.pipeline[2].crop_size = 32
cfg.train_cfg.max_epochs = 1
cfg.train_cfg.val_interval = 1
cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False, begin=0, end=2)]
cfg.default_hooks.checkpoint.interval = 1
runner = Runner.from_cfg(cfg)
runner.train()
assert runner.iter == 2, runner.iter
acc = runner.message_hub.get_scalar('val/accuracy/top1').current()
banned = sorted(m for m in sys.modules
                if m.split('.')[0] in ('mmdet', 'mmseg', 'clip_benchmark')
                and sys.modules[m] is not None)
assert not banned, banned
print('LITE_OK', runner.iter, acc)
'''


@pytest.mark.slow  # a fresh Python process that trains
def test_pretraining_runs_without_mmcv_ops_or_downstream_stacks(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (ROOT, os.environ.get('PYTHONPATH')) if p))
    out = subprocess.run(
        [sys.executable, '-c', SCRIPT, str(tmp_path / 'toy'), str(tmp_path / 'work'),
         osp.join(ROOT, 'configs', 'rils', 'rils_vittiny_toy.py')],
        env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'LITE_OK 2 ' in out.stdout, out.stdout[-2000:]
    # the checkpoint of the lite run is an ordinary one
    assert osp.isfile(tmp_path / 'work' / 'epoch_1.pth')
