"""The official hustvl/RILS step (kept outside this repository; needs timm), as SLIP's
``main.py`` runs it, for side-by-side measurements with :class:`OursRunner`."""
import math
import os.path as osp
import sys

from .global_batch import official_context
from .inputs import synthetic_batch
from .optim import describe_plain_adamw, plain_adamw, plain_step, slip_adamw
from .precision import autocast_dtype
from .runners import PARTS

_FILES = ('models.py', 'losses.py', 'models_rils.py', 'utils.py', 'pos_embed.py',
          'vision_transformer.py')


def import_official(path: str):
    """The official code's ``models`` and ``losses`` modules from folder ``path``."""
    path = osp.abspath(path)
    for name in _FILES:
        if not osp.isfile(osp.join(path, name)):
            raise FileNotFoundError(
                f'--official {path}: {name} not found; expected the official RILS code '
                f'({", ".join(_FILES)})')
    sys.path.insert(0, path)
    try:
        import losses as official_losses
        import models as official_models
    except ImportError as e:
        raise ImportError(f'--official {path}: importing the official code '
                          f'failed ({e}); it needs timm on PYTHONPATH') from e
    finally:
        sys.path.remove(path)
    return official_models, official_losses


class OfficialRunner:
    """The official hustvl/RILS ``RILS_VITB16`` + ``RILSLoss`` + AdamW step."""

    def __init__(self, path, args):
        import torch
        official_models, official_losses = import_official(path)
        self.label = 'official RILS_VITB16'
        self.device = args.device
        self.model = official_models.RILS_VITB16().to(self.device).train()
        self.criterion = official_losses.RILSLoss()
        self.global_batch = official_context(
            official_losses, getattr(args, 'global_batch', None), args.batch_size,
            self.model.image_projection.shape[1], self.device)
        images, tokens, _ = synthetic_batch(args.batch_size, 224, 77, 196, args.captions)
        self.images, self.tokens = images.to(self.device), tokens.to(self.device)
        self.dtype = autocast_dtype(args.precision)
        self.plain = args.plain_adamw
        if self.plain:
            plain_adamw(self, self.model.parameters(), args.fused_adamw, args.precision)
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
        outputs = self.model(self.images, self.tokens)
        with self.global_batch():
            return self.criterion(outputs)['loss']

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
        self.clamp_logit_scale()

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
            with self.global_batch():
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
