"""RILS components: shapes, the paper's architecture facts, gradient flow, zero-shot."""
import math

import pytest
import torch
from mmengine.config import Config
from mmpretrain.registry import MODELS

import rils_mm  # noqa: F401  (registers the components)
from rils_mm.models.backbones import QVBiasLinear
from rils_mm.testing import fake_batch, tiny_rils_cfg


def build_tiny(**head_overrides):
    torch.manual_seed(0)
    model = MODELS.build(tiny_rils_cfg(**head_overrides))
    model.init_weights()
    return model


def test_vit_encodes_intact_and_masked_views():
    model = build_tiny()
    vit = model.backbone
    images, _, noise = fake_batch(3)
    tokens = vit.forward_intact(images)
    assert tokens.shape == (3, 1 + 16, 64)
    latent, mask, ids_restore = vit(images, mask=True, noise=noise)
    assert latent.shape == (3, 1 + 4, 64)  # CLS + 25 % of 16 patches
    assert mask.shape == (3, 16) and (mask.sum(1) == 12).all()
    # the kept patches are those with the smallest noise, per sample
    kept = noise.argsort(1)[:, :4]
    assert torch.equal(mask.gather(1, kept), torch.zeros(3, 4))
    assert torch.equal(ids_restore.argsort(1)[:, :4], kept)
    # same noise -> same masking; different samples -> different masks
    _, mask2, _ = vit(images, mask=True, noise=noise)
    assert torch.equal(mask, mask2)
    _, m_rand, _ = vit(images, mask=True)
    assert not torch.equal(m_rand[0], m_rand[1]) or not torch.equal(m_rand[1], m_rand[2])


def test_vit_masked_view_equals_encoding_only_the_visible_patches():
    """Eq. 1: V-Enc(I^) sees exactly the visible patches (plus CLS)."""
    vit = build_tiny().backbone
    vit.eval()
    images, _, noise = fake_batch(2)
    latent, mask, _ = vit(images, mask=True, noise=noise)
    x = vit.patch_embed(images)[0] + vit.pos_embed[:, 1:]
    keep = noise.argsort(1)[:, :4]
    x = torch.gather(x, 1, keep[..., None].expand(-1, -1, x.shape[-1]))
    cls = (vit.cls_token + vit.pos_embed[:, :1]).expand(2, -1, -1)
    x = torch.cat([cls, x], 1)
    for layer in vit.layers:
        x = layer(x)
    torch.testing.assert_close(latent, vit.ln1(x))


def test_vit_architecture_facts():
    vit = build_tiny().backbone
    for layer in vit.layers:
        qkv = layer.attn.qkv
        assert isinstance(qkv, QVBiasLinear) and qkv.bias is None
        names = {n for n, _ in qkv.named_parameters()}
        assert names == {'weight', 'q_bias', 'v_bias'}  # no k bias
        x = torch.randn(2, 64)
        qkv.q_bias.data.fill_(1.0)
        qkv.v_bias.data.fill_(2.0)
        out = qkv(x) - x @ qkv.weight.t()
        assert torch.allclose(out[:, :64], torch.ones(2, 64))
        assert torch.allclose(out[:, 64:128], torch.zeros(2, 64))
        assert torch.allclose(out[:, 128:], torch.full((2, 64), 2.0))
    assert vit.ln1.eps == 1e-6
    assert not vit.pos_embed.requires_grad  # fixed 2-D sin-cos
    # sin-cos table: entries in [-1, 1], the CLS slot is zero
    assert vit.pos_embed.abs().max() <= 1 and vit.pos_embed[0, 0].abs().sum() == 0


def test_vit_is_an_ordinary_backbone_for_downstream_use():
    cfg = tiny_rils_cfg()['backbone']
    for out_type, shape in [('featmap', (2, 64, 4, 4)), ('cls_token', (2, 64)),
                            ('avg_featmap', (2, 64)), ('raw', (2, 17, 64))]:
        vit = MODELS.build(dict(cfg, out_type=out_type))
        out = vit(torch.randn(2, 3, 32, 32))
        assert isinstance(out, tuple) and out[0].shape == shape


def test_vit_reachable_from_mmdet_and_mmseg_by_scoped_type():
    from mmdet.registry import MODELS as DET
    from mmseg.registry import MODELS as SEG

    from rils_mm.models.backbones import RILSViT
    assert DET.get('mmpretrain.RILSViT') is RILSViT
    assert SEG.get('mmpretrain.RILSViT') is RILSViT
    # nothing is force-registered into the downstream registries' own scope
    assert DET.get('RILSViT') is None and SEG.get('RILSViT') is None


@pytest.mark.parametrize('depth', [1, 2, 4])
def test_decoder_predicts_every_patch(depth):
    cfg = tiny_rils_cfg()
    cfg['neck']['decoder_depth'] = depth
    model = MODELS.build(cfg)
    assert len(model.neck.decoder_blocks) == depth
    images, _, noise = fake_batch(2)
    latent, _, ids_restore = model.backbone(images, mask=True, noise=noise)
    g = model.neck(latent, ids_restore)
    assert g.shape == (2, 16, 64)  # N patches at encoder width (Eq. 3)


def test_text_encoder_pools_the_eot_token():
    enc = build_tiny().text_encoder
    enc.eval()
    _, tokens, _ = fake_batch(2)
    h = enc(tokens)
    assert h.shape == (2, 64)
    # tokens after EOT do not matter (causal mask + EOT pooling)
    t2 = tokens.clone()
    eot = tokens.argmax(1)
    for i, e in enumerate(eot.tolist()):
        t2[i, e + 1:] = 7
    torch.testing.assert_close(enc(t2), h)


@pytest.mark.parametrize('act_layer', ['QuickGELU', 'GELU'])
def test_text_encoder_activation_is_the_configured_one(act_layer):
    """act_layer reaches every MLP of the text Transformer and is what runs in forward:
    QuickGELU(x) = x * sigmoid(1.702 x) (CLIP / SLIP / official RILS), GELU the erf form."""
    cfg = tiny_rils_cfg()['text_encoder']
    enc = MODELS.build(dict(cfg, act_layer=act_layer))
    seen = []
    acts = [blk.mlp.gelu for blk in enc.transformer.transformer.resblocks]
    assert len(acts) == cfg['layers']
    for act in acts:
        act.register_forward_hook(lambda m, i, o: seen.append((i[0], o)))
    _, tokens, _ = fake_batch(2)
    enc(tokens)
    assert len(seen) == cfg['layers']
    for x, y in seen:
        if act_layer == 'QuickGELU':
            expected = x * torch.sigmoid(1.702 * x)
        else:
            expected = 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))
        torch.testing.assert_close(y, expected)
    # the two really differ, so the check above can tell them apart
    x = torch.linspace(-3, 3, 7)
    assert (x * torch.sigmoid(1.702 * x) - torch.nn.functional.gelu(x)).abs().max() > 1e-2


def test_text_encoder_rejects_unknown_activation():
    with pytest.raises(ValueError, match="act_layer.*'QuickGELU'"):
        MODELS.build(dict(tiny_rils_cfg()['text_encoder'], act_layer='relu'))


def test_paper_configs_use_quickgelu_and_official_loss_semantics():
    import os.path as osp
    root = osp.dirname(osp.dirname(osp.abspath(__file__)))
    for name in ('rils_vitb16_l20m.py', 'rils_vitl16_l20m.py', 'rils_vitb16_l10m.py',
                 'rils_vitb16_l50m.py'):
        model = Config.fromfile(osp.join(root, 'configs', 'rils', name)).model
        assert model.text_encoder.act_layer == 'QuickGELU', name
        contra, recon = model.head.contrastive_loss, model.head.recon_loss
        assert (contra.local_loss, contra.gather_with_grad) == (True, False), name
        assert recon.local_loss is True, name


def test_forward_train_returns_named_losses():
    model = build_tiny()
    images, tokens, noise = fake_batch(4)
    out = model.forward_train(images, tokens, mask_noise=noise)
    assert {'loss_contrastive', 'loss_recon', 'recon_ce', 'logit_scale',
            'aligned_ratio'} <= set(out)
    # logged only: mmengine sums the keys that contain 'loss'
    assert not out['recon_ce'].requires_grad
    total, log_vars = model.parse_losses(out)
    torch.testing.assert_close(total, out['loss_contrastive'] + out['loss_recon'])
    assert log_vars['recon_ce'] == pytest.approx(out['recon_ce'].item())
    assert out['logit_scale'].item() == pytest.approx(1 / 0.07, rel=1e-5)
    assert 0 <= out['aligned_ratio'].item() <= 1
    # L_contra is Eqs. 5-6 on z^I = ||theta(mean_k f^k)||, z^T = ||phi(h)|| (Eq. 4)
    from rils_mm.models.losses import ImageTextContrastiveLoss
    with torch.no_grad():
        expected = ImageTextContrastiveLoss()(model.encode_image(images),
                                              model.encode_text(tokens), 1 / 0.07)
        f = model.backbone.forward_intact(images)[:, 1:]
        z_i = torch.nn.functional.normalize(
            f.mean(1) @ model.head.image_projection.weight.t(), dim=-1)
    torch.testing.assert_close(model.encode_image(images), z_i)
    assert out['loss_contrastive'].item() == pytest.approx(expected.item(), rel=1e-5)


def _force_all_aligned(monkeypatch):
    import rils_mm.models.heads.rils_head as head_mod
    monkeypatch.setattr(head_mod, 'aligned_image_mask',
                        lambda img, txt: torch.ones(img.shape[0], dtype=torch.bool))


def test_gradient_flow(monkeypatch):
    """No gradient into the recon target; the text encoder learns from L_contra only
    (unless text_grad_in_recon)."""
    _force_all_aligned(monkeypatch)
    images, tokens, noise = fake_batch(4)

    model = build_tiny()
    f = model.backbone.forward_intact(images)[:, 1:].detach().requires_grad_()
    latent, mask, ids = model.backbone(images, mask=True, noise=noise)
    g = model.neck(latent, ids)
    h = model.text_encoder(tokens)
    losses = model.head.contrastive_and_recon(f, g, h, mask)
    assert losses['loss_recon'].item() > 0
    losses['loss_recon'].backward()
    assert f.grad is None or f.grad.abs().sum() == 0  # target is sg[.]
    assert all(p.grad is None for p in model.text_encoder.parameters())
    assert model.neck.decoder_pred.weight.grad.abs().sum() > 0

    model.zero_grad()
    model.forward_train(images, tokens, noise)['loss_contrastive'].backward()
    grads = [p.grad for p in model.text_encoder.parameters() if p.requires_grad]
    assert all(gr is not None for gr in grads) and sum(gr.abs().sum() for gr in grads) > 0
    assert model.head.logit_scale.grad is not None

    model = build_tiny(text_grad_in_recon=True)
    model.forward_train(images, tokens, noise)['loss_recon'].backward()
    assert model.text_encoder.transformer.token_embedding.weight.grad.abs().sum() > 0


def test_logit_scale_clamp_hook():
    from unittest.mock import MagicMock

    from rils_mm.engine.hooks import LogitScaleClampHook
    model = build_tiny()
    model.head.logit_scale.data.fill_(math.log(500.0))
    runner = MagicMock()
    runner.model = model
    LogitScaleClampHook().after_train_iter(runner, 0)
    assert model.head.logit_scale.exp().item() == pytest.approx(100.0, rel=1e-5)
    assert model.head.get_logit_scale().item() <= 100.0 + 1e-4


def test_logit_scale_clamp_hook_leaves_models_without_temperature_alone():
    from unittest.mock import MagicMock

    from mmpretrain.models import MAEViT

    from rils_mm.engine.hooks import LogitScaleClampHook
    vit = MAEViT(arch=dict(embed_dims=32, num_layers=1, num_heads=2, feedforward_channels=64),
                 img_size=32, patch_size=8)
    before = {k: v.clone() for k, v in vit.state_dict().items()}
    runner = MagicMock()
    runner.model = vit
    hook = LogitScaleClampHook()
    hook.before_train(runner)
    hook.after_train_iter(runner, 0)  # no head, no temperature: nothing to do, no error
    assert all(torch.equal(before[k], v) for k, v in vit.state_dict().items())


def test_pretrained_init_cfg_is_not_reinitialised(tmp_path):
    """mmpretrain's MAEViT.init_weights re-draws the patch embedding and the class token
    after a Pretrained load; RILSViT keeps every loaded tensor."""
    cfg = tiny_rils_cfg()['backbone']
    src = MODELS.build(cfg)
    src.init_weights()
    with torch.no_grad():
        for p in src.parameters():
            p.add_(torch.randn_like(p))  # nothing an initialiser would produce
    ckpt = tmp_path / 'rils.pth'
    torch.save({'state_dict': {'backbone.' + k: v for k, v in src.state_dict().items()}}, ckpt)
    vit = MODELS.build(dict(cfg, init_cfg=dict(type='Pretrained', checkpoint=str(ckpt),
                                                prefix='backbone.')))
    vit.init_weights()
    loaded = vit.state_dict()
    assert loaded.keys() == src.state_dict().keys()
    for name, value in src.state_dict().items():
        assert torch.equal(loaded[name], value), name


def test_zero_shot_classifier_and_predict():
    model = build_tiny()
    model.eval()
    classes, templates = ['red circle', 'blue square', 'green star'], ['a {}.', 'a photo of {}']
    w = model.set_zero_shot_classifier(classes, templates)
    assert w.shape == (3, 32)
    torch.testing.assert_close(w.norm(dim=-1), torch.ones(3))
    # the classifier is the normalised mean of the normalised prompt embeddings
    import open_clip
    t = open_clip.tokenize(['a blue square.', 'a photo of blue square'], context_length=16)
    with torch.no_grad():
        e = model.encode_text(t)
    torch.testing.assert_close(w[1], torch.nn.functional.normalize(e.mean(0), dim=0))
    images, _, _ = fake_batch(5)
    samples = model(images, mode='predict')
    assert len(samples) == 5
    for s in samples:
        assert s.pred_score.shape == (3, )
        assert s.pred_score.sum().item() == pytest.approx(1.0, rel=1e-5)
        assert s.pred_label.item() == s.pred_score.argmax().item()
    with pytest.raises(ValueError, match='class names'):
        model.set_zero_shot_classifier([], templates)


def test_predict_without_classifier_says_what_to_do():
    model = build_tiny()
    with pytest.raises(RuntimeError, match='ZeroShotClassifierHook'):
        model(torch.randn(1, 3, 32, 32), mode='predict')


@pytest.mark.parametrize('name,vit_params,text_params', [
    ('rils_vitb16_l20m', (85e6, 87e6), (62e6, 64.5e6)),
    ('rils_vitl16_l20m', (302e6, 305e6), (122e6, 125e6)),
])
def test_paper_configs_build_with_the_paper_sizes(name, vit_params, text_params):
    cfg = Config.fromfile(f'configs/rils/{name}.py')
    model = MODELS.build(cfg.model)
    n_vit = sum(p.numel() for p in model.backbone.parameters())
    n_text = sum(p.numel() for p in model.text_encoder.parameters())
    assert vit_params[0] < n_vit < vit_params[1], n_vit
    assert text_params[0] < n_text < text_params[1], n_text
    assert len(model.neck.decoder_blocks) == 1
    assert model.backbone.mask_ratio == 0.75
    assert cfg.model.head.recon_loss.target_temperature == 0.04
    assert cfg.model.head.recon_loss.pred_temperature == 0.1
    assert cfg.model.head.recon_loss.loss_weight == 0.5
    assert cfg.model.head.contrastive_loss.loss_weight == 1.0
