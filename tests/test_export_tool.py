"""tools/model_converters/export_model.py: every target written from a Runner-style
checkpoint, in fp32 and bf16, with the metadata a loader needs."""
import importlib.util
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmpretrain.registry import MODELS
from safetensors.torch import load_file

import rils_mm  # noqa: F401
from rils_mm.testing import tiny_rils_cfg
from rils_mm.utils.export import extract_backbone, read_metadata, sha256_file, to_timm

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _tool():
    spec = importlib.util.spec_from_file_location(
        'export_model', osp.join(ROOT, 'tools', 'model_converters', 'export_model.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _checkpoint(tmp_path):
    cfg_path = str(tmp_path / 'tiny_rils.py')
    Config(dict(model=tiny_rils_cfg(img_size=32, context_length=16))).dump(cfg_path)
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(cfg_path).model)
    src = str(tmp_path / 'epoch_1.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict(epoch=1)), src)
    return cfg_path, src, model.state_dict()


def test_export_tool_writes_every_target(tmp_path):
    cfg, src, sd = _checkpoint(tmp_path)
    tool = _tool()
    dst = str(tmp_path / 'vit_bf16.safetensors')
    meta = tool.main(['timm', cfg, src, dst, '--dtype', 'bf16'])
    written = load_file(dst)
    expected = to_timm(extract_backbone(sd))
    assert written.keys() == expected.keys()
    for k, v in expected.items():
        assert written[k].dtype == torch.bfloat16
        torch.testing.assert_close(written[k], v.to(torch.bfloat16), atol=0, rtol=0)
    header = read_metadata(dst)
    assert header['dtype'] == 'bf16' and header['layout'] == 'timm'
    assert header['source_sha256'] == sha256_file(src) == meta['source_sha256']
    assert header['config'] == 'tiny_rils' and header['method'] == 'RILS'
    import timm  # timm's own loader reads the file strictly
    vit = timm.create_model('vit_tiny_patch16_224', pretrained=True, num_classes=0,
                            global_pool='avg', fc_norm=False, img_size=32, patch_size=8,
                            embed_dim=64, depth=2, num_heads=4, mlp_ratio=2,
                            pretrained_cfg_overlay=dict(file=dst))
    for k, v in vit.state_dict().items():
        torch.testing.assert_close(v, written[k].float(), atol=0, rtol=0)

    dst = str(tmp_path / 'bb.safetensors')
    tool.main(['backbone', cfg, src, dst])
    written = load_file(dst)
    for k, v in extract_backbone(sd).items():
        assert written[k].dtype == torch.float32 and torch.equal(written[k], v)
    assert read_metadata(dst)['layout'] == 'backbone'

    hf = str(tmp_path / 'hf')
    tool.main(['hf-clip', cfg, src, hf])
    assert read_metadata(osp.join(hf, 'model.safetensors'))['layout'] == 'hf_clip'
    assert osp.isfile(osp.join(hf, 'vocab.json'))
    oc = str(tmp_path / 'oc')
    tool.main(['open-clip', cfg, src, oc, '--tower', 'native'])
    with open(osp.join(oc, 'open_clip_config.json')) as f:
        assert json.load(f)['rils_mm']['vision_tower'] == 'open_clip'
    assert read_metadata(osp.join(oc, 'open_clip_model.safetensors'))['method'] == 'RILS'


def test_export_tool_refuses_a_folder_for_a_file_target(tmp_path):
    cfg, src, _ = _checkpoint(tmp_path)
    with pytest.raises(ValueError, match=r'timm writes one file.*\.safetensors'):
        _tool().main(['timm', cfg, src, str(tmp_path / 'out_dir')])


OPEN_CLIP_CHILD = r'''
import sys, torch, torch.nn.functional as F, open_clip
folder, data = sys.argv[1:]
d = torch.load(data)
model = open_clip.create_model('local-dir:' + folder).eval()
with torch.no_grad():
    zi = F.normalize(model.encode_image(d['images']), dim=-1)
    zt = F.normalize(model.encode_text(d['tokens']), dim=-1)
torch.save(dict(zi=zi, zt=zt), data + '.out')
assert not any(m.startswith('rils_mm') for m in sys.modules), 'rils_mm was imported'
'''


@pytest.mark.slow
def test_open_clip_export_loads_without_rils_mm(tmp_path):
    import subprocess
    import sys

    from rils_mm.testing import fake_batch
    from rils_mm.utils.export import write_open_clip_dir
    for act, exact in (('GELU', True), ('QuickGELU', False)):
        cfg = tiny_rils_cfg(img_size=32, context_length=16)
        cfg['text_encoder']['act_layer'] = act
        torch.manual_seed(0)
        model = MODELS.build(cfg).eval()
        folder = str(tmp_path / act)
        config = write_open_clip_dir(model.state_dict(), model, folder)
        assert config['rils_mm']['exact'] is exact
        assert config['model_cfg']['quick_gelu'] is (act == 'QuickGELU')
        if not exact:
            assert 'quick_gelu flag' in config['rils_mm']['note']
            continue
        images, tokens, _ = fake_batch(3, img_size=32, context_length=16)
        data = str(tmp_path / 'batch.pt')
        torch.save(dict(images=images, tokens=tokens), data)
        subprocess.run([sys.executable, '-c', OPEN_CLIP_CHILD, folder, data], check=True,
                       cwd=str(tmp_path), env={k: v for k, v in __import__('os').environ.items()
                                               if k != 'PYTHONPATH'})
        out = torch.load(data + '.out')
        with torch.no_grad():
            torch.testing.assert_close(out['zi'], model.encode_image(images), atol=1e-5,
                                       rtol=1e-5)
            torch.testing.assert_close(out['zt'], model.encode_text(tokens), atol=1e-5,
                                       rtol=1e-5)
