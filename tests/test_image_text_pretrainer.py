"""RILS, CLIP, MAE+CLIP and SLIP share :class:`ImageTextPretrainer`; what a checkpoint of
theirs holds (parameter and buffer names, in order, and shapes) is what the classes held
before they shared it, so checkpoints written by the older classes still load strictly.

``tests/recorded/image_text_state_dicts.json`` was written by the classes as they were
before the shared base (commit a1a1607) with

    cp tests/test_image_text_pretrainer.py <checkout of a1a1607>/tests/
    cd <checkout of a1a1607> && PYTHONPATH=$PWD python tests/test_image_text_pretrainer.py --record

and is never edited by hand.
"""
import json
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS

import rils_mm  # noqa: F401  (registers the components)
from rils_mm.testing import fake_batch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
RECORDED = osp.join(ROOT, 'tests', 'recorded', 'image_text_state_dicts.json')
# Toy models are built for real (their checkpoints are loaded below); the paper-scale ones on
# the meta device (names and shapes only).
TOY = ['rils/rils_vittiny_toy.py', 'clip/clip_vittiny_toy.py',
       'mae_clip/mae-clip_vittiny_toy.py', 'slip/slip_vittiny_toy.py',
       'two_stage/mim-lit_vittiny_toy.py']
PAPER = ['rils/rils_vitb16_l20m.py', 'clip/clip_vitb16_l20m.py',
         'mae_clip/mae-clip_vitb16_l20m.py', 'slip/slip_vitb16_l20m.py']


def build(path, device='cpu'):
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    with torch.device(device):
        return MODELS.build(Config.fromfile(osp.join(ROOT, 'configs', path)).model)


def checkpoint_layout(model):
    """[name, shape] of every state-dict entry, in state-dict order."""
    return [[k, list(v.shape)] for k, v in model.state_dict().items()]


def recorded():
    with open(RECORDED) as f:
        return json.load(f)


@pytest.mark.parametrize('path', TOY)
def test_old_checkpoints_load_strictly(path):
    layout = recorded()[path]
    model = build(path)
    assert checkpoint_layout(model) == layout
    g = torch.Generator().manual_seed(0)
    old = {k: torch.randn(shape, generator=g) for k, shape in layout}
    result = model.load_state_dict(old, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for k, v in model.state_dict().items():
        assert torch.equal(v, old[k].to(v.dtype)), k  # (BatchNorm counters are integers)


@pytest.mark.parametrize('path', PAPER)
def test_paper_models_keep_their_checkpoint_layout(path):
    assert checkpoint_layout(build(path, 'meta')) == recorded()[path]


def test_loss_hands_forward_train_the_stacked_caption_tokens():
    """``loss`` = ``forward_train(images, tokens (B, L))``, the first view if several."""
    from mmpretrain.structures import DataSample
    model = build('rils/rils_vittiny_toy.py')
    images, tokens, noise = fake_batch(2, img_size=64, context_length=32)
    samples = [DataSample() for _ in range(2)]
    for ds, t in zip(samples, tokens):
        ds.set_field(t, 'text_tokens')
    torch.manual_seed(1)
    via_loss = model.loss([images, images.flip(0)], samples, mask_noise=noise)
    torch.manual_seed(1)
    direct = model.forward_train(images, tokens, mask_noise=noise)
    assert via_loss.keys() == direct.keys()
    for k in direct:
        torch.testing.assert_close(via_loss[k], direct[k], rtol=0, atol=0)


if __name__ == '__main__' and sys.argv[1:] == ['--record']:
    import os
    os.makedirs(osp.dirname(RECORDED), exist_ok=True)
    out = {p: checkpoint_layout(build(p)) for p in TOY}
    out.update({p: checkpoint_layout(build(p, 'meta')) for p in PAPER})
    with open(RECORDED, 'w') as f:  # one state-dict entry a line
        f.write('{\n' + ',\n'.join(
            f'{json.dumps(p)}: [\n' + ',\n'.join(json.dumps(e) for e in layout) + '\n]'
            for p, layout in out.items()) + '\n}\n')
    print(f'wrote {RECORDED}: {len(out)} models')
