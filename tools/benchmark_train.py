"""Measure a training step: time, images/s, peak memory, FLOPs by part, achieved FLOP/s.

    # one config
    python tools/benchmark_train.py configs/rils/rils_vitb16_l20m.py --batch-size 8
    # two configs (or two settings) alternately in one process, with ratios
    python tools/benchmark_train.py CONFIG_A --compare CONFIG_B
    # beside the official hustvl/RILS code (kept outside this repository; needs timm)
    python tools/benchmark_train.py configs/rils/rils_vitb16_l20m.py --official /path/to/RILS

What a step is: forward of the loss, ``backward()`` and one optimiser step,
each side as its own training code runs it (default): ours through the
config's ``optim_wrapper`` (built like the Runner does: its AdamW settings,
e.g. ``fused=True``, its parameter groups and wrapper; an fp16 AMP wrapper
becomes its fp32 / bf16 sibling as ``tools/train.py`` does), the official
code as SLIP's ``main.py`` (which the official RILS README credits) runs it:
``torch.optim.AdamW`` with its two weight-decay groups and torch's default
implementation for the device, ``GradScaler``, ``zero_grad`` after the step
and the logit-scale clamp. ``--plain-adamw`` gives both sides the same plain
``torch.optim.AdamW`` instead. The report names each side's optimiser. On
synthetic images and captions (``--captions laion``: token counts drawn from a
LAION-like distribution, see :func:`caption_lengths`; ``full``: every caption
77 tokens long). Timed steps of the runners alternate (A B A B ...), so slow
and fast phases of a shared machine hit both alike; every comparison is a
ratio of medians measured in that one process.

RILS decodes only the correctly matched images C (``decode_aligned_only``),
so its step costs less the fewer images are matched. A freshly initialised
model matches about 1 / B of them, which would flatter it; the benchmark
therefore fixes C to the first ``round(--aligned-ratio * B)`` images of the
batch, by default all of them (the most work, the same as decoding every
image). The official code decodes every image whatever C is.

Peak memory is measured separately for each runner in a fresh subprocess that
builds the runner and runs ``--warmup`` + 1 steps: on CPU the process's
peak resident set (``VmHWM``; includes weights, gradients and the AdamW
state), on CUDA ``max_memory_allocated``.

FLOPs are counted with :class:`torch.utils.flop_counter.FlopCounterMode`
(matmuls, convolutions and attention; the CPU flash-attention kernels are
registered here because torch does not count them), per image, forward and
forward + backward. For a RILS model the parts are the intact view, the
masked view, the decoder, the text tower and the losses, each counted on its
own with its inputs detached (the sum is checked against the whole step).
Achieved FLOP/s = step FLOPs / step time, against a matmul "peak" measured on
this machine with the same dtype and threads (a 1024^3 ``torch.mm``).
Every report starts with the CPU model, its SIMD/bf16 flags and the threads.
"""
import argparse
import json
import math
import os
import os.path as osp
import resource
import statistics
import subprocess
import sys
import time
import warnings

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

PARTS = ('intact view', 'masked view', 'decoder', 'text', 'losses')


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description='Benchmark a training step')
    parser.add_argument('config')
    parser.add_argument('--compare', metavar='CONFIG2',
                        help='second config, timed alternately with the first')
    parser.add_argument('--official', metavar='PATH',
                        help='folder of the official RILS code (models.py, '
                        'losses.py, ...); timm must be importable')
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--iters', type=int, default=3,
                        help='timed steps per runner (alternating)')
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--precision', default='fp32',
                        choices=['fp32', 'bf16', 'fp16'])
    parser.add_argument('--captions', default='laion', choices=['laion', 'full'],
                        help='synthetic caption lengths (see caption_lengths)')
    parser.add_argument('--device', default=None,
                        help='cpu or cuda (default: cuda if available)')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch CPU threads (default: torch default)')
    parser.add_argument('--plain-adamw', action='store_true',
                        help='both sides: plain torch.optim.AdamW(lr=1e-4) on '
                        'all parameters (torch default implementation) '
                        'instead of each side\'s own optimiser setup')
    parser.add_argument('--fused-adamw', action='store_true',
                        help='with --plain-adamw: AdamW(fused=True) on both '
                        'sides (CUDA; also CPU on torch>=2.4)')
    parser.add_argument('--compile', action='store_true',
                        help='torch.compile our model(s) before timing')
    parser.add_argument('--no-memory', action='store_true',
                        help='skip the peak-memory subprocesses')
    parser.add_argument('--part-times', action='store_true',
                        help='also time each part (forward + backward on '
                        'detached inputs) and the optimiser step alone, '
                        'best of 2 alternating rounds, with GFLOP/s per part')
    parser.add_argument('--aligned-ratio', type=float, default=1.0,
                        help='for RILS: the fraction of each batch counted as '
                        'correctly matched (the set C of Eq. 9, whose images '
                        'alone are decoded): the first round(ratio * B) '
                        'images. Default 1.0, the most work (every image '
                        'decoded); a random model would match about 1 / B')
    parser.add_argument('--no-flops', action='store_true',
                        help='skip FLOP counting')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='overrides applied to our config(s)')
    parser.add_argument('--compare-cfg-options', nargs='+', action=DictAction,
                        help='overrides applied to --compare only (default: '
                        'those of --cfg-options)')
    parser.add_argument('--memory-curve', type=int, nargs='+', metavar='B',
                        help='only measure peak memory, at these batch sizes '
                        '(one fresh process per runner and batch size)')
    parser.add_argument('--json', help='also write the results here')
    parser.add_argument('--memory-of', help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# --------------------------------------------------------------------- machine
def register_cpu_attention_flops():
    """Teach FlopCounterMode the CPU flash-attention kernels that
    ``scaled_dot_product_attention`` dispatches to (uncounted by torch)."""
    import torch
    from torch.utils import flop_counter as fc
    aten = torch.ops.aten
    if not hasattr(aten, '_scaled_dot_product_flash_attention_for_cpu'):
        return
    op = aten._scaled_dot_product_flash_attention_for_cpu
    if op in fc.flop_registry or op.default in fc.flop_registry:  # 2.4 keys overloads
        return

    @fc.register_flop_formula(
        aten._scaled_dot_product_flash_attention_for_cpu, get_raw=True)
    def _fwd(query, key, value, *args, out_val=None, **kwargs):
        return fc.sdpa_flop_count(query.shape, key.shape, value.shape)

    @fc.register_flop_formula(
        aten._scaled_dot_product_flash_attention_for_cpu_backward, get_raw=True)
    def _bwd(grad_out, query, key, value, *args, out_val=None, **kwargs):
        return fc.sdpa_backward_flop_count(grad_out.shape, query.shape,
                                           key.shape, value.shape)


def autocast_dtype(precision):
    import torch
    return {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}[precision]


def matmul_peak(device, precision, n=1024, seconds=1.0):
    """GFLOP/s of a square ``n``-matmul in the step's dtype, best of 3."""
    import torch
    dtype = autocast_dtype(precision) or torch.float32
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    best = 0.
    for _ in range(3):
        a @ b
        sync(device)
        t, k = time.perf_counter(), 0
        while time.perf_counter() - t < seconds / 3 or k == 0:
            a @ b
            k += 1
        sync(device)
        best = max(best, 2 * n**3 * k / (time.perf_counter() - t) / 1e9)
    return best


def sync(device):
    import torch
    if str(device).startswith('cuda'):
        torch.cuda.synchronize()


def device_summary(device):
    import torch

    from rils_mm.utils.cpu import cpu_summary
    line = f'CPU: {cpu_summary()}'
    if str(device).startswith('cuda'):
        line += f'\nGPU: {torch.cuda.get_device_name()}'
    return line


# --------------------------------------------------------------------- inputs
def caption_lengths(batch_size, context_length=77, seed=0):
    """Token positions of the end-of-text token for ``batch_size`` synthetic
    LAION-like captions.

    An assumption, not a measurement (no LAION captions are on this machine):
    LAION alt-texts are short (median ~10 words); the number of CLIP BPE tokens
    between start and end of text is modelled as log-normal with median 13 and
    sigma 0.65 (mean ~16, 99th percentile ~59), rounded, at least 1, and
    truncated at the context like ``TokenizeText`` (EOT in the last position).
    """
    import torch
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch_size, generator=g)
    n = torch.exp(math.log(13.) + 0.65 * z).round().long().clamp(min=1)
    return (n + 1).clamp(max=context_length - 1)  # SOT + n tokens, EOT index


def synthetic_batch(batch_size, img_size, context_length, num_patches,
                    captions='laion', seed=0, vocab_size=49408):
    """Images (B,3,H,W), CLIP-style token ids (B,L) and masking noise (B,N)."""
    import torch
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(batch_size, 3, img_size, img_size, generator=g)
    if captions == 'full':
        eot = torch.full((batch_size, ), context_length - 1)
    else:
        eot = caption_lengths(batch_size, context_length, seed)
    tokens = torch.randint(1, vocab_size - 2, (batch_size, context_length),
                           generator=g)
    tokens[:, 0] = vocab_size - 2
    pos = torch.arange(context_length)
    tokens[pos[None] > eot[:, None]] = 0
    tokens[torch.arange(batch_size), eot] = vocab_size - 1
    noise = torch.rand(batch_size, num_patches, generator=g)
    return images, tokens, noise


# --------------------------------------------------------------------- runners
def force_aligned_ratio(head, ratio, batch_size):
    """Make this RILS ``head`` count the first ``round(ratio * B)`` images of
    every batch as correctly matched (the set C); returns that number. Only
    this head is changed (an instance attribute), nothing global."""
    import torch
    k = round(ratio * batch_size)
    if not (0 < ratio <= 1 and k > 0):
        raise SystemExit(f'--aligned-ratio must be in (0, 1] and leave at least one '
                         f'of the {batch_size} images, got {ratio}')

    def aligned_images(z_image, all_text):
        aligned = torch.zeros(z_image.shape[0], dtype=torch.bool,
                              device=z_image.device)
        aligned[:k] = True
        return aligned

    head.aligned_images = aligned_images
    return k


class OursRunner:
    """One training step of a config of this project."""

    def __init__(self, config, args, cfg_options=None, label=None):
        import torch
        from mmengine.config import Config
        from mmpretrain.registry import MODELS
        from mmpretrain.structures import DataSample

        import rils_mm  # noqa: F401

        self.label = label or osp.splitext(osp.basename(config))[0]
        self.device = args.device
        cfg = Config.fromfile(config)
        if cfg_options:
            cfg.merge_from_dict(cfg_options)
        self.cfg = cfg
        model = MODELS.build(cfg.model)
        model.init_weights()
        self.model = model.to(self.device).train()
        bb = cfg.model.backbone
        img_size, patch = bb.get('img_size', 224), bb.get('patch_size', 16)
        ctx = cfg.model.text_encoder.get('context_length', 77)
        images, tokens, noise = synthetic_batch(
            args.batch_size, img_size, ctx, (img_size // patch)**2,
            args.captions)
        self.images = images.to(self.device)
        self.tokens = tokens.to(self.device)
        self.noise = noise.to(self.device)
        self.decoded = args.batch_size  # images through the masked view + V-Dec
        if getattr(self.model, 'decode_aligned_only', False):
            self.decoded = force_aligned_ratio(self.model.head, args.aligned_ratio,
                                               args.batch_size)
        self.samples = []
        for t in self.tokens:
            sample = DataSample()
            sample.set_field(t, 'text_tokens', dtype=torch.Tensor)
            self.samples.append(sample)
        self.dtype = autocast_dtype(args.precision)
        self.optim_wrapper = None
        if args.plain_adamw or cfg.get('optim_wrapper') is None:
            self.optim = torch.optim.AdamW(
                self.model.parameters(), lr=1e-4, fused=args.fused_adamw or None)
            self.scaler = (torch.amp.GradScaler(self.device)
                           if args.precision == 'fp16' else None)
            self.optim_desc = describe_plain_adamw(self.optim) + (
                '' if args.plain_adamw else ' (the config has no optim_wrapper)')
        else:
            self.optim_wrapper = build_config_optim_wrapper(
                self.model, cfg.optim_wrapper, args.precision)
            self.optim = self.optim_wrapper.optimizer
            self.optim_desc = describe_optim_wrapper(self.optim_wrapper)
        self.forward = self.model
        if args.compile:
            self.forward = torch.compile(self.model)

    def params_m(self):
        return {name: sum(p.numel() for p in mod.parameters()) / 1e6
                for name, mod in self.model.named_children()
                if name != 'data_preprocessor'}

    def loss(self):
        losses = self.forward(self.images, self.samples, mode='loss')
        return sum(v for k, v in losses.items() if 'loss' in k)

    def step(self):
        if self.optim_wrapper is not None:
            # what mmengine's train_step does: forward in the wrapper's
            # context (autocast for bf16), backward, step, zero_grad
            with self.optim_wrapper.optim_context(self.model):
                loss = self.loss()
            self.optim_wrapper.update_params(loss)
            self.clamp_logit_scale()
            return
        plain_step(self)

    def clamp_logit_scale(self):
        head = getattr(self.model, 'head', None)
        if hasattr(head, 'clamp_logit_scale'):  # LogitScaleClampHook's work
            head.clamp_logit_scale()

    def part_fns(self):
        """{part: fn} for :func:`part_flops` / :func:`part_times`: each fn
        runs one part's forward on detached inputs (called in order)."""
        m = self.model
        if not (hasattr(m, 'text_encoder')
                and hasattr(getattr(m, 'backbone', None), 'forward_intact')):
            return None  # not an image-text model of this project
        leaf = lambda t: t.detach().requires_grad_()  # noqa: E731
        cache = {}

        def intact():
            cache['f'] = m.backbone.forward_intact(self.images)[:, 1:]
            return cache['f']

        k = self.decoded  # C is forced to the first k images

        def masked():
            latent, mask, ids = m.backbone(self.images[:k], mask=True,
                                           noise=self.noise[:k])
            cache.update(latent=latent, mask=mask, ids=ids)
            return latent

        def decoder():
            cache['g'] = m.neck(leaf(cache['latent']), cache['ids'])
            return cache['g']

        def text():
            cache['h'] = m.text_encoder(self.tokens)
            return cache['h']

        def losses():
            f = leaf(cache['f'])
            out, prototypes, aligned = m.head.contrastive_and_aligned(
                f, leaf(cache['h']))
            out.update(m.head.recon(f[:k], leaf(cache['g']), prototypes,
                                    cache['mask'], aligned[:k]))
            return sum(v for name, v in out.items() if 'loss' in name)

        def clip_losses():
            out = m.head.loss(leaf(cache['f']), leaf(cache['h']))
            return sum(v for name, v in out.items() if 'loss' in name)

        if getattr(m, 'neck', None) is not None:  # RILS-like: all five parts
            return dict(zip(PARTS, (intact, masked, decoder, text, losses)))
        # no masked view / decoder (e.g. CLIP)
        return {'intact view': intact, 'text': text, 'losses': clip_losses}

    def optimizer_step(self):
        """The optimiser part of :meth:`step` (gradients already there)."""
        if self.optim_wrapper is not None:
            self.optim_wrapper.step()
            self.optim_wrapper.zero_grad()
        else:
            self.optim.step()
            self.optim.zero_grad(set_to_none=True)


class OfficialRunner:
    """The official hustvl/RILS ``RILS_VITB16`` + ``RILSLoss`` + AdamW step."""

    def __init__(self, path, args):
        import torch
        path = osp.abspath(path)
        for name in ('models.py', 'losses.py', 'models_rils.py', 'utils.py',
                     'pos_embed.py', 'vision_transformer.py'):
            if not osp.isfile(osp.join(path, name)):
                raise FileNotFoundError(
                    f'--official {path}: {name} not found; expected the '
                    'official RILS code (models.py, models_rils.py, losses.py, '
                    'utils.py, pos_embed.py, vision_transformer.py)')
        sys.path.insert(0, path)
        try:
            import losses as official_losses
            import models as official_models
        except ImportError as e:
            raise ImportError(f'--official {path}: importing the official code '
                              f'failed ({e}); it needs timm on PYTHONPATH') from e
        finally:
            sys.path.remove(path)
        self.label = 'official RILS_VITB16'
        self.device = args.device
        self.model = official_models.RILS_VITB16().to(self.device).train()
        self.criterion = official_losses.RILSLoss()
        images, tokens, _ = synthetic_batch(args.batch_size, 224, 77, 196,
                                            args.captions)
        self.images, self.tokens = images.to(self.device), tokens.to(self.device)
        self.dtype = autocast_dtype(args.precision)
        self.plain = args.plain_adamw
        if self.plain:
            self.optim = torch.optim.AdamW(
                self.model.parameters(), lr=1e-4, fused=args.fused_adamw or None)
            self.scaler = (torch.amp.GradScaler(self.device)
                           if args.precision == 'fp16' else None)
            self.optim_desc = describe_plain_adamw(self.optim)
        else:
            self.optim = slip_adamw(self.model)
            # SLIP: GradScaler(enabled=not args.disable_amp); AMP there is fp16
            self.scaler = torch.amp.GradScaler(
                self.device, enabled=args.precision == 'fp16')
            self.optim_desc = ('SLIP main.py: ' + describe_plain_adamw(self.optim)
                               + ', GradScaler, zero_grad after the step')

    def params_m(self):
        m = self.model
        vis = sum(p.numel() for p in m.visual.parameters())
        return {'visual (enc+dec)': vis / 1e6,
                'text+proj': (sum(p.numel() for p in m.parameters()) - vis) / 1e6}

    def loss(self):
        return self.criterion(self.model(self.images, self.tokens))['loss']

    def step(self):
        if self.plain:
            plain_step(self)
            return
        import torch
        # SLIP main.py's train(): autocast forward + criterion, isfinite
        # check, scaled backward, step, update, zero_grad, clamp logit scale
        with torch.autocast(self.device, dtype=self.dtype,
                            enabled=self.dtype is not None):
            loss = self.loss()
        if not math.isfinite(loss.item()):
            raise RuntimeError(f'official step: loss is {loss.item()}')
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optim)
        self.scaler.update()
        self.model.zero_grad(set_to_none=True)
        self.model.logit_scale.data.clamp_(0, 4.6052)

    def clamp_logit_scale(self):
        self.model.logit_scale.data.clamp_(0, 4.6052)

    def part_fns(self):
        """The same five parts as :meth:`OursRunner.part_fns`, following
        the official ``RILS.forward`` / ``MaskedAutoencoderViT.forward``."""
        m, vis = self.model, self.model.visual
        leaf = lambda t: t.detach().requires_grad_()  # noqa: E731
        cache = {}

        def intact():
            cache['full'], _, _ = vis.forward_encoder(self.images, 0)
            return cache['full']

        def masked():
            latent, mask, ids = vis.forward_encoder(self.images, m.mask_ratio)
            cache.update(latent=latent, mask=mask, ids=ids)
            return latent

        def decoder():
            cache['pred'] = vis.forward_decoder(leaf(cache['latent']), cache['ids'])
            return cache['pred']

        def text():
            cache['text'] = m.encode_text(self.tokens)
            return cache['text']

        def losses():
            full, pred = leaf(cache['full']), leaf(cache['pred'])
            outputs = {
                'image_embed': full[:, 1:].mean(1) @ m.image_projection,
                'text_embed': leaf(cache['text']),
                'logit_scale': m.logit_scale.exp(),
                'masked_feat': leaf(cache['latent']) @ m.image_projection,
                'masked_pred': pred @ m.image_projection,
                'unmasked_feat': full @ m.image_projection,
                'mask': cache['mask'].clone()}
            return self.criterion(outputs)['loss']

        return dict(zip(PARTS, (intact, masked, decoder, text, losses)))

    def optimizer_step(self):
        """The optimiser part of :meth:`step` (gradients already there)."""
        if self.plain:
            self.optim.step()
        else:
            self.scaler.step(self.optim)
            self.scaler.update()
        self.model.zero_grad(set_to_none=True)


def plain_step(runner):
    """The ``--plain-adamw`` step: autocast forward, zero_grad, backward
    (through a GradScaler for fp16), ``AdamW.step``, logit-scale clamp."""
    import torch
    with torch.autocast(runner.device, dtype=runner.dtype,
                        enabled=runner.dtype is not None):
        loss = runner.loss()
    runner.optim.zero_grad(set_to_none=True)
    if runner.scaler is not None:
        runner.scaler.scale(loss).backward()
        runner.scaler.step(runner.optim)
        runner.scaler.update()
    else:
        loss.backward()
        runner.optim.step()
    runner.clamp_logit_scale()


def slip_adamw(model):
    """The optimiser of SLIP's ``main.py`` (the official RILS code's training
    script is not released; its README credits SLIP) with the paper's
    settings: no weight decay where ``p.ndim < 2`` or the name has 'bias',
    'ln' or 'bn'; ``torch.optim.AdamW`` with torch's default implementation."""
    import torch
    p_wd, p_non_wd = [], []
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or 'bias' in n or 'ln' in n or 'bn' in n:
            p_non_wd.append(p)
        else:
            p_wd.append(p)
    return torch.optim.AdamW(
        [{'params': p_wd, 'weight_decay': 0.5},
         {'params': p_non_wd, 'weight_decay': 0.}],
        lr=5e-4, betas=(0.9, 0.98), eps=1e-8, weight_decay=0.5)


def adamw_implementation(optim):
    """'fused', 'foreach' or 'for-loop': what ``AdamW.step`` will run."""
    from torch.optim.optimizer import _default_to_fused_or_foreach
    group = optim.param_groups[0]
    if group.get('fused'):
        return 'fused'
    if group.get('foreach') is not None:
        return 'foreach' if group['foreach'] else 'for-loop'
    params = [p for g in optim.param_groups for p in g['params']]
    _, foreach = _default_to_fused_or_foreach(params, False, False)
    return 'foreach' if foreach else 'for-loop'


def describe_plain_adamw(optim):
    return (f'torch.optim.{type(optim).__name__} '
            f'({adamw_implementation(optim)}, '
            f'{len(optim.param_groups)} param group(s))')


def build_config_optim_wrapper(model, optim_cfg, precision):
    """The config's optimiser wrapper, as the Runner builds it. mmengine's
    fp16 ``AmpOptimWrapper`` needs a GPU: like ``tools/train.py``, fp32
    uses its non-AMP sibling and bf16 the autocast wrapper."""
    import copy

    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    init_default_scope('mmpretrain')
    cfg = copy.deepcopy(optim_cfg)
    if precision == 'fp32' and 'Amp' in cfg.get('type', ''):
        cfg['type'] = 'FiniteStepOptimWrapper'
        cfg.pop('loss_scale', None)
        cfg.pop('dtype', None)
    elif precision == 'bf16':
        cfg['type'] = 'AutocastOptimWrapper'
        cfg['dtype'] = 'bfloat16'
        cfg['cpu_without_bf16'] = 'bf16'  # asked for bf16: measure bf16
        cfg.pop('loss_scale', None)
    elif precision == 'fp16':
        cfg['type'] = 'FiniteStepAmpOptimWrapper'
        cfg['dtype'] = 'float16'
        cfg.setdefault('loss_scale', 'dynamic')
    return build_optim_wrapper(model, cfg)


def describe_optim_wrapper(wrapper):
    return (f'config optim_wrapper: {type(wrapper).__name__} + '
            + describe_plain_adamw(wrapper.optimizer)
            + ', zero_grad after the step')


def count_flops(fn, model):
    """(forward, forward+backward) FLOPs of ``fn()`` (a tensor; backward from
    ones, or from the scalar)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        out = fn()
        fwd = counter.get_total_flops()
        out.backward(torch.ones_like(out))
    model.zero_grad(set_to_none=True)
    return fwd, counter.get_total_flops()


def part_flops(runner):
    """{part: (forward FLOPs, forward+backward FLOPs)} of the batch."""
    fns = runner.part_fns()
    if fns is None:
        return None
    return {name: count_flops(fn, runner.model) for name, fn in fns.items()}


def part_times(runner, device):
    """{part: seconds of forward + backward}, each part on its own with
    detached inputs like :func:`part_flops`, plus the optimiser step alone
    (on the gradients of a whole backward)."""
    import torch
    fns = runner.part_fns()
    times = {}
    for name, fn in (fns or {}).items():
        sync(device)
        start = time.perf_counter()
        out = fn()
        out.backward(torch.ones_like(out))
        sync(device)
        times[name] = time.perf_counter() - start
    runner.model.zero_grad(set_to_none=True)
    runner.loss().backward()
    sync(device)
    start = time.perf_counter()
    runner.optimizer_step()
    sync(device)
    times['optimizer step'] = time.perf_counter() - start
    return times


def whole_step_flops(runner):
    return count_flops(runner.loss, runner.model)


def build_runner(spec, args):
    kind, value = spec
    if kind == 'official':
        return OfficialRunner(value, args)
    config, options, label = value
    return OursRunner(config, args, options, label)


def runner_specs(args):
    """[('ours'|'official', ...)] in the order they are timed."""
    specs = [('ours', (args.config, args.cfg_options, None))]
    if args.compare:
        label = None
        if osp.abspath(args.compare) == osp.abspath(args.config):
            label = osp.splitext(osp.basename(args.compare))[0] + ' (B)'
        specs.append(('ours', (args.compare, args.compare_cfg_options
                               if args.compare_cfg_options is not None
                               else args.cfg_options, label)))
    if args.official:
        specs.append(('official', args.official))
    return specs


# --------------------------------------------------------------------- memory
def measure_memory(spec, args):
    """Peak memory (MiB) of building one runner and running warmup+1 steps,
    in this process (call it in a fresh one)."""
    import torch
    runner = build_runner(spec, args)
    if args.device.startswith('cuda'):
        torch.cuda.reset_peak_memory_stats()
    rss_built = _current_rss_mib()
    for _ in range(args.warmup + 1):
        runner.step()
    sync(args.device)
    if args.device.startswith('cuda'):
        return dict(peak_mib=torch.cuda.max_memory_allocated() / 2**20,
                    kind='CUDA max allocated')
    return dict(peak_mib=_peak_rss_mib(), after_build_mib=rss_built,
                kind='process peak RSS, VmHWM', optimizer=runner.optim_desc)


def _peak_rss_mib():
    """High-water mark of this process's resident set (VmHWM). Unlike
    ``ru_maxrss``, which Linux carries over from the parent through fork, it
    belongs to this program alone."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mib():
    try:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20
    except OSError:
        return float('nan')


def memory_in_subprocess(index, argv):
    cmd = [sys.executable, osp.abspath(__file__), *argv, '--memory-of', str(index)]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f'memory run {index} failed:\n{run.stderr[-3000:]}')
    return json.loads(run.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------- main
def setup(args):
    import logging

    import torch
    from mmengine.logging import MMLogger
    MMLogger.get_instance('mmengine').setLevel(logging.WARNING)  # no init tables
    if args.threads:
        torch.set_num_threads(args.threads)
    args.device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    if args.device == 'cpu' and args.precision == 'bf16':
        from rils_mm.utils.cpu import cpu_has_native_bf16
        if not cpu_has_native_bf16():
            warnings.warn('this CPU has no native bf16 (no AVX512-BF16/AMX): '
                          'bf16 autocast is emulated and far slower than fp32; '
                          'bf16 timings taken here say nothing about bf16 '
                          'hardware', stacklevel=2)
    if args.fused_adamw and not args.plain_adamw:
        raise SystemExit('--fused-adamw only applies with --plain-adamw (by '
                         'default each side uses its own optimiser setup)')
    register_cpu_attention_flops()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    setup(args)
    specs = runner_specs(args)
    if args.memory_of is not None:
        print(json.dumps(measure_memory(specs[int(args.memory_of)], args)))
        return

    if args.memory_curve:
        memory_curve(specs, args, argv)
        return

    import torch
    runners = [build_runner(spec, args) for spec in specs]
    print(device_summary(args.device))
    peak = matmul_peak(args.device, args.precision)
    print(f'matmul peak ({args.precision}, 1024^3 mm, {torch.get_num_threads()}'
          f' threads): {peak:.1f} GFLOP/s before the steps (probed again after)')
    print(f'batch {args.batch_size}, {args.precision}, captions {args.captions}'
          f' (longest in batch: {int(runners[0].tokens.argmax(-1).max()) + 1} '
          f'of {runners[0].tokens.shape[1]} tokens), {args.warmup} warm-up + '
          f'{args.iters} timed steps per runner, alternating')

    for r in runners:
        print(f'optimiser of {r.label}: {r.optim_desc}')
        if getattr(getattr(r, 'model', None), 'decode_aligned_only', False):
            print(f'{r.label}: C (correctly matched, decoded) forced to '
                  f'{r.decoded} of {args.batch_size} images (--aligned-ratio '
                  f'{args.aligned_ratio})')
    results = []
    for r in runners:
        res = dict(label=r.label, params_m=r.params_m(), optimizer=r.optim_desc)
        if not args.no_flops:
            res['parts'] = part_flops(r)
            res['step_flops'] = whole_step_flops(r)
        results.append(res)
    for _ in range(args.warmup):
        for r in runners:
            r.step()
    times = [[] for _ in runners]
    for _ in range(args.iters):
        for r, t in zip(runners, times):
            sync(args.device)
            start = time.perf_counter()
            r.step()
            sync(args.device)
            t.append(time.perf_counter() - start)
    if args.part_times:
        rounds = [[part_times(r, args.device) for r in runners]
                  for _ in range(2)]
        for i, res in enumerate(results):
            res['part_times_s'] = {k: min(rd[i][k] for rd in rounds)
                                   for k in rounds[0][i]}
    del runners
    # on a shared machine a single probe can land in a busy moment: take the
    # better of the probes before and after the timed steps
    peak = max(peak, matmul_peak(args.device, args.precision))
    for res, t in zip(results, times):
        res['times_s'] = t
        res['step_s'] = statistics.median(t)
        res['img_s'] = args.batch_size / res['step_s']
        if 'step_flops' in res:
            res['achieved_gflops'] = res['step_flops'][1] / res['step_s'] / 1e9
            res['of_peak'] = res['achieved_gflops'] / peak
    if not args.no_memory:
        for i, res in enumerate(results):
            res['memory'] = memory_in_subprocess(i, argv)
    report(results, args, peak)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(cpu=device_summary(args.device), matmul_peak=peak,
                           args=vars(args), results=results), f, indent=1,
                      default=str)


def memory_curve(specs, args, argv):
    """Peak memory of each runner at each batch size, plus a linear fit
    ``peak = a + b * batch`` and the batch size that fit puts at 24 GiB."""
    import numpy as np
    print(device_summary(args.device))
    labels = [spec[1][2] or osp.splitext(osp.basename(spec[1][0]))[0]
              if spec[0] == 'ours' else 'official' for spec in specs]
    print(f'peak memory (MiB) vs batch size, {args.precision}, captions '
          f'{args.captions}, {args.warmup} warm-up + 1 step per process')
    rows = {}
    for i, label in enumerate(labels):
        rows[label] = []
        for b in args.memory_curve:
            mem = memory_in_subprocess(i, argv + ['--batch-size', str(b)])
            rows[label].append(mem['peak_mib'])
            print(f'  {label:<40} batch {b:>4}: {mem["peak_mib"]:>9.0f} MiB '
                  f'({mem["kind"]}; {mem.get("optimizer", "?")})', flush=True)
    print(f'{"runner":<40}' + ''.join(f'{b:>9}' for b in args.memory_curve)
          + f'{"MiB/img":>9}{"batch@24GiB (fit)":>19}')
    for label, peaks in rows.items():
        line = f'{label:<40}' + ''.join(f'{p:>9.0f}' for p in peaks)
        if len(peaks) > 1:
            slope, icpt = np.polyfit(args.memory_curve, peaks, 1)
            fit = (24 * 1024 - icpt) / slope if slope > 0 else float('inf')
            line += f'{slope:>9.1f}{fit:>19.0f}'
        print(line)


def _gf(flops):
    """GFLOPs, with enough decimals for tiny test models."""
    g = flops / 1e9
    return f'{g:.2f}' if g >= 1 else f'{g:.5f}'


def report(results, args, peak):
    B = args.batch_size
    print(f'matmul peak used below: {peak:.1f} GFLOP/s (best probe)')
    for res in results:
        print(f'\n== {res["label"]}')
        print('parameters (M): ' + ', '.join(
            f'{k} {v:.2f}' for k, v in res['params_m'].items())
              + f', total {sum(res["params_m"].values()):.2f}')
        print(f'optimiser: {res["optimizer"]}')
        if res.get('parts'):
            print(f'{"GFLOPs per image":<30}{"forward":>10}{"fwd+bwd":>10}')
            for name, (fwd, both) in res['parts'].items():
                print(f'  {name:<28}{_gf(fwd / B):>10}{_gf(both / B):>10}')
            fwd = sum(p[0] for p in res['parts'].values())
            both = sum(p[1] for p in res['parts'].values())
            print(f'  {"sum of parts":<28}{_gf(fwd / B):>10}{_gf(both / B):>10}')
        if res.get('part_times_s'):
            print(f'{"time per part (best of 2)":<30}{"s":>10}{"GFLOP/s":>10}'
                  f'{"% of sum":>10}')
            total = sum(res['part_times_s'].values())
            for name, t in res['part_times_s'].items():
                fl = (res.get('parts') or {}).get(name)
                rate = f'{fl[1] / t / 1e9:.1f}' if fl else '-'
                print(f'  {name:<28}{t:>10.3f}{rate:>10}{100 * t / total:>9.1f}%')
            print(f'  {"sum":<28}{total:>10.3f}')
        if 'step_flops' in res:
            sf, sb = res['step_flops']
            print(f'  {"whole step":<28}{_gf(sf / B):>10}{_gf(sb / B):>10}')
        line = (f'step {res["step_s"]:.3f} s (median of '
                f'{", ".join(f"{t:.3f}" for t in res["times_s"])}), '
                f'{res["img_s"]:.2f} img/s')
        if 'achieved_gflops' in res:
            line += (f', {res["achieved_gflops"]:.1f} GFLOP/s achieved = '
                     f'{100 * res["of_peak"]:.0f}% of the matmul peak')
        print(line)
        if 'memory' in res:
            mem = res['memory']
            print(f'peak memory {mem["peak_mib"]:.0f} MiB ({mem["kind"]}'
                  + (f'; {mem["after_build_mib"]:.0f} MiB after building the '
                     f'model, so the steps add {mem["peak_mib"] - mem["after_build_mib"]:.0f}'
                     ' MiB' if 'after_build_mib' in mem else '') + ')')
    if len(results) > 1:
        a = results[0]
        print(f'\nratios vs {a["label"]} (same process, alternating):')
        print(f'{"runner":<34}{"time":>8}{"speed":>8}{"memory":>8}{"FLOPs":>8}')
        for res in results:
            mem = (f'{res["memory"]["peak_mib"] / a["memory"]["peak_mib"]:.2f}x'
                   if 'memory' in res else '-')
            fl = (f'{res["step_flops"][1] / a["step_flops"][1]:.2f}x'
                  if 'step_flops' in res else '-')
            print(f'{res["label"]:<34}{res["step_s"] / a["step_s"]:>7.2f}x'
                  f'{a["step_s"] / res["step_s"]:>7.2f}x{mem:>8}{fl:>8}')
        print(f'time ratio of each alternating pair (runner / {a["label"]}):')
        for res in results[1:]:
            pairs = [t / t0 for t, t0 in zip(res['times_s'], a['times_s'])]
            print(f'  {res["label"]:<32} ' + ', '.join(f'{r:.2f}' for r in pairs)
                  + f' (median {statistics.median(pairs):.2f})')


if __name__ == '__main__':
    main()
