"""Every path that loads a pretrained encoder ends with every encoder tensor equal to
the checkpoint's (tensor by tensor); converters round-trip with equal outputs."""
import os.path as osp
import runpy

import pytest
import torch
from mmengine.config import Config
from mmpretrain.registry import MODELS

import rils_mm  # noqa: F401
from rils_mm.testing import tiny_rils_cfg
from rils_mm.utils.model_convert import (
    build_open_clip_model,
    extract_backbone,
    from_open_clip,
    load_state_dict_file,
    save_state_dict_file,
    to_open_clip,
)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONVERTERS = osp.join(ROOT, 'tools', 'model_converters')


def _randomised(model, seed=0):
    """Give every tensor a distinct random value, so no equality holds by accident
    (zero biases, unit LayerNorm weights or sin-cos positions would match any re-init)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.state_dict().values():
            if p.dtype.is_floating_point:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model


@pytest.fixture(scope='module')
def pretrained(tmp_path_factory):
    root = tmp_path_factory.mktemp('ckpt')
    cfg = tiny_rils_cfg(img_size=32, context_length=16)
    model = _randomised(MODELS.build(cfg))
    path = root / 'rils_pretrain.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict(epoch=1)), path)
    backbone = {k[len('backbone.'):]: v for k, v in model.state_dict().items()
                if k.startswith('backbone.')}
    return dict(root=root, cfg=cfg, model=model, path=str(path), backbone=backbone)


def _assert_equal_tensors(module, expected):
    state = module.state_dict()
    missing = sorted(set(expected) - set(state))
    assert not missing, f'checkpoint tensors without a place in the model: {missing}'
    differ = [k for k, v in expected.items() if not torch.equal(state[k], v)]
    assert not differ, f'{len(differ)}/{len(expected)} tensors differ: {differ}'


def _vit_cfg(pretrained, **kw):
    bb = dict(pretrained['cfg']['backbone'])
    bb.pop('mask_ratio', None)
    bb.update(kw)
    return bb


def test_every_encoder_tensor_is_the_checkpoints(pretrained):
    # the test has teeth: without a checkpoint, init_weights leaves other values
    fresh = MODELS.build(_vit_cfg(pretrained))
    fresh.init_weights()
    assert any(not torch.equal(fresh.state_dict()[k], v)
               for k, v in pretrained['backbone'].items())
    assert len(pretrained['backbone']) == 4 + 2 * 13 + 2  # tokens/pos/patch, blocks, final LN


@pytest.mark.parametrize('as_list', [False, True])
def test_mmpretrain_image_classifier_pretrained_init_cfg(pretrained, as_list):
    init_cfg = dict(type='Pretrained', checkpoint=pretrained['path'], prefix='backbone.')
    if as_list:  # with another initialiser after it: the loaded values must win
        init_cfg = [init_cfg, dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)]
    cls_cfg = dict(
        type='ImageClassifier',
        backbone=_vit_cfg(pretrained, out_type='avg_featmap', final_norm=True,
                          init_cfg=init_cfg),
        neck=None,
        head=dict(type='LinearClsHead', num_classes=10, in_channels=64))
    model = MODELS.build(cls_cfg)
    model.init_weights()
    _assert_equal_tensors(model.backbone, pretrained['backbone'])


@pytest.mark.parametrize('suffix', ['.pth', '.safetensors'])
def test_extract_backbone_converter(pretrained, suffix):
    dst = str(pretrained['root'] / f'backbone{suffix}')
    main = runpy.run_path(osp.join(CONVERTERS, 'extract_backbone.py'), run_name='x')['main']
    main([pretrained['path'], dst])
    sd = load_state_dict_file(dst)
    assert set(sd) == set(pretrained['backbone'])
    for k, v in sd.items():
        assert torch.equal(v, pretrained['backbone'][k]), k
    if suffix == '.pth':  # mmengine's Pretrained init (no prefix) on the backbone alone
        vit = MODELS.build(_vit_cfg(pretrained,
                                    init_cfg=dict(type='Pretrained', checkpoint=dst)))
        vit.init_weights()
        _assert_equal_tensors(vit, pretrained['backbone'])
    with pytest.raises(KeyError, match='no .backbone.. tensors'):
        extract_backbone({'encoder.weight': torch.zeros(1)})


def test_load_from_in_a_runner(pretrained, tmp_path):
    """``load_from`` (mmengine Runner) of the pretraining checkpoint into a downstream
    classifier: the backbone keys match by name, after the model's own init."""
    from mmengine.runner import Runner
    cfg = Config(dict(
        model=dict(type='ImageClassifier', backbone=_vit_cfg(pretrained, out_type='cls_token'),
                   head=dict(type='LinearClsHead', num_classes=4, in_channels=64)),
        work_dir=str(tmp_path), load_from=pretrained['path'], default_scope='mmpretrain',
        env_cfg=dict(dist_cfg=dict(backend='gloo'))))
    runner = Runner.from_cfg(cfg)
    runner._init_model_weights()
    runner.load_or_resume()
    _assert_equal_tensors(runner.model.backbone, pretrained['backbone'])


def _embeds_ours(model, images, tokens):
    with torch.no_grad():
        return model.encode_image(images), model.encode_text(tokens)


def _embeds_open_clip(oc, images, tokens):
    with torch.no_grad():
        return (torch.nn.functional.normalize(oc.encode_image(images), dim=-1),
                torch.nn.functional.normalize(oc.encode_text(tokens), dim=-1))


def _inputs():
    from rils_mm.testing import fake_batch
    images, tokens, _ = fake_batch(4, img_size=32, context_length=16)
    return images, tokens


@pytest.mark.parametrize('suffix', ['.pth', '.safetensors'])
def test_ours_to_open_clip_gives_the_same_embeddings(pretrained, suffix):
    model = pretrained['model'].eval()
    images, tokens = _inputs()
    dst = str(pretrained['root'] / f'oc{suffix}')
    cfg_path = pretrained['root'] / 'tiny_cfg.py'
    cfg_path.write_text(f'model = {pretrained["cfg"]!r}\n')
    main = runpy.run_path(osp.join(CONVERTERS, 'open_clip_convert.py'), run_name='x')['main']
    main(['to-open-clip', str(cfg_path), pretrained['path'], dst])
    oc = build_open_clip_model(model)
    oc.load_state_dict(load_state_dict_file(dst), strict=True)
    oc.eval()
    zi, zt = _embeds_ours(model, images, tokens)
    oi, ot = _embeds_open_clip(oc, images, tokens)
    torch.testing.assert_close(oi, zi, atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(ot, zt, atol=2e-6, rtol=1e-5)
    assert torch.equal(oc.logit_scale, model.head.logit_scale)
    # the patch-embedding bias went into the positions: nothing was dropped
    assert model.backbone.patch_embed.projection.bias.abs().sum() > 0


def test_open_clip_to_ours_gives_the_same_embeddings(pretrained, tmp_path):
    model = MODELS.build(pretrained['cfg']).eval()
    oc = _randomised(build_open_clip_model(model), seed=1).eval()
    path = str(tmp_path / 'oc.safetensors')
    save_state_dict_file(oc.state_dict(), path)
    ours = from_open_clip(load_state_dict_file(path))
    missing, unexpected = model.load_state_dict(ours, strict=False)
    assert not unexpected
    assert all(k.startswith('neck.') for k in missing), missing  # only the RILS decoder
    images, tokens = _inputs()
    oi, ot = _embeds_open_clip(oc, images, tokens)
    zi, zt = _embeds_ours(model, images, tokens)
    torch.testing.assert_close(zi, oi, atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(zt, ot, atol=2e-6, rtol=1e-5)
    # and back: every open_clip tensor is reproduced, except the key bias (exactly
    # irrelevant to attention) which becomes zero
    back = to_open_clip(model.state_dict())
    assert set(back) == set(k for k in oc.state_dict() if k != 'attn_mask')
    for k, v in back.items():
        ref = oc.state_dict()[k]
        if k.startswith('visual.') and k.endswith('in_proj_bias'):
            d = v.numel() // 3
            assert torch.equal(v[:d], ref[:d]) and torch.equal(v[2 * d:], ref[2 * d:])
            assert not v[d:2 * d].any()
        else:
            assert torch.equal(v, ref), k


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_mmdet_and_mmseg_backbones_load_every_encoder_tensor(pretrained, scope, tmp_path):
    """The backbone as mmdet / mmseg configs build it (scoped type, Pretrained init_cfg):
    from the full pretraining checkpoint (prefix) and from the converter's output."""
    import importlib
    registry = importlib.import_module(f'{scope}.registry').MODELS
    bare = str(tmp_path / 'backbone.pth')
    runpy.run_path(osp.join(CONVERTERS, 'extract_backbone.py'),
                   run_name='x')['main']([pretrained['path'], bare])
    for init_cfg in (dict(type='Pretrained', checkpoint=pretrained['path'], prefix='backbone.'),
                     dict(type='Pretrained', checkpoint=bare)):
        cfg = _vit_cfg(pretrained, out_type='featmap', init_cfg=init_cfg)
        cfg['type'] = 'mmpretrain.RILSViT'
        vit = registry.build(cfg)
        vit.init_weights()
        _assert_equal_tensors(vit, pretrained['backbone'])
