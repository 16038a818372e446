"""Exports to timm and transformers give the same outputs as our model (fp32)."""
import json

import torch
import torch.nn.functional as F
from mmpretrain.registry import MODELS

import rils_mm  # noqa: F401
from rils_mm.testing import fake_batch, tiny_rils_cfg
from rils_mm.utils.export import (
    from_hf_clip,
    from_timm,
    load_state_dict_file,
    read_metadata,
    to_timm,
    write_hf_clip_dir,
)


def _model(seed=0):
    g = torch.Generator().manual_seed(seed)
    model = MODELS.build(tiny_rils_cfg(img_size=32, context_length=16)).eval()
    with torch.no_grad():
        for p in model.state_dict().values():
            if p.dtype.is_floating_point:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model


def test_timm_both_ways():
    from timm.models.vision_transformer import VisionTransformer
    model = _model()
    bb = {k[9:]: v for k, v in model.state_dict().items() if k.startswith('backbone.')}
    vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4,
                            mlp_ratio=2, num_classes=0, global_pool='avg', fc_norm=False).eval()
    vit.load_state_dict(to_timm(bb), strict=True)
    images = fake_batch(3, img_size=32)[0]
    with torch.no_grad():
        ours = model.backbone.forward_intact(images)
        torch.testing.assert_close(vit.forward_features(images), ours, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(vit(images), ours[:, 1:].mean(1), atol=1e-5, rtol=1e-5)
        back = _model(seed=1).backbone
        back.load_state_dict(from_timm(vit.state_dict()), strict=True)
        torch.testing.assert_close(back.forward_intact(images), ours, atol=1e-5, rtol=1e-5)


def test_hf_clip_folder_same_embeddings_and_logits(tmp_path):
    from transformers import CLIPModel
    model = _model()
    images, tokens, _ = fake_batch(4, img_size=32, context_length=16)
    cfg = write_hf_clip_dir(model.state_dict(), model, str(tmp_path), meta=dict(method='RILS'))
    hf, info = CLIPModel.from_pretrained(str(tmp_path), output_loading_info=True)
    assert not info['missing_keys'] and not info['unexpected_keys']
    hf.eval()
    with torch.no_grad():
        zi, zt = model.encode_image(images), model.encode_text(tokens)
        hi = F.normalize(hf.get_image_features(pixel_values=images), dim=-1)
        ht = F.normalize(hf.get_text_features(input_ids=tokens), dim=-1)
        torch.testing.assert_close(hi, zi, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ht, zt, atol=1e-5, rtol=1e-5)
        logits = hf(input_ids=tokens, pixel_values=images).logits_per_image
        ref = model.head.get_logit_scale() * zi @ zt.t()
        torch.testing.assert_close(logits, ref, atol=1e-4, rtol=1e-5)
    assert read_metadata(str(tmp_path / 'model.safetensors'))['method'] == 'RILS'
    assert json.loads((tmp_path / 'config.json').read_text())['rils_mm']['vision_width'] == 64
    back = _model(seed=2)
    missing, unexpected = back.load_state_dict(
        from_hf_clip(load_state_dict_file(str(tmp_path / 'model.safetensors')), cfg), strict=False)
    assert not unexpected and all(k.startswith('neck.') for k in missing)
    with torch.no_grad():
        torch.testing.assert_close(back.encode_image(images), zi, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(back.encode_text(tokens), zt, atol=1e-5, rtol=1e-5)
