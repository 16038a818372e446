"""The baselines (Tables 1, 9, 10, 11): each method's loss against its equation written out,
what each step computes (CLIP runs no decoder), frozen parts of two-stage methods, and every
baseline config building and training two iterations on the toy corpus."""
import math
import os
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmpretrain.registry import MODELS

import rils_mm  # noqa: F401  (registers the components)
from rils_mm.testing import fake_batch, generate_toy_corpus

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def cfg_of(path):
    return Config.fromfile(osp.join(ROOT, 'configs', path))


def build_model(path, seed=0):
    init_default_scope('mmpretrain')
    torch.manual_seed(seed)
    model = MODELS.build(cfg_of(path).model)
    model.init_weights()
    return model


def toy_batch(batch_size=4, seed=0):
    """A batch for the toy configs: 64 px images and 32 token ids."""
    images, tokens, _ = fake_batch(batch_size, img_size=64, context_length=32, seed=seed)
    return images, tokens


def contrastive_by_equation(z_i, z_t, scale):
    """Eqs. 5-6: 1/2 (L_I2T + L_T2I) with logits (1/sigma) <z^I_i, z^T_j>."""
    logits = scale * z_i @ z_t.t()
    b = logits.shape[0]
    l_i2t = -sum(logits[i, i] - torch.logsumexp(logits[i], 0) for i in range(b)) / b
    l_t2i = -sum(logits[i, i] - torch.logsumexp(logits[:, i], 0) for i in range(b)) / b
    return 0.5 * (l_i2t + l_t2i)


@pytest.fixture(scope='module')
def toy_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('toy')
    generate_toy_corpus(str(root), num_train=16, num_val=8, image_size=32, seed=5,
                        shard_size=16)
    return str(root)


def train_two_iters(path, toy_root, work_dir, **overrides):
    """Train a toy config for one epoch of two iterations (batch 8) on the toy corpus."""
    cfg = cfg_of(path)
    cfg.work_dir = str(work_dir)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(key):
            cfg[key].dataset.data_root = toy_root
    cfg.train_dataloader.batch_size = 8
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1, val_interval=1)
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1)
    cfg.log_processor = dict(window_size=1)
    cfg.randomness = dict(seed=0)
    cfg.merge_from_dict(overrides)
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 2
    return runner


def train_losses(runner):
    hub = runner.message_hub
    return {k[len('train/'):]: v.data[0] for k, v in hub.log_scalars.items()
            if k.startswith('train/loss')}


# --------------------------------------------------------------------------- CLIP
def test_clip_step_runs_no_masked_view_and_no_decoder(monkeypatch):
    """Issue 8: CLIP computes neither the masked view nor the decoder."""
    from mmpretrain.models.necks import MAEPretrainDecoder

    from rils_mm.models.backbones import RILSViT
    model = build_model('clip/clip_vittiny_toy.py')
    assert not model.with_neck and model.neck is None
    calls = []
    monkeypatch.setattr(RILSViT, 'random_masking',
                        lambda *a, **k: calls.append('masking'))
    monkeypatch.setattr(MAEPretrainDecoder, 'forward',
                        lambda *a, **k: calls.append('decoder'))
    images, tokens = toy_batch()
    losses = model.forward_train(images, tokens)
    assert calls == []
    assert set(losses) == {'loss_contrastive', 'logit_scale'}
    losses['loss_contrastive'].backward()
    assert model.backbone.cls_token.grad is not None  # the encoder is trained


def test_clip_rejects_a_decoder():
    cfg = cfg_of('clip/clip_vittiny_toy.py').model
    cfg.neck = cfg_of('rils/rils_vittiny_toy.py').model.neck
    with pytest.raises(ValueError, match='neck=None'):
        MODELS.build(cfg)


def test_clip_loss_is_equations_4_to_6():
    model = build_model('clip/clip_vittiny_toy.py')
    images, tokens = toy_batch(5)
    loss = model.forward_train(images, tokens)['loss_contrastive']
    with torch.no_grad():
        f = model.backbone.forward_intact(images)[:, 1:]
        h = model.text_encoder(tokens)
        theta, phi = model.head.image_projection.weight, model.head.text_projection.weight
        z_i = F.normalize(f.mean(1) @ theta.t(), dim=-1)  # Eq. 4
        z_t = F.normalize(h @ phi.t(), dim=-1)
        expected = contrastive_by_equation(z_i, z_t, 1 / 0.07)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_clip_contrastive_term_equals_rils_with_the_same_weights():
    """Same encoder, text encoder and head: only the method differs."""
    clip = build_model('clip/clip_vittiny_toy.py')
    rils = build_model('rils/rils_vittiny_toy.py')
    missing, unexpected = rils.load_state_dict(clip.state_dict(), strict=False)
    assert unexpected == [] and all(k.startswith('neck.') for k in missing)
    images, tokens = toy_batch()
    a = clip.forward_train(images, tokens)['loss_contrastive']
    b = rils.forward_train(images, tokens)['loss_contrastive']
    assert a.item() == pytest.approx(b.item(), rel=1e-6)


def test_clip_paper_configs_change_only_the_method():
    for clip_name, rils_name in [('clip_vitb16_l20m.py', 'rils_vitb16_l20m.py'),
                                 ('clip_vitb16_l10m.py', 'rils_vitb16_l10m.py')]:
        clip, rils = cfg_of('clip/' + clip_name), cfg_of('rils/' + rils_name)
        assert set(clip.keys()) == set(rils.keys())
        for key in clip.keys():
            if key != 'model':
                assert clip[key] == rils[key], key
        assert clip.model.type == 'CLIP' and clip.model.neck is None
        for part in ('backbone', 'text_encoder', 'data_preprocessor'):
            assert clip.model.get(part) == rils.model.get(part), part
        head = dict(rils.model.head)
        for key in ('type', 'recon_loss', 'text_grad_in_recon'):
            head.pop(key)
        assert {k: v for k, v in clip.model.head.items() if k != 'type'} == head


@pytest.mark.slow
def test_clip_toy_config_trains_two_iterations_and_evaluates(toy_root, tmp_path):
    runner = train_two_iters('clip/clip_vittiny_toy.py', toy_root, tmp_path)
    assert set(train_losses(runner)) == {'loss', 'loss_contrastive'}
    assert all(math.isfinite(v) for v in train_losses(runner)['loss'])
    metrics = runner.val_loop.run()
    assert 0 <= metrics['accuracy/top1'] <= 100


# --------------------------------------------------------------------------- MAE
def test_mae_configs_are_mmpretrains_mae_on_our_data():
    for name in ('mae_vitb16_l20m.py', 'mae_vitb16_l10m.py', 'mae_vittiny_toy.py'):
        cfg = cfg_of('mae/' + name)
        m = cfg.model
        assert (m.type, m.backbone.type, m.neck.type, m.head.type) == (
            'MAE', 'MAEViT', 'MAEPretrainDecoder', 'MAEPretrainHead')
        assert m.backbone.mask_ratio == 0.75 and m.head.norm_pix
        assert m.head.patch_size == m.backbone.patch_size == m.neck.patch_size
        assert m.neck.predict_feature_dim == 3 * m.head.patch_size**2
        assert cfg.val_dataloader is None and cfg.val_cfg is None  # no text tower
    big, rils = cfg_of('mae/mae_vitb16_l20m.py'), cfg_of('rils/rils_vitb16_l20m.py')
    assert big.train_dataloader == rils.train_dataloader  # same data pipeline
    assert big.optim_wrapper == rils.optim_wrapper and big.param_scheduler == rils.param_scheduler
    assert (big.model.neck.decoder_depth, big.model.neck.decoder_embed_dim) == (8, 512)


def pixel_loss_by_equation(pred, images, mask, p):
    """MAE: mean over masked patches of mean_j (pred_j - (x_j - mu) / sqrt(var + 1e-6))^2,
    x the patch's p*p*3 pixels (row-major within the patch, channel last)."""
    b, _, hgt, wid = images.shape
    total, count = 0.0, 0
    for i in range(b):
        for r in range(hgt // p):
            for c in range(wid // p):
                k = r * (wid // p) + c
                if not mask[i, k]:
                    continue
                x = images[i, :, r * p:(r + 1) * p, c * p:(c + 1) * p].permute(1, 2, 0).flatten()
                x = (x - x.mean()) / (x.var() + 1e-6).sqrt()
                total += ((pred[i, k] - x)**2).mean()
                count += 1
    return total / count


def test_mae_loss_is_the_normalised_pixel_equation():
    model = build_model('mae/mae_vittiny_toy.py')
    images, _ = toy_batch(3)
    torch.manual_seed(1)
    latent, mask, ids_restore = model.backbone(images)
    assert (mask.sum(1) == 48).all()  # 75 % of 64 patches
    pred = model.neck(latent, ids_restore)
    loss = model.head.loss(pred, images, mask)
    assert loss.item() == pytest.approx(
        pixel_loss_by_equation(pred, images, mask, 8).item(), rel=1e-5)
    torch.manual_seed(1)
    assert model.loss(images, [])['loss'].item() == pytest.approx(loss.item(), rel=1e-6)


def test_mae_checkpoint_initialises_rils_vit_exactly():
    """MIM->CLIP / MIM->LiT start RILSViT from a MAEViT checkpoint: same function."""
    mae = build_model('mae/mae_vittiny_toy.py').backbone
    with torch.no_grad():
        for layer in mae.layers:
            layer.attn.qkv.bias.normal_()  # a k bias too, which must not matter
    rils_cfg = cfg_of('clip/clip_vittiny_toy.py').model.backbone
    rils = MODELS.build(rils_cfg)
    rils.load_state_dict(mae.state_dict(), strict=True)
    mae.eval(), rils.eval()
    images, _ = toy_batch(2)
    torch.testing.assert_close(rils.forward_intact(images), mae(images, mask=None)[0],
                               rtol=1e-5, atol=1e-5)
    assert torch.equal(rils.layers[0].attn.qkv.v_bias, mae.layers[0].attn.qkv.bias[-128:])


@pytest.mark.slow
def test_mae_toy_config_trains_two_iterations(toy_root, tmp_path):
    runner = train_two_iters('mae/mae_vittiny_toy.py', toy_root, tmp_path)
    assert set(train_losses(runner)) == {'loss'}
    assert all(math.isfinite(v) for v in train_losses(runner)['loss'])


# --------------------------------------------------------------------------- MAE+CLIP
def test_mae_clip_sums_pixel_and_contrastive_losses():
    model = build_model('mae_clip/mae-clip_vittiny_toy.py')
    images, tokens = toy_batch(4)
    noise = torch.rand(4, 64, generator=torch.Generator().manual_seed(2))
    losses = model.forward_train(images, tokens, mask_noise=noise)
    assert set(losses) == {'loss_contrastive', 'loss_pixel', 'logit_scale'}
    # the contrastive term is CLIP's with the same weights (the intact view)
    clip = build_model('clip/clip_vittiny_toy.py')
    clip.load_state_dict(model.state_dict(), strict=False)
    assert losses['loss_contrastive'].item() == pytest.approx(
        clip.forward_train(images, tokens)['loss_contrastive'].item(), rel=1e-6)
    # the pixel term is MAE's equation on the decoded masked view
    latent, mask, ids_restore = model.backbone(images, mask=True, noise=noise)
    pred = model.neck(latent, ids_restore)
    assert losses['loss_pixel'].item() == pytest.approx(
        pixel_loss_by_equation(pred, images, mask, 8).item(), rel=1e-5)
    # both reach the encoder; the decoder only gets the pixel loss
    losses['loss_pixel'].backward(retain_graph=True)
    assert model.neck.mask_token.grad.abs().sum() > 0
    assert model.head.text_projection.weight.grad is None
    losses['loss_contrastive'].backward()
    assert model.head.text_projection.weight.grad.abs().sum() > 0


def test_mae_clip_differs_from_rils_only_in_the_reconstruction():
    a, b = cfg_of('mae_clip/mae-clip_vitb16_l20m.py'), cfg_of('rils/rils_vitb16_l20m.py')
    for key in a.keys():
        if key != 'model':
            assert a[key] == b[key], key
    assert a.model.backbone == b.model.backbone and a.model.text_encoder == b.model.text_encoder
    neck = dict(a.model.neck)
    assert neck.pop('predict_feature_dim') == 768 and neck == b.model.neck


@pytest.mark.slow
def test_mae_clip_toy_config_trains_two_iterations(toy_root, tmp_path):
    runner = train_two_iters('mae_clip/mae-clip_vittiny_toy.py', toy_root, tmp_path)
    assert set(train_losses(runner)) == {'loss', 'loss_contrastive', 'loss_pixel'}
    assert 0 <= runner.val_loop.run()['accuracy/top1'] <= 100


# --------------------------------------------------------------------------- RILS ablations
def flat(d, prefix=''):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f'{prefix}{k}.'))
        else:
            out[f'{prefix}{k}'] = v
    return out


@pytest.mark.parametrize('name,changes', [
    ('rils_vitb16_l10m_mask60.py', {'model.backbone.mask_ratio': 0.6}),
    ('rils_vitb16_l10m_mask90.py', {'model.backbone.mask_ratio': 0.9}),
    ('rils_vitb16_l10m_dec2.py', {'model.neck.decoder_depth': 2}),
    ('rils_vitb16_l10m_dec4.py', {'model.neck.decoder_depth': 4}),
    ('rils_vitb16_l10m_loss1to1.py', {'model.head.recon_loss.loss_weight': 1.0}),
    ('rils_vitb16_l10m_loss1to2.py', {'model.head.recon_loss.loss_weight': 2.0}),
    ('rils_vitb16_l10m_visionspace.py', {'model.head.type': 'VisionSpaceReconHead',
                                         'model.head.num_prototypes': 4096}),
])
def test_ablation_configs_change_one_thing_on_l10m(name, changes):
    """Tables 10, 11: each ablation is the L-10M RILS config with one setting changed."""
    base = flat(cfg_of('rils/rils_vitb16_l10m.py').to_dict())
    abl = flat(cfg_of('rils/' + name).to_dict())
    assert base['model.backbone.mask_ratio'] == 0.75 and base['model.neck.decoder_depth'] == 1
    assert base['model.head.contrastive_loss.loss_weight'] == 1.0  # lambda_1 : lambda_2 = 2 : 1
    assert base['model.head.recon_loss.loss_weight'] == 0.5
    diff = {k: abl.get(k) for k in set(base) | set(abl) if base.get(k) != abl.get(k)}
    assert diff == changes
    assert abl['model.head.contrastive_loss.loss_weight'] == 1.0


def recon_by_equation(pred, target, protos, mask, aligned, tau1=0.04, tau2=0.1):
    """Eqs. 8-9: mean over i in C, k in M of -sum_l p_l log q_l, p from the target with
    tau_1, q from the prediction with tau_2, over the prototypes' rows (all normalised)."""
    protos = F.normalize(protos, dim=-1)
    total, count = 0.0, 0
    for i in range(pred.shape[0]):
        for k in range(pred.shape[1]):
            if aligned[i] and mask[i, k]:
                p = torch.softmax(F.normalize(target[i, k], dim=0) @ protos.t() / tau1, 0)
                log_q = torch.log_softmax(F.normalize(pred[i, k], dim=0) @ protos.t() / tau2, 0)
                total = total - (p * log_q).sum()
                count += 1
    return total / count


def test_vision_space_head_reconstructs_over_learnable_prototypes():
    """Table 10: Eq. 8 with the K learnable rows W in place of z^T, all else RILS'."""
    from rils_mm.models.heads import VisionSpaceReconHead
    torch.manual_seed(0)
    head = VisionSpaceReconHead(num_prototypes=7, vision_dims=12, text_dims=10, embed_dims=8)
    head.init_weights()
    g = torch.Generator().manual_seed(3)
    f, pred = torch.randn(6, 5, 12, generator=g), torch.randn(6, 5, 12, generator=g)
    text = torch.randn(6, 10, generator=g, requires_grad=True)
    # make most images match their own caption so that C is not empty
    with torch.no_grad():
        theta = head.image_projection.weight
        phi_pinv = torch.linalg.pinv(head.text_projection.weight)
        text[:4] = (f[:4].mean(1) @ theta.t()) @ phi_pinv.t()
    mask = torch.zeros(6, 5, dtype=torch.bool)
    mask[:, :3] = True
    losses = head.contrastive_and_recon(f, pred, text, mask)
    z_i = F.normalize(f.mean(1) @ theta.t(), dim=-1)
    z_t = F.normalize(text @ head.text_projection.weight.t(), dim=-1)
    aligned = (z_i @ z_t.t()).argmax(1) == torch.arange(6)  # the set C
    assert aligned.any()
    expected = 0.5 * recon_by_equation(pred @ theta.t(), f @ theta.t(), head.prototypes,
                                       mask, aligned)
    # the cross-entropy is logged as recon_ce (loss_recon's value is the KL, same gradient)
    assert losses['recon_ce'].item() == pytest.approx(expected.item(), rel=1e-5)
    assert head.prototypes.shape == (7, 8)
    losses['loss_recon'].backward()
    assert head.prototypes.grad.abs().sum() > 0  # W is learnt by L_recon
    assert text.grad is None or text.grad.abs().sum() == 0  # z^T is not a prototype any more


@pytest.mark.slow
def test_vision_space_toy_config_trains_two_iterations(toy_root, tmp_path):
    runner = train_two_iters('rils/rils_vittiny_toy_visionspace.py', toy_root, tmp_path)
    assert set(train_losses(runner)) == {'loss', 'loss_contrastive', 'loss_recon'}
    assert runner.model.head.prototypes.shape == (64, 128)


# --------------------------------------------------------------------------- SLIP
def simclr_by_equation(a, b, tau):
    """NT-Xent as SLIP writes it: for sample i of view a, the positive is b_i and the
    negatives are every b_j (j != i) and every a_j (j != i); same for view b; averaged."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    n = a.shape[0]
    total = 0.0
    for x, y in ((a, b), (b, a)):
        for i in range(n):
            pos = torch.exp(x[i] @ y[i] / tau)
            neg = sum(torch.exp(x[i] @ y[j] / tau) for j in range(n) if j != i)
            neg = neg + sum(torch.exp(x[i] @ x[j] / tau) for j in range(n) if j != i)
            total = total - torch.log(pos / (pos + neg))
    return total / (2 * n)


@pytest.mark.parametrize('tau', [0.1, 0.5])
def test_simclr_loss_is_nt_xent(tau):
    from rils_mm.models.losses import SimCLRLoss
    g = torch.Generator().manual_seed(4)
    a, b = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    loss = SimCLRLoss(temperature=tau, loss_weight=1.0)(a, b)
    assert loss.item() == pytest.approx(simclr_by_equation(a, b, tau).item(), rel=1e-5)
    assert SimCLRLoss(tau, loss_weight=2.0)(a, b).item() == pytest.approx(2 * loss.item())


def test_slip_paper_config_is_slips_recipe():
    cfg = cfg_of('slip/slip_vitb16_l20m.py')
    m = cfg.model
    neck = m.ssl_neck
    assert (neck.in_channels, neck.hid_channels, neck.out_channels, neck.num_layers) == (
        768, 4096, 256, 3)
    assert neck.norm_cfg.type == 'SyncBN' and not neck.with_last_bn
    assert (m.ssl_loss.temperature, m.ssl_loss.loss_weight) == (0.1, 1.0)
    multi = cfg.train_dataloader.dataset.pipeline[0]
    assert multi.type == 'MultiView' and multi.num_views == [1, 2]
    clip_view, ssl_view = multi.transforms
    rils = cfg_of('rils/rils_vitb16_l20m.py')
    assert clip_view == rils.train_dataloader.dataset.pipeline[:1]
    assert [t.type for t in ssl_view] == ['RandomResizedCrop', 'RandomApply', 'RandomGrayscale',
                                          'GaussianBlur', 'RandomFlip']
    assert ssl_view[0].crop_ratio_range == (0.08, 1.0)
    for key in cfg.keys():
        if key not in ('model', 'train_dataloader', 'image_size', 'ssl_view', 'clip_view'):
            assert cfg[key] == rils[key], key


def test_slip_step_sums_clip_and_simclr():
    model = build_model('slip/slip_vittiny_toy.py')
    images, tokens = toy_batch(4)
    aug1, aug2 = images.flip(-1), images.roll(8, -1)
    losses = model.forward_train(images, aug1, aug2, tokens)
    assert set(losses) == {'loss_contrastive', 'loss_ssl', 'logit_scale'}
    clip = build_model('clip/clip_vittiny_toy.py')
    clip.load_state_dict(model.state_dict(), strict=False)
    assert losses['loss_contrastive'].item() == pytest.approx(
        clip.forward_train(images, tokens)['loss_contrastive'].item(), rel=1e-6)
    with torch.no_grad():
        p1 = model.backbone.forward_intact(aug1)[:, 1:].mean(1)
        p2 = model.backbone.forward_intact(aug2)[:, 1:].mean(1)
        e1, e2 = model.ssl_neck([p1])[0], model.ssl_neck([p2])[0]
    assert losses['loss_ssl'].item() == pytest.approx(
        simclr_by_equation(e1, e2, 0.1).item(), rel=1e-4)
    with pytest.raises(ValueError, match='three views'):
        model.loss(images, [])


@pytest.mark.slow
def test_slip_toy_config_trains_two_iterations(toy_root, tmp_path):
    runner = train_two_iters('slip/slip_vittiny_toy.py', toy_root, tmp_path)
    assert set(train_losses(runner)) == {'loss', 'loss_contrastive', 'loss_ssl'}
    assert 0 <= runner.val_loop.run()['accuracy/top1'] <= 100


# --------------------------------------------------------------------------- two-stage, MILAN
def save_checkpoint(model, path):
    torch.save(dict(meta=dict(), state_dict=model.state_dict()), str(path))
    return str(path)


@pytest.fixture(scope='module')
def stage1(tmp_path_factory):
    """Stage-1 checkpoints of the toy MAE and the toy CLIP (random weights)."""
    root = tmp_path_factory.mktemp('stage1')
    mae = build_model('mae/mae_vittiny_toy.py', seed=1)
    with torch.no_grad():
        for layer in mae.backbone.layers:
            layer.attn.qkv.bias.normal_()
    clip = build_model('clip/clip_vittiny_toy.py', seed=2)
    return dict(mae=save_checkpoint(mae, root / 'mae.pth'), mae_model=mae,
                clip=save_checkpoint(clip, root / 'clip.pth'), clip_model=clip)


def two_stage_cfg(path, stage1):
    cfg = cfg_of(path)
    if cfg.model.get('target_generator'):
        cfg.model.target_generator.checkpoint = stage1['clip']
    else:
        cfg.model.backbone.init_cfg.checkpoint = stage1['mae']
    return cfg


def rils_vit_from_mae(mae_backbone):
    vit = MODELS.build(cfg_of('clip/clip_vittiny_toy.py').model.backbone)
    vit.load_state_dict(mae_backbone.state_dict())
    return vit


def params_equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize('path', ['two_stage/mim-lit_vittiny_toy.py',
                                  'two_stage/mim-clip_vittiny_toy.py'])
def test_mim_then_clip_starts_from_the_mae_encoder(path, stage1):
    init_default_scope('mmpretrain')
    model = MODELS.build(two_stage_cfg(path, stage1).model)
    model.init_weights()
    assert params_equal(model.backbone, rils_vit_from_mae(stage1['mae_model'].backbone))
    assert model.freeze_backbone == ('mim-lit' in path)


@pytest.mark.slow
def test_mim_lit_trains_text_side_only(stage1, toy_root, tmp_path):
    """MIM->LiT: the locked MAE encoder receives no update; the text side learns."""
    before = rils_vit_from_mae(stage1['mae_model'].backbone)
    runner = train_two_iters(
        'two_stage/mim-lit_vittiny_toy.py', toy_root, tmp_path,
        **{'model.backbone.init_cfg.checkpoint': stage1['mae']})
    model = runner.model
    assert params_equal(model.backbone, before)
    model.train()
    assert model.text_encoder.training and not model.backbone.training
    assert all(not p.requires_grad for p in model.backbone.parameters())
    fresh = MODELS.build(two_stage_cfg('two_stage/mim-lit_vittiny_toy.py', stage1).model)
    fresh.init_weights()
    assert not params_equal(model.text_encoder, fresh.text_encoder)


@pytest.mark.slow
def test_mim_clip_trains_the_mae_encoder(stage1, toy_root, tmp_path):
    runner = train_two_iters(
        'two_stage/mim-clip_vittiny_toy.py', toy_root, tmp_path,
        **{'model.backbone.init_cfg.checkpoint': stage1['mae']})
    assert not params_equal(runner.model.backbone,
                            rils_vit_from_mae(stage1['mae_model'].backbone))


def test_clip_teacher_gives_the_clip_models_features_and_cls_attention(stage1):
    from rils_mm.models.target_generators import CLIPTeacher
    cfg = cfg_of('two_stage/clip-mim_vittiny_toy.py').model.target_generator
    cfg.pop('type')
    teacher = CLIPTeacher(**dict(cfg, checkpoint=stage1['clip']))
    clip = stage1['clip_model'].eval()
    images, _ = toy_batch(3)
    feats, attn = teacher(images)
    with torch.no_grad():
        expected = clip.head.image_projection(clip.backbone.forward_intact(images))
    torch.testing.assert_close(feats, expected)
    assert attn.shape == (3, 65, 65) and (attn >= 0).all()
    torch.testing.assert_close(attn.sum(-1), torch.ones(3, 65))
    assert not any(p.requires_grad for p in teacher.parameters())
    teacher.train()
    assert not teacher.training
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        CLIPTeacher(**dict(cfg, checkpoint='missing.pth'))
    with pytest.raises(KeyError, match='head.image_projection.weight'):
        CLIPTeacher(**dict(cfg, checkpoint=stage1['mae']))


@pytest.mark.slow
@pytest.mark.parametrize('path', ['two_stage/clip-mim_vittiny_toy.py',
                                  'milan/milan_vittiny_toy.py'])
def test_clip_teacher_methods_train_two_iterations_with_a_frozen_teacher(
        path, stage1, toy_root, tmp_path):
    runner = train_two_iters(path, toy_root, tmp_path,
                             **{'model.target_generator.checkpoint': stage1['clip']})
    model = runner.model
    teacher_state = {k[len('backbone.'):]: v for k, v in stage1['clip_model'].state_dict().items()
                     if k.startswith('backbone.')}
    got = model.target_generator.backbone.state_dict()
    assert all(torch.equal(got[k], teacher_state[k]) for k in teacher_state)
    assert torch.equal(model.target_generator.image_projection.weight,
                       stage1['clip_model'].head.image_projection.weight)
    assert set(train_losses(runner)) == {'loss'}
    assert all(math.isfinite(v) for v in train_losses(runner)['loss'])


def test_milan_sampling_keeps_the_ratio_and_prefers_attended_patches():
    """Semantic-aware sampling: patches are kept with probability ~ the teacher's
    attention, exactly N (1 - mask_ratio) of them per image."""
    init_default_scope('mmpretrain')
    vit = MODELS.build(cfg_of('milan/milan_vittiny_toy.py').model.backbone)
    torch.manual_seed(0)
    b, n = 64, 64
    x = torch.randn(b, n, 8)
    importance = torch.full((b, n), 0.01)
    attended = torch.stack([torch.randperm(n)[:16] for _ in range(b)])
    importance.scatter_(1, attended, 1.0)  # 16 patches get 100x the attention
    x_kept, ids_restore, ids_keep, ids_dump = vit.attention_masking(x, 0.75, importance)
    assert ids_keep.shape == (b, 16) and ids_dump.shape == (b, 48)
    assert x_kept.shape == (b, 16, 8)
    torch.testing.assert_close(x_kept, torch.gather(x, 1, ids_keep[..., None].expand(-1, -1, 8)))
    for i in range(b):
        assert sorted(ids_keep[i].tolist() + ids_dump[i].tolist()) == list(range(n))
    hits = sum(len(set(ids_keep[i].tolist()) & set(attended[i].tolist())) for i in range(b))
    assert hits / (b * 16) > 0.8  # random masking would give 0.25
    # end to end: the student keeps N (1 - 0.75) patches of each image
    images, _ = toy_batch(2)
    latent, *_ = vit(images, importance=torch.rand(2, 64))
    assert latent.shape == (2, 1 + 16, 128)


# --------------------------------------------------------------------------- every config
BASELINE_DIRS = ('clip', 'mae', 'mae_clip', 'slip', 'two_stage', 'milan')


def baseline_configs():
    import glob
    paths = []
    for d in BASELINE_DIRS:
        paths += sorted(glob.glob(osp.join(ROOT, 'configs', d, '*.py')))
    paths += sorted(glob.glob(osp.join(ROOT, 'configs', 'rils', 'rils_vitb16_l10m_*.py')))
    return [osp.relpath(p, osp.join(ROOT, 'configs')) for p in paths]


def test_every_method_folder_has_a_toy_and_a_paper_config():
    names = baseline_configs()
    for d in BASELINE_DIRS:
        assert any(n.startswith(d + '/') and n.endswith('_vittiny_toy.py') for n in names), d
        assert any(n.startswith(d + '/') and '_vitb16_' in n for n in names), d


@pytest.mark.parametrize('path', [p for p in baseline_configs() if '_vitb16_' in p])
def test_paper_scale_configs_build(path, stage1):
    """ViT-B/16 models are built on the meta device (no memory); a teacher's checkpoint is
    stood in for by the toy CLIP's after checking the teacher is the CLIP ViT-B/16 encoder."""
    cfg = cfg_of(path)
    teacher = cfg.model.get('target_generator')
    if teacher is not None:
        clip_backbone = dict(cfg_of('clip/clip_vitb16_l20m.py').model.backbone)
        for key in ('init_cfg', 'mask_ratio'):  # the teacher loads weights, never masks
            clip_backbone.pop(key)
        assert teacher.backbone == clip_backbone
        assert (teacher.vision_dims, teacher.embed_dims) == (768, 512)
        cfg.model.target_generator = cfg_of('milan/milan_vittiny_toy.py').model.target_generator
        cfg.model.target_generator.checkpoint = stage1['clip']
    init_default_scope('mmpretrain')
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    assert type(model).__name__ == cfg.model.type
    assert model.backbone.patch_embed.projection.weight.shape == (768, 3, 16, 16)
    if cfg.get('val_dataloader'):
        assert hasattr(model, 'set_zero_shot_classifier')  # evaluated zero-shot


@pytest.mark.slow
def test_compare_methods_writes_one_table(tmp_path):
    import subprocess
    import sys
    generate_toy_corpus(str(tmp_path / 'toy'), num_train=24, num_val=12, image_size=32, seed=6,
                        shard_size=24)
    out = tmp_path / 'table.md'
    cmd = [sys.executable, osp.join(ROOT, 'tools', 'compare_methods.py'),
           'configs/clip/clip_vittiny_toy.py', 'configs/mae/mae_vittiny_toy.py',
           '--data-root', str(tmp_path / 'toy'), '--iters', '2', '--batch-size', '8',
           '--work-dir', str(tmp_path / 'w'), '--out', str(out)]
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(p for p in (ROOT, env.get('PYTHONPATH')) if p)
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [line for line in out.read_text().splitlines() if line.startswith('| `')]
    assert len(rows) == 2
    clip, mae = [[c.strip() for c in r.split('|')[1:-1]] for r in rows]
    assert clip[1] == 'CLIP' and mae[1] == 'MAE'
    assert 0 <= float(clip[3]) <= 100 and mae[3] == '—'  # zero-shot only with a text tower
    assert 0 <= float(clip[4]) <= 100 and 0 <= float(mae[4]) <= 100  # linear probe: all
    assert 0 <= float(clip[5]) <= 100 and mae[5] == '—'  # dense zero-shot mIoU: text tower
    assert float(clip[6]) > 0 and float(mae[7]) > 0
    assert 'Command: `python tools/compare_methods.py' in out.read_text()
    # --seeds: one run per seed, one table of mean ± std
    run = subprocess.run(cmd[:3] + cmd[4:-1] + [str(tmp_path / 'seeds.md'), '--seeds', '0', '1'],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    text = (tmp_path / 'seeds.md').read_text()
    row = [c.strip() for c in text.splitlines()[2].split('|')[1:-1]]
    assert row[1] == 'CLIP' and all(' ± ' in c for c in row[2:6])
    assert osp.isfile(tmp_path / 'w' / 'seed1' / 'clip_vittiny_toy.json')
    assert 'seeds 0, 1' in text


def test_milan_teacher_can_be_a_local_open_clip_file(tmp_path):
    """An open_clip (OpenAI layout) ViT state dict on disk feeds mmpretrain's CLIPGenerator:
    its CLS feature is open_clip's own image embedding, and MILAN trains a step with it."""
    from open_clip.model import CLIP as OpenCLIP
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg
    torch.manual_seed(0)
    oc = OpenCLIP(64, CLIPVisionCfg(layers=2, width=64, patch_size=8, image_size=64),
                  CLIPTextCfg(context_length=16, vocab_size=1000, width=64, heads=1, layers=1),
                  quick_gelu=True).eval()
    path = tmp_path / 'open_clip_tiny.pt'
    torch.save(oc.state_dict(), str(path))
    cfg = cfg_of('milan/milan_vittiny_toy.py').model
    cfg.target_generator = dict(type='CLIPGenerator', tokenizer_path=str(path))
    cfg.neck.predict_feature_dim = 64
    init_default_scope('mmpretrain')
    model = MODELS.build(cfg)
    images, _ = toy_batch(2)
    feats, attn = model.target_generator(images)
    with torch.no_grad():
        torch.testing.assert_close(feats[:, 0], oc.encode_image(images), rtol=1e-4, atol=1e-5)
    assert attn.shape == (2, 65, 65)
    loss = model.loss(images, [])['loss']
    assert math.isfinite(loss.item())
