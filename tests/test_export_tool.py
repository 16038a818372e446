"""tools/model_converters/export_model.py: every target written from a Runner-style
checkpoint, in fp32 and bf16, with the metadata a loader needs."""
import importlib.util
import json
import os.path as osp

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
    import pytest
    cfg, src, _ = _checkpoint(tmp_path)
    with pytest.raises(ValueError, match=r'timm writes one file.*\.safetensors'):
        _tool().main(['timm', cfg, src, str(tmp_path / 'out_dir')])
