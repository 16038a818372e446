"""Each speed/memory optimisation gives the results of the unoptimised path."""
import io
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmpretrain.models.utils import attention as mmpre_attention
from mmpretrain.registry import MODELS
from PIL import Image

import rils_mm  # noqa: F401
from rils_mm.testing import fake_batch, tiny_rils_cfg
from rils_mm.utils.torch_compat import torch_version

#: torch >= 2.5 has selective activation checkpointing; on 2.4 asking for it
#: must fail with a clear message (checked where the tests below use it).
HAS_SELECTIVE = torch_version() >= (2, 5)


def _selective_refused(fn):
    """On torch 2.4: ``fn()`` stops with the message naming torch >= 2.5."""
    if HAS_SELECTIVE:
        return False
    with pytest.raises(RuntimeError, match=r"with_cp='selective' needs torch >= 2\.5"):
        fn()
    return True


def _text_encoder(**kwargs):
    torch.manual_seed(0)
    return MODELS.build(dict(type='CLIPTextEncoder', context_length=16,
                             vocab_size=1000, width=64, heads=4, layers=2,
                             **kwargs))


def _captions(lengths, context_length=16, vocab_size=1000, seed=0):
    """[SOT, words..., EOT, 0...] with EOT (the largest id) at ``lengths``."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, vocab_size - 2, (len(lengths), context_length),
                           generator=g)
    tokens[:, 0] = vocab_size - 2
    for i, n in enumerate(lengths):
        tokens[i, n] = vocab_size - 1
        tokens[i, n + 1:] = 0
    return tokens


def _grads(module):
    return {n: p.grad.clone() for n, p in module.named_parameters()
            if p.grad is not None}


def test_text_cut_to_longest_caption_gives_the_uncut_outputs_and_gradients():
    # float64, so that float32 round-off (different matmul shapes sum in a
    # different order) cannot hide a real difference
    enc = _text_encoder().double()
    tokens = _captions([3, 7, 5])  # longest caption: 8 of 16 positions
    seen = []
    hook = enc.transformer.token_embedding.register_forward_hook(
        lambda m, i, o: seen.append(i[0].shape[1]))
    h = enc(tokens)
    hook.remove()
    assert seen == [8]  # the tower really ran on 8 positions
    h.pow(2).sum().backward()
    cut_grads = _grads(enc)
    enc.zero_grad()
    # the unoptimised path: open_clip's own forward on all 16 positions with
    # the materialised causal mask and nn.MultiheadAttention
    h_ref = enc.transformer(tokens)
    h_ref.pow(2).sum().backward()
    ref_grads = _grads(enc)
    torch.testing.assert_close(h, h_ref, rtol=1e-10, atol=1e-12)
    assert cut_grads.keys() == ref_grads.keys()
    for name in ref_grads:
        torch.testing.assert_close(cut_grads[name], ref_grads[name],
                                   rtol=1e-9, atol=1e-12, msg=name)
    # positions past the longest caption get exactly zero gradient either way
    pos_grad = ref_grads['transformer.positional_embedding']
    assert pos_grad[8:].abs().max() == 0 and pos_grad[:8].abs().max() > 0


def test_text_cut_off_runs_all_positions_and_matches():
    tokens = _captions([3, 7, 5])
    cut, full = _text_encoder(), _text_encoder(truncate_to_longest=False)
    torch.testing.assert_close(cut(tokens), full(tokens), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match='context_length=16'):
        cut(torch.zeros(2, 17, dtype=torch.long))


def test_text_attention_is_causal_sdpa_without_a_mask(monkeypatch):
    calls = []
    sdpa = F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(F, 'scaled_dot_product_attention', spy)
    enc = _text_encoder()
    enc(_captions([4, 9]))
    assert len(calls) == 2  # one per layer
    assert all(c.get('is_causal') and c.get('attn_mask') is None for c in calls)


def _tiny_rils(**overrides):
    cfg = tiny_rils_cfg()
    for key, value in overrides.items():
        cfg[key].update(value)
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    return model


def test_vision_and_decoder_attention_use_sdpa_and_match_the_plain_formula():
    model = _tiny_rils()
    attns = [m for m in model.modules()
             if isinstance(m, mmpre_attention.MultiheadAttention)]
    assert len(attns) == 3  # 2 encoder blocks + 1 decoder block
    assert all(m.scaled_dot_product_attention is F.scaled_dot_product_attention
               for m in attns)
    images, tokens, noise = fake_batch(4, num_patches=16)
    fast = model.forward_train(images, tokens, mask_noise=noise)

    def plain(q, k, v, dropout_p=0.):  # softmax(q k^T / sqrt(d)) v
        return (q @ k.transpose(-2, -1) / q.shape[-1]**0.5).softmax(-1) @ v

    for m in attns:
        m.scaled_dot_product_attention = plain
    ref = model.forward_train(images, tokens, mask_noise=noise)
    for key in ('loss_contrastive', 'loss_recon'):
        torch.testing.assert_close(fast[key], ref[key], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('with_cp', [True, 1, 'selective'])
def test_activation_checkpointing_gives_identical_losses_and_gradients(with_cp):
    drop = dict(backbone=dict(drop_path_rate=0.2))  # RNG must be replayed
    plain = _tiny_rils(**drop)
    ckpt = _tiny_rils(backbone=dict(drop_path_rate=0.2, with_cp=with_cp),
                      neck=dict(with_cp=with_cp),
                      text_encoder=dict(with_cp=with_cp))
    ckpt.load_state_dict(plain.state_dict())
    images, tokens, noise = fake_batch(4, num_patches=16)
    if with_cp == 'selective' and _selective_refused(
            lambda: ckpt.forward_train(images, tokens, mask_noise=noise)):
        return
    results = []
    for model in (plain, ckpt):
        torch.manual_seed(1)
        losses = model.forward_train(images, tokens, mask_noise=noise)
        (losses['loss_contrastive'] + losses['loss_recon']).backward()
        results.append((losses, _grads(model)))
    (l0, g0), (l1, g1) = results
    for key in ('loss_contrastive', 'loss_recon'):
        assert torch.equal(l0[key], l1[key])
    assert g0.keys() == g1.keys()
    for name in g0:
        torch.testing.assert_close(g1[name], g0[name], rtol=0, atol=0,
                                   msg=name)


def test_activation_checkpointing_keeps_fewer_tensors_for_backward():
    images, tokens, noise = fake_batch(4, num_patches=16)

    def saved_bytes(model):
        total = []

        def pack(t):
            total.append(t.numel() * t.element_size())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model.forward_train(images, tokens, mask_noise=noise)
        return sum(total)

    plain = _tiny_rils()
    ckpt = _tiny_rils(backbone=dict(with_cp=True), neck=dict(with_cp=True),
                      text_encoder=dict(with_cp=True))
    assert saved_bytes(ckpt) < 0.6 * saved_bytes(plain)


def _bytes_alive_after_forward(model, batch):
    """Bytes allocated and not freed during the forward pass (what is kept
    for backward, plus the small outputs), from the profiler's CPU memory
    events: unlike saved-tensor hooks this also sees what selective
    checkpointing caches."""
    from torch.profiler import ProfilerActivity, profile
    images, tokens, noise = batch
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        losses = model.forward_train(images, tokens, mask_noise=noise)
    del losses
    return sum(e.self_cpu_memory_usage for e in prof.events())


def test_selective_checkpointing_keeps_less_without_recomputing_matmuls():
    batch = fake_batch(8, num_patches=16)
    cp = dict(backbone=dict(with_cp='selective'), neck=dict(with_cp='selective'),
              text_encoder=dict(with_cp='selective'))
    full = {k: dict(with_cp=True) for k in cp}
    if _selective_refused(lambda: _tiny_rils(**cp).forward_train(
            batch[0], batch[1], mask_noise=batch[2])):
        return
    kept = {name: _bytes_alive_after_forward(_tiny_rils(**o), batch)
            for name, o in (('plain', {}), ('selective', cp), ('full', full))}
    assert kept['full'] < kept['selective'] < 0.85 * kept['plain']

    # the backward pass recomputes no matrix product: as many mm/addmm/bmm/
    # attention calls as without checkpointing (full checkpointing repeats them)
    from torch.utils.flop_counter import FlopCounterMode

    def step_flops(model):
        images, tokens, noise = batch
        with FlopCounterMode(display=False) as counter:
            losses = model.forward_train(images, tokens, mask_noise=noise)
            (losses['loss_contrastive'] + losses['loss_recon']).backward()
        return counter.get_total_flops()

    plain, sel = step_flops(_tiny_rils()), step_flops(_tiny_rils(**cp))
    assert sel == plain < step_flops(_tiny_rils(**full))


def test_decoder_forward_is_mmpretrains_mae_decoder_forward():
    from mmpretrain.models.necks import MAEPretrainDecoder
    model = _tiny_rils()
    images, _, noise = fake_batch(2, num_patches=16)
    latent, _, ids_restore = model.backbone(images, mask=True, noise=noise)
    g = model.neck(latent, ids_restore)
    assert g.shape == (2, 16, 64)
    assert torch.equal(g, MAEPretrainDecoder.forward(model.neck, latent, ids_restore))


def test_with_cp_rejects_nonsense():
    from rils_mm.models.utils.activation_checkpoint import num_checkpointed
    assert num_checkpointed(True, 4) == 4 and num_checkpointed(False, 4) == 0
    assert num_checkpointed(2, 4) == 2 and num_checkpointed(9, 4) == 4
    if not _selective_refused(lambda: num_checkpointed('selective', 4)):
        assert num_checkpointed('selective', 4) == 4
    with pytest.raises(ValueError, match='with_cp'):
        num_checkpointed(-1, 4)
    with pytest.raises(ValueError, match='selective'):
        num_checkpointed('sometimes', 4)


def test_paper_schedule_uses_fused_adamw_with_the_foreach_update():
    from mmengine.config import Config
    cfg = Config.fromfile('configs/_base_/schedules/adamw_25e.py')
    opt = cfg.optim_wrapper.optimizer
    assert opt.type == 'AdamW' and opt.fused is True
    kwargs = {k: v for k, v in opt.items() if k not in ('type', 'fused')}
    torch.manual_seed(0)
    weights = [torch.randn(8, 8), torch.randn(8)]
    params = {m: [torch.nn.Parameter(w.clone()) for w in weights]
              for m in ('fused', 'foreach')}
    optims = {m: torch.optim.AdamW(ps, **kwargs, **{m: True}) for m, ps in params.items()}
    for step in range(5):
        grads = [torch.randn_like(w) for w in weights]
        for m, ps in params.items():
            for p, g in zip(ps, grads):
                p.grad = g.clone()
            optims[m].step()
    for a, b in zip(params['fused'], params['foreach']):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert not torch.equal(params['fused'][0], weights[0])


# ------------------------------------------------------------------ bf16 on CPU
def test_native_bf16_detection_follows_the_cpu_flags():
    from rils_mm.utils import cpu
    flags = open('/proc/cpuinfo').read()
    expected = 'avx512_bf16' in flags or 'amx_bf16' in flags
    assert cpu.cpu_has_native_bf16() == expected
    assert 'native bf16: ' + ('yes' if expected else 'no') in cpu.cpu_summary()


@pytest.mark.parametrize('native', [True, False])
def test_autocast_wrapper_falls_back_to_fp32_without_native_bf16(
        native, monkeypatch):
    from rils_mm.engine import optim_wrapper as ow
    monkeypatch.setattr(ow, 'cpu_has_native_bf16', lambda: native)
    model = torch.nn.Linear(4, 4)
    wrapper = ow.AutocastOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        with wrapper.optim_context(model):
            out = model(torch.randn(2, 4))
    assert out.dtype == (torch.bfloat16 if native else torch.float32)
    assert any('native bf16' in str(w.message) for w in caught) != native
    keep = ow.AutocastOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        cpu_without_bf16='bf16')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        with keep.optim_context(model):
            assert model(torch.randn(2, 4)).dtype == torch.bfloat16


# ------------------------------------------------------------------ decoding
def _jpeg(w, h, seed=0, exif_orientation=None, fmt='JPEG', mode='RGB'):
    rng = np.random.default_rng(seed)
    coarse = (rng.random((h // 32, w // 32, 3)) * 255).astype(np.uint8)
    img = Image.fromarray(coarse).resize((w, h), Image.BICUBIC).convert(mode)
    buff = io.BytesIO()
    kwargs = dict(quality=90) if fmt == 'JPEG' else {}
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kwargs['exif'] = exif
    img.save(buff, fmt, **kwargs)
    return buff.getvalue()


def _crop(data, draft, seed=3):
    from rils_mm.datasets.draft_decode import DecodeRandomResizedCrop
    t = DecodeRandomResizedCrop(scale=224, crop_ratio_range=(0.5, 1.0),
                                draft=draft)
    np.random.seed(seed)
    return t.transform(dict(img_bytes=data))


def test_draft_decoding_crops_the_same_box_at_lower_cost():
    from mmpretrain.datasets.transforms import RandomResizedCrop

    from rils_mm.datasets.draft_decode import psnr
    from rils_mm.datasets.transforms import decode_image_bgr
    data = _jpeg(1024, 768)
    fast, plain = _crop(data, True), _crop(data, False)
    assert fast['decode_reduction'] == 2 and plain['decode_reduction'] == 1
    assert fast['img'].shape == plain['img'].shape == (224, 224, 3)
    assert fast['ori_shape'] == plain['ori_shape'] == (768, 1024)
    assert psnr(fast['img'], plain['img']) > 30
    # the plain path is exactly "decode, then mmpretrain's RandomResizedCrop"
    np.random.seed(3)
    ref = RandomResizedCrop(scale=224, crop_ratio_range=(0.5, 1.0)).transform(
        dict(img=decode_image_bgr(data)))['img']
    assert np.array_equal(plain['img'], ref)


def test_full_scale_fast_path_and_plain_path_give_identical_pixels():
    # small RGB and grey JPEGs: cv2 decodes at full scale, same libjpeg as PIL;
    # PNG, CMYK and EXIF-rotated JPEGs take the plain PIL path
    for data in (_jpeg(300, 260), _jpeg(400, 300, mode='L'), _jpeg(800, 600, fmt='PNG'),
                 _jpeg(1024, 768, mode='CMYK'), _jpeg(1024, 768, exif_orientation=6)):
        fast, plain = _crop(data, True), _crop(data, False)
        assert fast['decode_reduction'] == 1
        assert np.array_equal(fast['img'], plain['img'])
    rotated = _crop(_jpeg(1024, 768, exif_orientation=6), True)
    assert rotated['ori_shape'] == (1024, 768)  # EXIF rotation applied


def test_draft_decoding_names_the_missing_input():
    from rils_mm.datasets.draft_decode import DecodeRandomResizedCrop
    with pytest.raises(KeyError, match='img_bytes'):
        DecodeRandomResizedCrop().transform(dict())

