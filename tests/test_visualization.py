"""Patch-text maps (Eq. 8 for chosen phrases), the optional TensorBoard backend and
the curve plotter, on tiny models and handwritten logs (seconds)."""
import importlib.util
import json
import math
import os
import os.path as osp

import numpy as np
import open_clip
import pytest
import torch
from mmengine.visualization import LocalVisBackend
from mmpretrain.registry import MODELS, VISBACKENDS
from PIL import Image

import rils_mm  # noqa: F401
from rils_mm.testing import tiny_rils_cfg
from rils_mm.visualization import OptionalTensorboardVisBackend, draw_patch_text, patch_text_probs

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PHRASES = ['a red circle', 'a blue square', 'a green triangle']


@pytest.fixture(scope='module')
def tiny_model():
    torch.manual_seed(0)
    model = MODELS.build(tiny_rils_cfg())
    model.init_weights()
    return model.eval()


def test_patch_text_probs_is_eq8_for_the_phrases(tiny_model):
    model = tiny_model
    image = torch.randn(1, 3, 32, 32)
    noise = torch.rand(1, 16, generator=torch.Generator().manual_seed(1))
    out = patch_text_probs(model, image, PHRASES, mask_noise=noise)

    tau1, tau2 = 0.04, 0.1  # the tiny config's RILSHead defaults (paper Sec. 3.3)
    assert (out['tau1'], out['tau2']) == (tau1, tau2)
    with torch.no_grad():
        tokens = open_clip.tokenize(PHRASES, context_length=16)
        h = model.text_encoder(tokens)
        z_text = [v / v.norm() for v in h @ model.head.text_projection.weight.t()]  # Eq. 4
        f = model.backbone.forward_intact(image)[0, 1:]  # 16 patch features, Eq. 1
        latent, mask, ids_restore = model.backbone(image, mask=True, noise=noise)
        g = model.neck(latent, ids_restore)[0]  # Eq. 3
        theta = model.head.image_projection.weight
        for k in range(16):  # Eq. 7-8 for every patch k, phrase by phrase
            for feats, tau, name in ((f, tau1, 'p'), (g, tau2, 'q')):
                z = theta @ feats[k]
                z = z / z.norm()
                logits = [float(z @ t) / tau for t in z_text]
                expected = [math.exp(v) / sum(math.exp(u) for u in logits) for v in logits]
                assert out[name][k].tolist() == pytest.approx(expected, rel=1e-4, abs=1e-6)
    # the smallest (1 - 0.75) * 16 = 4 noise values stay visible
    visible = set(noise[0].argsort()[:4].tolist())
    assert out['mask'].tolist() == [0.0 if k in visible else 1.0 for k in range(16)]
    assert out['grid'] == (4, 4)
    assert not model.training  # state restored


def test_patch_text_probs_rejects_bad_input(tiny_model):
    with pytest.raises(ValueError, match='at least two phrases'):
        patch_text_probs(tiny_model, torch.randn(1, 3, 32, 32), ['a red circle'])
    with pytest.raises(ValueError, match=r'one image \(1, 3, H, W\), got \(2, 3, 32, 32\)'):
        patch_text_probs(tiny_model, torch.randn(2, 3, 32, 32), PHRASES)


def test_draw_patch_text_png(tiny_model, tmp_path):
    phrases = PHRASES + ['a yellow cross', 'a red square', 'a blue circle']
    result = patch_text_probs(tiny_model, torch.randn(1, 3, 32, 32), phrases)
    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    out = draw_patch_text(image, phrases, result, str(tmp_path / 'maps.png'), panel_px=100,
                          title='tiny')
    with Image.open(out) as im:  # one column per phrase (>= 4), two rows + title strip
        assert im.size == (6 * 100, 2 * 100 + 44)
        assert im.format == 'PNG'
        assert len(set(map(tuple, np.asarray(im.convert('RGB')).reshape(-1, 3)))) > 100


def _scalar_files(save_dir):
    return [osp.join(d, f) for d, _, files in os.walk(save_dir) for f in files]


def test_optional_tensorboard_backend(tmp_path, monkeypatch):
    assert VISBACKENDS.get('OptionalTensorboardVisBackend') is OptionalTensorboardVisBackend
    # without TensorBoard: a silent no-op next to LocalVisBackend
    monkeypatch.setattr(OptionalTensorboardVisBackend, 'available', staticmethod(lambda: False))
    off = OptionalTensorboardVisBackend(str(tmp_path / 'off'))
    off.add_scalars({'loss_recon': 1.5, 'aligned_ratio': 0.25}, step=3)
    off.add_scalar('lr', 1e-3, step=3)
    off.close()
    assert not osp.exists(tmp_path / 'off') or not _scalar_files(tmp_path / 'off')
    monkeypatch.undo()
    # with TensorBoard (the test environment installs it, requirements/tests.txt): mmengine's
    # own backend writes event files, and TensorBoard's reader finds every scalar in them
    assert OptionalTensorboardVisBackend.available()
    on = OptionalTensorboardVisBackend(str(tmp_path / 'on'))
    for step in (10, 20):
        on.add_scalars({'loss_recon': 1.5 / step, 'aligned_ratio': step / 40}, step=step)
    on.add_scalar('lr', 1e-3, step=20)
    on.close()
    events = [f for f in _scalar_files(tmp_path / 'on') if 'events.out' in f]
    assert len(events) == 1
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(events[0])
    acc.Reload()
    assert sorted(acc.Tags()['scalars']) == ['aligned_ratio', 'loss_recon', 'lr']
    assert [(e.step, e.value) for e in acc.Scalars('loss_recon')] == [
        (10, pytest.approx(0.15)), (20, pytest.approx(0.075))]
    assert [(e.step, e.value) for e in acc.Scalars('lr')] == [(20, pytest.approx(1e-3))]


def test_default_runtime_logs_curves_locally_and_to_tensorboard():
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'rils', 'rils_vittiny_toy.py'))
    assert [b['type'] for b in cfg.visualizer.vis_backends] == [
        'LocalVisBackend', 'OptionalTensorboardVisBackend']
    assert issubclass(VISBACKENDS.get('LocalVisBackend'), LocalVisBackend)


def load_plot_logs():
    spec = importlib.util.spec_from_file_location(
        '_plot_logs', osp.join(ROOT, 'tools', 'analysis', 'plot_logs.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_run(path, n, scale=1.0):
    """A scalars.json as mmengine's LocalVisBackend writes it: train lines with
    iter/epoch/step, one validation line whose step is the epoch."""
    vis = path / '20260101_000000' / 'vis_data'
    vis.mkdir(parents=True)
    with open(vis / 'scalars.json', 'w') as f:
        for i in range(1, n + 1):
            f.write(json.dumps(dict(
                lr=1e-3 * i / n, loss=3.0 * scale / i, loss_contrastive=2.0 * scale / i,
                loss_recon=1.0 * scale / i, aligned_ratio=i / n, logit_scale=14.0 + i,
                epoch=1, iter=i * 10, step=i * 10)) + '\n')
        f.write(json.dumps({'accuracy/top1': 40.0, 'step': 1}) + '\n')
    return str(vis / 'scalars.json')


def test_plot_logs_reads_runs_and_plots(tmp_path):
    plot_logs = load_plot_logs()
    a = _write_run(tmp_path / 'run_a', 5)
    _write_run(tmp_path / 'run_b', 3, scale=2.0)
    curves, path = plot_logs.load_scalars(str(tmp_path / 'run_a'))  # work dir -> newest file
    assert path == a
    assert curves['loss_recon'] == [(10 * i, 1.0 / i) for i in range(1, 6)]
    assert curves['accuracy/top1'] == [(1, 40.0)]
    assert 'iter' not in curves and 'epoch' not in curves

    out = tmp_path / 'plots' / 'c.png'
    plot_logs.main([str(tmp_path / 'run_a'), a.replace('run_a', 'run_b'), '--keys',
                    'loss_recon', 'aligned_ratio', '--out', str(out)])
    with Image.open(out) as im:  # 2 panels of 420 x 320 px
        assert im.size == (2 * 420, 320)
    assert plot_logs._label(a) == 'run_a'


def test_plot_logs_errors_name_the_file(tmp_path):
    plot_logs = load_plot_logs()
    with pytest.raises(SystemExit, match='nowhere: no such file or directory'):
        plot_logs.main([str(tmp_path / 'nowhere')])
    (tmp_path / 'empty').mkdir()
    with pytest.raises(SystemExit, match=r'no \*/vis_data/scalars.json inside'):
        plot_logs.main([str(tmp_path / 'empty')])
    bad = tmp_path / 'bad.json'
    bad.write_text('{"loss": 1.0, "step": 1}\nnot json\n')
    with pytest.raises(SystemExit, match=r'bad.json:2: not a JSON line'):
        plot_logs.main([str(bad)])
    a = _write_run(tmp_path / 'run_a', 2)
    with pytest.raises(SystemExit, match=r"no run logged 'loss_pixel' \(.*scalars.json\); "
                                         r'available: accuracy/top1, aligned_ratio'):
        plot_logs.main([a, '--keys', 'loss_pixel'])
