"""With transformers 5.x installed, rils-mm still imports, builds and trains.

mmpretrain 1.2 imports its multimodal models (transformers 4.x code) when transformers
and pycocotools are installed; under transformers 5.x that import fails. A stand-in
transformers 5 package (metadata version 5.0.0, none of the 4.x modules mmpretrain's
multimodal code imports) is put first on the path of a fresh interpreter: plain
``import mmpretrain.models`` must then fail as it does with the real 5.x (so the stand-in
is faithful), while after ``import rils_mm`` the models build, a RILS step runs, and a
multimodal model says what to pin.
"""
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _fake_transformers5(tmp_path):
    site = tmp_path / 'site'
    pkg = site / 'transformers'
    pkg.mkdir(parents=True)
    (pkg / '__init__.py').write_text("__version__ = '5.0.0'\n")
    info = site / 'transformers-5.0.0.dist-info'
    info.mkdir()
    (info / 'METADATA').write_text('Metadata-Version: 2.1\nName: transformers\nVersion: 5.0.0\n')
    return str(site)


def _run(site, code):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([site, ROOT]))
    return subprocess.run([sys.executable, '-W', 'ignore', '-c', textwrap.dedent(code)],
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_rils_mm_works_with_transformers5(tmp_path):
    pytest.importorskip('pycocotools', reason='mmpretrain skips multimodal code without it')
    site = _fake_transformers5(tmp_path)

    plain = _run(site, 'import mmpretrain.models')
    assert plain.returncode != 0, 'the stand-in should break mmpretrain.models like 5.x'
    assert 'transformers' in plain.stderr

    ours = _run(site, '''
        import transformers, torch
        assert transformers.__version__ == '5.0.0'
        import rils_mm
        import mmpretrain.models  # now imports (multimodal models left out)
        from mmpretrain.registry import MODELS
        from rils_mm.testing import fake_batch, tiny_rils_cfg
        model = MODELS.build(tiny_rils_cfg())
        images, tokens, noise = fake_batch(2, num_patches=16)
        losses = model.forward_train(images, tokens, mask_noise=noise)
        (losses['loss_contrastive'] + losses['loss_recon']).backward()
        assert all(torch.isfinite(v).all() for v in losses.values())
        try:
            MODELS.build(dict(type='BlipCaption'))
        except ImportError as e:
            print('PIN:', e)
        ''')
    assert ours.returncode == 0, ours.stderr[-3000:]
    assert 'PIN: ' in ours.stdout
    pin = ours.stdout.split('PIN: ', 1)[1]
    assert 'transformers 5.0.0' in pin and '"transformers>=4.38,<5"' in pin
    assert 'BlipCaption' in pin
