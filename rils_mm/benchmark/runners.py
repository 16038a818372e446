"""One training step of a config of this project, whole or part by part.

A runner has ``label``, ``device``, ``images``, ``tokens``, ``optim_desc`` and the methods
``params_m()``, ``loss()``, ``step()``, ``optimizer_step()`` and ``part_fns()``
(:class:`rils_mm.benchmark.official.OfficialRunner` is the other kind).

Arguments come as an ``argparse.Namespace`` of ``tools/benchmark_train.py``'s options
(``device``, ``batch_size``, ``captions``, ``precision``, ``aligned_ratio``,
``plain_adamw``, ``fused_adamw``, ``compile``).
"""
import os.path as osp

from .global_batch import ours_context
from .inputs import synthetic_batch
from .optim import (
    build_config_optim_wrapper,
    describe_optim_wrapper,
    describe_plain_adamw,
    plain_adamw,
    plain_step,
)
from .precision import autocast_dtype

#: the parts of a RILS step, in the order they are reported
PARTS = ('intact view', 'masked view', 'decoder', 'text', 'losses')


def aligned_count(ratio: float, batch_size: int) -> int:
    """``round(ratio * B)``, the number of images counted as ``C``; at least one."""
    k = round(ratio * batch_size)
    if not (0 < ratio <= 1 and k > 0):
        raise ValueError(f'--aligned-ratio must be in (0, 1] and leave at least one '
                         f'of the {batch_size} images, got {ratio}')
    return k


def decodes_aligned_only(model_cfg) -> bool:
    """Whether the model of ``model_cfg`` is a RILS that decodes only ``C``."""
    from mmpretrain.registry import MODELS

    from rils_mm.models.algorithms import RILS
    cls = MODELS.get(model_cfg['type'])
    return (isinstance(cls, type) and issubclass(cls, RILS)
            and model_cfg.get('decode_aligned_only', True))


def loss_sum(losses: dict):
    """What the optimiser steps on: the sum of the entries named ``loss*`` (mmengine)."""
    return sum(v for name, v in losses.items() if 'loss' in name)


class OursRunner:
    """One training step of a config of this project.

    For a RILS model that decodes only ``C`` (``decode_aligned_only``), ``C`` is fixed to
    the first ``round(args.aligned_ratio * B)`` images through the head's
    ``fixed_aligned`` option, set in the config before the model is built: a fresh model
    matches about 1 / B of its images, which would flatter it.
    """

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
        self.decoded = args.batch_size  # images through the masked view + V-Dec
        if decodes_aligned_only(cfg.model):
            self.decoded = aligned_count(args.aligned_ratio, args.batch_size)
            cfg.model.head.fixed_aligned = self.decoded
        self.cfg = cfg
        model = MODELS.build(cfg.model)
        model.init_weights()
        self.model = model.to(self.device).train()
        bb = cfg.model.backbone
        img_size, patch = bb.get('img_size', 224), bb.get('patch_size', 16)
        ctx = cfg.model.text_encoder.get('context_length', 77)
        images, tokens, noise = synthetic_batch(
            args.batch_size, img_size, ctx, (img_size // patch)**2, args.captions)
        self.images = images.to(self.device)
        self.tokens = tokens.to(self.device)
        self.noise = noise.to(self.device)
        self.samples = []
        for t in self.tokens:
            sample = DataSample()
            sample.set_field(t, 'text_tokens', dtype=torch.Tensor)
            self.samples.append(sample)
        self.dtype = autocast_dtype(args.precision)
        self.optim_wrapper = None
        if args.plain_adamw or cfg.get('optim_wrapper') is None:
            plain_adamw(self, self.model.parameters(), args.fused_adamw, args.precision)
            self.optim_desc = describe_plain_adamw(self.optim) + (
                '' if args.plain_adamw else ' (the config has no optim_wrapper)')
        else:
            self.optim_wrapper = build_config_optim_wrapper(
                self.model, cfg.optim_wrapper, args.precision)
            self.optim = self.optim_wrapper.optimizer
            self.optim_desc = describe_optim_wrapper(self.optim_wrapper)
        # --global-batch: the other ranks' embeddings, appended wherever the step gathers
        self.global_batch = ours_context(getattr(args, 'global_batch', None), args.batch_size,
                                         cfg.model.head.get('embed_dims', 512), self.device)
        self.forward = self.model
        if args.compile:
            self.forward = torch.compile(self.model)

    def params_m(self):
        return {name: sum(p.numel() for p in mod.parameters()) / 1e6
                for name, mod in self.model.named_children()
                if name != 'data_preprocessor'}

    def loss(self):
        with self.global_batch():
            return loss_sum(self.forward(self.images, self.samples, mode='loss'))

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
        """{part: fn} for :func:`part_flops` / :func:`part_times`: each fn runs one part's
        forward on detached inputs (called in order): the intact view (Eq. 1), the masked
        view of the decoded images, V-Dec (Eq. 3), L-Enc (Eq. 2) and the head's losses
        (Eqs. 4-9); None for a model that is not an image-text model of this project."""
        m = self.model
        if not (hasattr(m, 'text_encoder')
                and hasattr(getattr(m, 'backbone', None), 'forward_intact')):
            return None
        leaf = lambda t: t.detach().requires_grad_()  # noqa: E731
        cache = {}
        k = self.decoded  # C is fixed to the first k images (RILSHead.fixed_aligned)

        def intact():
            cache['f'] = m.backbone.forward_intact(self.images)[:, 1:]
            return cache['f']

        def masked():
            latent, mask, ids = m.backbone(self.images[:k], mask=True, noise=self.noise[:k])
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
            with self.global_batch():
                out, prototypes, aligned = m.head.contrastive_and_aligned(
                    f, leaf(cache['h']))
                out.update(m.head.recon(f[:k], leaf(cache['g']), prototypes, cache['mask'],
                                        aligned[:k]))
            return loss_sum(out)

        def contrastive_losses():
            with self.global_batch():
                return loss_sum(m.head.loss(leaf(cache['f']), leaf(cache['h'])))

        if getattr(m, 'neck', None) is not None and hasattr(m.head, 'recon'):
            return dict(zip(PARTS, (intact, masked, decoder, text, losses)))
        return {'intact view': intact, 'text': text, 'losses': contrastive_losses}

    def optimizer_step(self):
        """The optimiser part of :meth:`step` (gradients already there)."""
        if self.optim_wrapper is not None:
            self.optim_wrapper.step()
            self.optim_wrapper.zero_grad()
        else:
            self.optim.step()
            self.optim.zero_grad(set_to_none=True)
