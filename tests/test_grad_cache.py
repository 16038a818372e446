"""grad_cache: K micro-batches of M compute the gradient of K times as many ranks.

Float64, every parameter's gradient to 1e-10 relative, for RILS, CLIP, SLIP and
MAE+CLIP, through ``train_step`` and an optimiser wrapper (and DDP's on 2 ranks):

* one process, K = 4, official semantics == 4 gloo ranks of batch M without it;
* one process, K = 4, exact semantics == one process of batch 4M without it;
* 2 gloo ranks under DDP, K = 2 == 4 gloo ranks without it;
* K = 1 == today's step, bit for bit; and a short fp32 training run ends at the
  same weights with and without it.

The reference runs are written plainly: a batch per rank, ``forward_train``,
``backward``, gradients averaged over ranks (what DDP does).
"""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mmengine.model import BaseDataPreprocessor
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

import rils_mm  # noqa: F401
from rils_mm.engine.optim_wrapper import FiniteStepOptimWrapper
from rils_mm.testing import fake_batch, free_port, tiny_rils_cfg

M = 2  # micro-batch: one virtual rank
K = 4
B = K * M
METHODS = ('rils', 'clip', 'slip', 'mae_clip')
EXACT = dict(contrastive_loss=dict(type='ImageTextContrastiveLoss', gather_with_grad=True))


def model_cfg(method, exact=False, micro_batch_size=None):
    """A tiny model of ``method``; exact: the global-batch loss options."""
    head = dict(EXACT) if exact else {}
    if method == 'rils' and exact:
        head['recon_loss'] = dict(type='LanguageSpaceReconLoss', local_loss=False)
    cfg = tiny_rils_cfg(**head)
    if method != 'rils':
        cfg['head'] = dict(type='ImageTextContrastiveHead', vision_dims=64, text_dims=64,
                           embed_dims=32, contrastive_loss=cfg['head']['contrastive_loss'])
    if method == 'clip':
        cfg.update(type='CLIP', neck=None)
    elif method == 'slip':
        cfg.update(type='SLIP', neck=None, ssl_neck=dict(
            type='NonLinearNeck', in_channels=64, hid_channels=32, out_channels=16,
            num_layers=3, with_bias=True, with_last_bias=True, with_last_bn=False,
            with_avg_pool=False, norm_cfg=dict(type='BN1d')))
    elif method == 'mae_clip':
        cfg.update(type='MAECLIP', pixel_head=dict(
            type='MAEPretrainHead', norm_pix=True, patch_size=8,
            loss=dict(type='PixelReconstructionLoss', criterion='L2')))
        cfg['neck'].update(predict_feature_dim=8 * 8 * 3)
    if micro_batch_size is not None:
        cfg['grad_cache'] = dict(micro_batch_size=micro_batch_size)
    return cfg


def build(method, exact=False, micro_batch_size=None, dtype=torch.float64):
    torch.manual_seed(0)
    model = MODELS.build(model_cfg(method, exact, micro_batch_size))
    torch.manual_seed(0)  # weights independent of the cfg's grad_cache
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
    model.data_preprocessor = BaseDataPreprocessor()  # the batch as given, float64
    model.to(dtype)
    # half of the images in C, by a rule of the image alone (a random tiny model
    # matches few), so L_recon and its per-rank normaliser are exercised
    if hasattr(model.head, 'aligned_images'):
        model.head.aligned_images = (
            lambda z_image, all_text: (z_image[:, 0] * 1e3).floor().remainder(2) == 0)
    # the masks come with the samples, so that any split of the batch has the same
    model.loss = lambda inputs, samples: model.forward_train(
        *(inputs if isinstance(inputs, list) else [inputs]), model.text_tokens(samples),
        **({} if method in ('clip', 'slip') else
           dict(mask_noise=torch.stack([s.mask_noise for s in samples]))))
    return model


def global_batch(n=B, dtype=torch.float64):
    images, tokens, noise = fake_batch(n, img_size=32, context_length=16, seed=1)
    g = torch.Generator().manual_seed(2)
    aug = [images + 0.3 * torch.randn(images.shape, generator=g) for _ in range(2)]
    return images.to(dtype), [a.to(dtype) for a in aug], tokens, noise.to(dtype)


def data(method, index, batch):
    images, aug, tokens, noise = batch
    samples = []
    for i in range(*index.indices(len(images))):
        s = DataSample()
        s.set_field(tokens[i], 'text_tokens')
        s.set_field(noise[i], 'mask_noise')
        samples.append(s)
    inputs = [images[index], aug[0][index], aug[1][index]] if method == 'slip' \
        else images[index]
    return dict(inputs=inputs, data_samples=samples)


class Recorder(FiniteStepOptimWrapper):
    """Keeps the gradients of the step instead of applying them."""

    def step(self, **kwargs):
        self.grads = [p.grad.detach().clone() if p.grad is not None else None
                      for p in self.params]


def recorder(model, **kwargs):
    params = list(model.parameters())
    wrapper = Recorder(optimizer=torch.optim.SGD(params, lr=0.0), **kwargs)
    wrapper.params = params
    return wrapper


def grads_of(model, batch_data, wrapper_model=None):
    """(log_vars, {name: grad}) of one ``train_step``."""
    wrapper = recorder(model)
    log_vars = (wrapper_model or model).train_step(batch_data, wrapper)
    names = [n for n, _ in model.named_parameters()]
    return log_vars, {n: g for n, g in zip(names, wrapper.grads) if g is not None}


def assert_grads_equal(got, ref, rtol=1e-10):
    assert got.keys() == ref.keys()
    for name in ref:
        if ref[name].abs().max() < 1e-12:
            # a bias before BatchNorm: 0 in theory, rounding noise in practice
            assert got[name].abs().max() < 1e-12, name
            continue
        scale = ref[name].abs().max()
        err = (got[name] - ref[name]).abs().max() / scale
        assert err <= rtol, f'{name}: relative error {err:.3g}'


# ------------------------------------------------------------ one process
@pytest.mark.parametrize('method', METHODS)
def test_k1_is_todays_step_bit_for_bit(method):
    batch = global_batch(M)
    ref_logs, ref = grads_of(build(method), data(method, slice(None), batch))
    logs, got = grads_of(build(method, micro_batch_size=M), data(method, slice(None), batch))
    assert logs == ref_logs
    assert got.keys() == ref.keys()
    for name in ref:
        assert torch.equal(got[name], ref[name]), name


@pytest.mark.parametrize('method', ('rils', 'clip', 'mae_clip'))
def test_exact_semantics_k4_equals_one_batch_of_4m(method):
    """(SLIP's MLP normalises each virtual rank on its own, as on real ranks;
    it is checked against real ranks below.)"""
    batch = global_batch()
    ref_logs, ref = grads_of(build(method, exact=True), data(method, slice(None), batch))
    logs, got = grads_of(build(method, exact=True, micro_batch_size=M),
                         data(method, slice(None), batch))
    assert_grads_equal(got, ref)
    for key in ref_logs:
        assert float(logs[key]) == pytest.approx(float(ref_logs[key]), rel=1e-10), key


# ------------------------------------------------------------ refusals
def test_what_cannot_be_exact_is_refused_at_build_time():
    cfg = model_cfg('clip', micro_batch_size=M)
    cfg['head']['contrastive_loss'] = dict(type='ImageTextContrastiveLoss', local_loss=False,
                                           gather_with_grad=False)
    with pytest.raises(ValueError, match='local_loss=False, gather_with_grad=False'):
        MODELS.build(cfg)
    cfg = model_cfg('rils', micro_batch_size=M)
    cfg['head']['text_grad_in_recon'] = True
    with pytest.raises(ValueError, match='text_grad_in_recon'):
        MODELS.build(cfg)
    for bad in (0, 2.0, True):
        with pytest.raises(ValueError, match='micro_batch_size must be a positive int'):
            MODELS.build(model_cfg('clip', micro_batch_size=bad))
    cfg = model_cfg('clip')
    cfg['grad_cache'] = dict(micro_batch=4)
    with pytest.raises(ValueError, match=r'dict\(micro_batch_size=M\)'):
        MODELS.build(cfg)
    model = build('clip', micro_batch_size=3)
    with pytest.raises(ValueError, match='batch of 8 images is not a multiple of '
                                         'micro_batch_size=3'):
        grads_of(model, data('clip', slice(None), global_batch()))


# ------------------------------------------------------------ a short run
def test_short_fp32_run_ends_at_the_same_weights():
    """5 steps of SGD with momentum and gradient clipping (exact semantics, one
    process): batch 8 vs K = 4 of 2, the same losses and weights in fp32."""
    finals, logs = [], []
    for mb in (None, M):
        model = build('rils', exact=True, micro_batch_size=mb, dtype=torch.float32)
        wrapper = FiniteStepOptimWrapper(
            optimizer=torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9),
            clip_grad=dict(max_norm=1.0))
        logs.append([])
        for step in range(5):
            images, aug, tokens, noise = global_batch(dtype=torch.float32)
            shifted = (images.roll(step, 0), aug, tokens.roll(step, 0), noise)
            log_vars = model.train_step(data('rils', slice(None), shifted), wrapper)
            logs[-1].append({k: float(v) for k, v in log_vars.items()})
        finals.append({n: p.detach().clone() for n, p in model.named_parameters()})
    assert 0 < logs[0][0]['aligned_ratio'] < 1  # L_recon on some images, not all
    for got, ref in zip(*logs):
        assert got == pytest.approx(ref, rel=1e-5)
    init = dict(build('rils', dtype=torch.float32).named_parameters())
    for name, ref in finals[0].items():
        moved = (ref - init[name].detach()).abs().max()
        torch.testing.assert_close(finals[1][name], ref, rtol=0, atol=1e-4 * float(moved),
                                   msg=name)


# ------------------------------------------------------------ real ranks
def _worker(rank, world, port, out_dir, micro_batch_size):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group('gloo', rank=rank, world_size=world)
    from mmengine.model import MMDistributedDataParallel
    batch = global_batch()
    per_rank = B // world
    index = slice(rank * per_rank, (rank + 1) * per_rank)
    out = {}
    for method in METHODS[:3]:
        model = build(method, micro_batch_size=micro_batch_size)
        if micro_batch_size is None:  # the reference, plainly: backward, average
            d = data(method, index, batch)
            losses = model.loss(d['inputs'], d['data_samples'])
            sum(v for k, v in losses.items() if 'loss' in k).backward()
            grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
            for g in grads.values():
                dist.all_reduce(g)
                g /= world
        else:  # mmengine's DDP wrapper and train_step
            ddp = MMDistributedDataParallel(module=model, broadcast_buffers=False)
            _, grads = grads_of(model, data(method, index, batch), wrapper_model=ddp)
        out[method] = grads
    if rank == 0:
        torch.save(out, os.path.join(out_dir, f'grads_{world}.pth'))
    dist.destroy_process_group()


def _launch(world, out_dir, micro_batch_size=None):
    mp.spawn(_worker, args=(world, free_port(), str(out_dir), micro_batch_size),
             nprocs=world, join=True)
    return torch.load(out_dir / f'grads_{world}.pth', weights_only=True)


@pytest.mark.slow
def test_micro_batches_equal_real_ranks_official_semantics(tmp_path):
    ranks4 = _launch(4, tmp_path)  # 4 ranks of M, no grad_cache
    ranks2 = _launch(2, tmp_path, micro_batch_size=M)  # 2 ranks of 2M, K = 2, DDP
    batch = global_batch()
    for method in METHODS[:3]:
        _, one = grads_of(build(method, micro_batch_size=M),
                          data(method, slice(None), batch))  # 1 process, K = 4
        assert_grads_equal(one, ranks4[method])
        assert_grads_equal(ranks2[method], ranks4[method])
    # and today's single process of batch 4M is a different objective (the
    # gathered batch keeps its gradient there), so the check above can fail
    _, plain = grads_of(build('clip'), data('clip', slice(None), batch))
    with pytest.raises(AssertionError):
        assert_grads_equal(plain, ranks4['clip'])


def test_official_semantics_on_one_process_detaches_the_gathered_batch():
    """K > 1 on one process behaves as K ranks: the other micro-batches' (and
    its own) columns of the contrastive matrix are constants."""
    model = build('clip', micro_batch_size=M)
    z = torch.randn(B, 32, dtype=torch.float64, requires_grad=True)
    t = torch.randn(B, 32, dtype=torch.float64, requires_grad=True)
    losses, _ = model.head.contrastive(z, t, virtual_ranks=K)
    losses['loss_contrastive'].backward()
    # by hand: rows i, columns constant: d/dz_i = s (softmax_i - onehot_i) @ T / B / 2
    s = model.head.get_logit_scale().detach()
    zn, tn = [torch.nn.functional.normalize(x.detach(), dim=-1) for x in (z, t)]
    p = torch.softmax(s * zn @ tn.t(), 1) - torch.eye(B, dtype=torch.float64)
    grad_zn = s * p @ tn / B / 2
    zz = z.detach().clone().requires_grad_()
    torch.autograd.backward(torch.nn.functional.normalize(zz, dim=-1), grad_zn)
    torch.testing.assert_close(z.grad, zz.grad, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------ with the wrappers' options
def test_gradient_accumulation_and_bf16_autocast_go_through_the_wrapper():
    """accumulative_counts=2: two train_steps with K = 4 accumulate the
    gradient of two batch-8 steps (exact semantics, float64); bf16 autocast
    (AutocastOptimWrapper) gives the fp32 gradients to bf16 precision."""
    batches = [global_batch(), tuple(
        t.flip(0) if isinstance(t, torch.Tensor) else [a.flip(0) for a in t]
        for t in global_batch())]
    grads = []
    for mb in (None, M):
        model = build('rils', exact=True, micro_batch_size=mb)
        wrapper = recorder(model, accumulative_counts=2)
        for batch in batches:
            model.train_step(data('rils', slice(None), batch), wrapper)
        names = [n for n, _ in model.named_parameters()]
        grads.append({n: g for n, g in zip(names, wrapper.grads) if g is not None})
    assert_grads_equal(grads[1], grads[0])

    from rils_mm.engine.optim_wrapper import AutocastOptimWrapper

    class Bf16Recorder(AutocastOptimWrapper, Recorder):
        pass

    def bf16_grads(micro_batch_size):
        model = build('rils', exact=True, micro_batch_size=micro_batch_size,
                      dtype=torch.float32)
        params = list(model.parameters())
        wrapper = Bf16Recorder(optimizer=torch.optim.SGD(params, lr=0.0),
                               cpu_without_bf16='bf16')
        wrapper.params = params
        model.train_step(data('rils', slice(None), batch), wrapper)
        return dict(zip([n for n, _ in model.named_parameters()], wrapper.grads))

    def cosine(a, b):
        return torch.nn.functional.cosine_similarity(
            torch.cat([a[n].flatten() for n in ref]), torch.cat([b[n].flatten() for n in ref]),
            dim=0).item()

    batch = global_batch(dtype=torch.float32)
    ref = grads_of(build('rils', exact=True, dtype=torch.float32),
                   data('rils', slice(None), batch))[1]  # fp32, one pass
    # bf16 rounding moves a tiny random network's gradient by a few degrees;
    # micro-batches in bf16 are as close to fp32 as today's bf16 step
    today, cached = cosine(bf16_grads(None), ref), cosine(bf16_grads(M), ref)
    assert cached > 0.9 and cached >= today - 0.01, (cached, today)
