"""RILSViT as a ViTDet backbone: window attention, decomposed relative position
bias, interpolated absolute positions, drop path, feature maps, and the loading of
a RILS pre-training checkpoint into it."""
import math

import numpy as np
import pytest
import torch
from mmpretrain.registry import MODELS

import rils_mm  # noqa: F401
from rils_mm.models.backbones import RILSViT, WindowRelPosAttention
from rils_mm.testing import tiny_rils_cfg

ARCH = dict(embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64)


def dense_vit(**kw):
    cfg = dict(type='RILSViT', arch=ARCH, img_size=64, patch_size=8, final_norm=False,
               out_type='featmap', out_indices=(-1, ), window_size=3,
               global_attn_indexes=(1, 3), use_rel_pos=True)
    cfg.update(kw)
    torch.manual_seed(0)
    vit = MODELS.build(cfg)
    vit.init_weights()
    with torch.no_grad():  # ViTDet zero-initialises the tables; make them matter
        for name, p in vit.named_parameters():
            if 'rel_pos' in name:
                p.normal_(0, 0.5)
    vit.eval()
    return vit


def plain_attention(x, qkv_w, qkv_b, proj_w, proj_b, heads, rel_h=None, rel_w=None, hw=None):
    """softmax(q k^T / sqrt(d) + B) v for one token set, B per MViTv2 Eq. 4:
    B[(i,j),(i',j')] = q_(i,j) . R^h[i - i' + H - 1] + q_(i,j) . R^w[j - j' + W - 1]."""
    n, c = x.shape
    d = c // heads
    q, k, v = (x @ qkv_w.T + qkv_b).reshape(n, 3, heads, d).permute(1, 2, 0, 3)
    logits = q @ k.transpose(-1, -2) / math.sqrt(d)
    if rel_h is not None:
        H, W = hw
        for a in range(n):
            i, j = divmod(a, W)
            for b in range(n):
                i2, j2 = divmod(b, W)
                logits[:, a, b] += (q[:, a] * rel_h[i - i2 + H - 1]).sum(-1)
                logits[:, a, b] += (q[:, a] * rel_w[j - j2 + W - 1]).sum(-1)
    out = (logits.softmax(-1) @ v).transpose(0, 1).reshape(n, c)
    return out @ proj_w.T + proj_b


@pytest.mark.parametrize('rel_pos', [False, True])
def test_window_attention_is_attention_inside_each_zero_padded_window(rel_pos):
    torch.manual_seed(0)
    ws, H, W, C, heads = 3, 4, 5, 8, 2  # 4x5 grid -> padded to 6x6, 2x2 windows
    attn = WindowRelPosAttention(C, heads, window_size=ws, use_rel_pos=rel_pos,
                                 rel_pos_size=(ws, ws)).eval()
    if rel_pos:
        with torch.no_grad():
            attn.rel_pos_h.normal_()
            attn.rel_pos_w.normal_()
    x = torch.randn(1, H * W, C)
    out = attn(x, (H, W))[0].reshape(H, W, C)

    grid = torch.zeros(6, 6, C)
    grid[:H, :W] = x[0].reshape(H, W, C)
    p = dict(qkv_w=attn.qkv.weight, qkv_b=attn.qkv.bias, proj_w=attn.proj.weight,
             proj_b=attn.proj.bias, heads=heads)
    if rel_pos:
        p.update(rel_h=attn.rel_pos_h, rel_w=attn.rel_pos_w, hw=(ws, ws))
    for wi in range(2):
        for wj in range(2):
            win = grid[wi * ws:(wi + 1) * ws, wj * ws:(wj + 1) * ws].reshape(-1, C)
            ref = plain_attention(win, **p).reshape(ws, ws, C)
            for a in range(ws):
                for b in range(ws):
                    i, j = wi * ws + a, wj * ws + b
                    if i < H and j < W:
                        torch.testing.assert_close(out[i, j], ref[a, b], atol=1e-5,
                                                   rtol=1e-5)


def test_global_block_with_rel_pos_matches_the_equation_and_resizes_the_tables():
    torch.manual_seed(1)
    C, heads = 8, 2
    attn = WindowRelPosAttention(C, heads, use_rel_pos=True, rel_pos_size=(3, 4)).eval()
    with torch.no_grad():
        attn.rel_pos_h.normal_()
        attn.rel_pos_w.normal_()
    x = torch.randn(1, 12, C)
    ref = plain_attention(x[0], attn.qkv.weight, attn.qkv.bias, attn.proj.weight,
                          attn.proj.bias, heads, attn.rel_pos_h, attn.rel_pos_w, (3, 4))
    torch.testing.assert_close(attn(x, (3, 4))[0], ref, atol=1e-5, rtol=1e-5)
    # a larger grid than the tables were sized for: they are resized linearly
    assert attn(torch.randn(2, 30, C), (5, 6)).shape == (2, 30, C)
    with pytest.raises(ValueError, match='CLS'):
        attn(torch.randn(1, 13, C), (3, 4))


def test_windowed_blocks_are_local_and_global_blocks_mix_windows():
    x = torch.randn(1, 3, 64, 64)
    x2 = x.clone()
    x2[..., :8, :8] += 1.0  # changes patch (0, 0) only: window (0, 0) of 3x3 windows
    local = dense_vit(global_attn_indexes=())
    d = (local(x2)[0] - local(x)[0]).abs().sum(1)[0]  # (8, 8) token grid
    assert d[:3, :3].min() > 0
    d[:3, :3] = 0
    assert d.max() == 0, 'a windowed block leaked across windows'
    mixing = dense_vit(global_attn_indexes=(1, ))
    d = (mixing(x2)[0] - mixing(x)[0]).abs().sum(1)[0]
    assert d.min() > 0


def test_dense_forward_shapes_positions_and_drop_path():
    vit = dense_vit(out_indices=(1, 3), drop_path_rate=0.1)
    outs = vit(torch.randn(2, 3, 48, 80))  # not the 64x64 the positions were built for
    assert [tuple(o.shape) for o in outs] == [(2, 32, 6, 10)] * 2
    assert [blk.attn.window_size for blk in vit.layers] == [3, 0, 3, 0]
    # the global blocks' tables span the full 8x8 grid, the windowed ones a window
    assert [tuple(b.attn.rel_pos_h.shape) for b in vit.layers] == [(5, 16), (15, 16)] * 2
    assert [blk.attn.out_drop.drop_prob for blk in vit.layers] == pytest.approx(
        list(np.linspace(0, 0.1, 4)))
    # the positions are trained, the unused CLS token is frozen
    assert vit.pos_embed.requires_grad and not vit.cls_token.requires_grad
    # positions are interpolated to the input: moving the image changes the output
    # differently than the grid would without positions
    vit_np = dense_vit()
    with torch.no_grad():
        vit_np.pos_embed.zero_()
    x = torch.randn(1, 3, 64, 64)
    assert not torch.allclose(dense_vit()(x)[0], vit_np(x)[0])
    with pytest.raises(ValueError, match='pre-training'):
        vit(torch.randn(1, 3, 64, 64), mask=True)
    with pytest.raises(ValueError, match='pre-training'):
        vit.forward_intact(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match='global_attn_indexes'):
        dense_vit(global_attn_indexes=(7, ))


def test_pretraining_encoder_is_unchanged_by_the_dense_options():
    cfg = tiny_rils_cfg()['backbone']
    torch.manual_seed(0)
    vit = MODELS.build(cfg)
    assert not vit.dense and not any('rel_pos' in n for n, _ in vit.named_parameters())
    assert not vit.pos_embed.requires_grad  # fixed sin-cos while pre-training
    assert type(vit.layers[0].attn).__name__ == 'MultiheadAttention'


def _rils_checkpoint(tmp_path, img_size=32):
    """A RILS pre-training checkpoint (whole model) with values no initialiser makes."""
    torch.manual_seed(0)
    rils = MODELS.build(tiny_rils_cfg(img_size=img_size))
    rils.init_weights()
    with torch.no_grad():
        for p in rils.parameters():
            p.add_(torch.randn_like(p))
    sd = rils.state_dict()
    sd['backbone.pos_embed'] = sd['backbone.pos_embed'] + torch.randn_like(
        sd['backbone.pos_embed'])  # a buffer-like parameter without grad
    path = tmp_path / 'rils_tiny.pth'
    torch.save({'state_dict': sd, 'meta': {}}, path)
    return str(path), sd


def test_loading_a_rils_checkpoint_keeps_every_encoder_tensor(tmp_path):
    from mmengine.logging import MMLogger
    from mmpretrain.models.utils import resize_pos_embed

    from rils_mm.models.backbones import load_encoder_checkpoint
    path, sd = _rils_checkpoint(tmp_path)
    enc = tiny_rils_cfg()['backbone']
    dense = dict(enc, img_size=64, window_size=2, global_attn_indexes=(1, ),
                 use_rel_pos=True, final_norm=False, out_type='featmap', out_indices=(-1, ))
    vit = MODELS.build(dict(
        dense, init_cfg=dict(type='Pretrained', checkpoint=path, prefix='backbone.')))
    vit.init_weights()
    state = vit.state_dict()
    for name, value in state.items():
        if 'rel_pos' in name:
            assert torch.equal(value, torch.zeros_like(value)), name  # ViTDet init
        elif name == 'pos_embed':  # 4x4 grid -> 8x8 grid, bicubic, CLS entry kept
            expected = resize_pos_embed(sd['backbone.pos_embed'], (4, 4), (8, 8),
                                        'bicubic', 1)
            torch.testing.assert_close(value, expected)
        else:
            assert torch.equal(value, sd['backbone.' + name]), name
    # the printed report
    MMLogger.get_instance('dense_report', log_file=str(tmp_path / 'report.log'))
    info = load_encoder_checkpoint(MODELS.build(dense), path, logger='dense_report')
    report = (tmp_path / 'report.log').read_text()
    assert f'loaded: {len(info["loaded"])} tensors (resized: pos_embed)' in report
    assert len(info['loaded']) == len(state) - 4  # all but the 2 x 2 rel-pos tables
    # the final norm is not used with final_norm=False
    assert info['unused'] == ['ln1.bias', 'ln1.weight'] and 'ln1.weight' in report
    for part in ('decoder (V-Dec)', 'text encoder (L-Enc)', 'projections theta/phi'):
        assert 'dropped: ' + part in report


def test_loading_rejects_a_checkpoint_missing_encoder_keys(tmp_path):
    path, sd = _rils_checkpoint(tmp_path)
    del sd['backbone.layers.1.attn.proj.weight']
    torch.save({'state_dict': sd}, tmp_path / 'broken.pth')
    vit = MODELS.build(dict(tiny_rils_cfg()['backbone'], init_cfg=dict(
        type='Pretrained', checkpoint=str(tmp_path / 'broken.pth'), prefix='backbone.')))
    with pytest.raises(KeyError, match=r'broken\.pth.*layers\.1\.attn\.proj\.weight'):
        vit.init_weights()
    sd['backbone.layers.1.attn.proj.weight'] = torch.zeros(3, 3)
    torch.save({'state_dict': sd}, tmp_path / 'shape.pth')
    vit = MODELS.build(dict(tiny_rils_cfg()['backbone'], init_cfg=dict(
        type='Pretrained', checkpoint=str(tmp_path / 'shape.pth'), prefix='backbone.')))
    with pytest.raises(ValueError, match=r'layers\.1\.attn\.proj\.weight.*\(3, 3\)'):
        vit.init_weights()


def test_backbone_only_checkpoint_loads_too(tmp_path):
    """The converter's output (tools/model_converters/extract_backbone.py) loads as well."""
    from rils_mm.utils.model_convert import extract_backbone, save_state_dict_file
    path, sd = _rils_checkpoint(tmp_path)
    bare = extract_backbone(sd)
    save_state_dict_file(bare, str(tmp_path / 'bare.pth'))
    vit = MODELS.build(dict(tiny_rils_cfg()['backbone'], init_cfg=dict(
        type='Pretrained', checkpoint=str(tmp_path / 'bare.pth'))))
    vit.init_weights()
    for name, value in vit.state_dict().items():
        assert torch.equal(value, bare[name]), name
    assert isinstance(vit, RILSViT)


def test_layer_decay_constructor_reads_depths_from_the_backbone():
    """lr of block i = lr * 0.7 ** (L + 1 - (i + 1)); embeddings 0.7 ** (L + 1); heads lr;
    no weight decay on 1-d parameters or positions (ViTDet's recipe)."""
    from mmengine.optim import build_optim_wrapper

    class Detector(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = dense_vit()
            self.head = torch.nn.Linear(32, 4)

    model = Detector()
    wrapper = build_optim_wrapper(model, dict(
        constructor='mmpretrain.BackboneLayerDecayOptimWrapperConstructor',
        paramwise_cfg=dict(layer_decay_rate=0.7, flat_decay_mult=0.0,
                           custom_keys={'pos_embed': dict(decay_mult=0.0)}),
        optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.1)))
    # merged groups (one per depth and weight decay) list their parameters' names
    groups = {n: g for g in wrapper.optimizer.param_groups for n in g['param_names']}
    L = 4
    assert groups['backbone.patch_embed.projection.weight']['lr'] == pytest.approx(
        1e-4 * 0.7**(L + 1))
    for i in range(L):
        g = groups[f'backbone.layers.{i}.attn.qkv.weight']
        assert g['lr'] == pytest.approx(1e-4 * 0.7**(L - i)) and g['weight_decay'] == 0.1
        assert groups[f'backbone.layers.{i}.attn.rel_pos_h']['lr'] == g['lr']
    assert groups['head.weight']['lr'] == 1e-4 and groups['head.weight']['weight_decay'] == 0.1
    for name in ('backbone.pos_embed', 'backbone.layers.0.ln1.weight', 'head.bias',
                 'backbone.layers.0.attn.qkv.q_bias'):
        assert groups[name]['weight_decay'] == 0, name
    assert 'backbone.cls_token' not in groups  # frozen in the dense backbone
    with pytest.raises(TypeError, match='backbone.get_layer_depth'):
        build_optim_wrapper(torch.nn.Linear(2, 2), dict(
            constructor='mmpretrain.BackboneLayerDecayOptimWrapperConstructor',
            paramwise_cfg=dict(layer_decay_rate=0.7),
            optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.1)))


def test_simple_fpn_makes_strides_4_to_64_from_the_stride_16_map():
    from mmpretrain.registry import MODELS as M
    fpn = M.build(dict(type='SimpleFPN', backbone_channel=32, in_channels=[8, 16, 32, 32],
                       out_channels=24, num_outs=5))
    x = torch.randn(2, 32, 8, 12)  # a 128x192 image at stride 16
    outs = fpn((x, ))
    assert [tuple(o.shape) for o in outs] == [(2, 24, 32, 48), (2, 24, 16, 24),
                                              (2, 24, 8, 12), (2, 24, 4, 6), (2, 24, 2, 3)]
    # LayerNorm over channels after each conv (ViTDet): per-position channel stats
    y = fpn.lateral_convs[2](x)
    torch.testing.assert_close(y.mean(1), torch.zeros(2, 8, 12), atol=1e-5, rtol=0)
    assert type(fpn.fpn_convs[0][1]).__name__ == 'LayerNorm2d'
    # stride 64 is a stride-2 subsampling of stride 32
    assert torch.equal(outs[4], outs[3][:, :, ::2, ::2])


def test_a_mae_checkpoint_with_fused_qkv_bias_loads_into_q_and_v_bias(tmp_path):
    """mmpretrain's MAEViT has one qkv bias; its q and v thirds become q_bias / v_bias."""
    torch.manual_seed(0)
    mae = MODELS.build(dict(type='MAEViT', arch=ARCH, img_size=32, patch_size=8))
    with torch.no_grad():
        for p in mae.parameters():
            p.add_(torch.randn_like(p))
    torch.save({'state_dict': {'backbone.' + k: v for k, v in mae.state_dict().items()}},
               tmp_path / 'mae.pth')
    vit = MODELS.build(dict(type='RILSViT', arch=ARCH, img_size=32, patch_size=8, init_cfg=dict(
        type='Pretrained', checkpoint=str(tmp_path / 'mae.pth'), prefix='backbone.')))
    vit.init_weights()
    for i, layer in enumerate(vit.layers):
        q, _, v = mae.layers[i].attn.qkv.bias.chunk(3)
        assert torch.equal(layer.attn.qkv.q_bias, q) and torch.equal(layer.attn.qkv.v_bias, v)
        assert torch.equal(layer.attn.qkv.weight, mae.layers[i].attn.qkv.weight)
