"""RILS: masked visual reconstruction in language semantic space (Fig. 1)."""
from typing import Dict, List, Optional, Sequence

import open_clip
import torch
import torch.nn.functional as F
from mmpretrain.models.selfsup import BaseSelfSupervisor
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

#: CLIP's pixel statistics (0-255 scale), used by every RILS data preprocessor.
CLIP_MEAN = [0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255]
CLIP_STD = [0.26862954 * 255, 0.26130258 * 255, 0.27577711 * 255]


@MODELS.register_module()
class RILS(BaseSelfSupervisor):
    """RILS (CVPR 2023): three Transformers trained end to end.

    One step (paper Sec. 3, Fig. 1):

    1. V-Enc encodes the intact image, ``f`` (Eq. 1), and a copy with
       ``mask_ratio`` of its patches randomly removed per sample, ``f^``.
    2. V-Dec (the ``neck``) decodes ``f^`` and [MASK] tokens into ``g``
       (Eq. 3).
    3. L-Enc encodes the caption, ``h`` (Eq. 2).
    4. The ``head`` projects into the joint space (Eqs. 4, 7) and computes
       ``lambda_1 L_contra + lambda_2 L_recon`` (Eqs. 5-6, 8-10).

    Inputs are images plus ``data_samples[i].text_tokens`` (tokenised
    captions, see :class:`TokenizeText`). In ``predict`` mode the model is a
    zero-shot classifier once :meth:`set_zero_shot_classifier` was called (the
    :class:`ZeroShotClassifierHook` does that before every evaluation).

    Args:
        backbone (dict): vision encoder (``RILSViT``).
        neck (dict): vision decoder (``RILSDecoder``).
        head (dict): ``RILSHead``.
        text_encoder (dict): ``CLIPTextEncoder``.
        data_preprocessor (dict, optional): defaults to mmpretrain's
            ``ClsDataPreprocessor`` with CLIP mean/std and BGR->RGB.
    """

    def __init__(self,
                 backbone: dict,
                 neck: dict,
                 head: dict,
                 text_encoder: dict,
                 pretrained: Optional[str] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if data_preprocessor is None:
            data_preprocessor = dict(
                type='ClsDataPreprocessor',
                mean=CLIP_MEAN,
                std=CLIP_STD,
                to_rgb=True)
        super().__init__(
            backbone=backbone,
            neck=neck,
            head=head,
            pretrained=pretrained,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg)
        self.text_encoder = MODELS.build(text_encoder)
        self.register_buffer('zero_shot_weights', None, persistent=False)

    # ------------------------------------------------------------ encoders
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised image embeddings ``z^I`` (B, D), Eq. 4."""
        tokens = self.backbone.forward_intact(images)
        return self.head.embed_image(tokens[:, 1:])

    def encode_text(self, text_tokens: torch.Tensor) -> torch.Tensor:
        """Normalised text embeddings ``z^T`` (B, D), Eq. 4."""
        return self.head.embed_text(self.text_encoder(text_tokens))

    # ------------------------------------------------------------ training
    def loss(self, inputs: torch.Tensor, data_samples: List[DataSample],
             **kwargs) -> Dict[str, torch.Tensor]:
        """Losses of one batch: images ``inputs`` (B, 3, H, W) and captions
        tokenised in ``data_samples[i].text_tokens``."""
        if isinstance(inputs, (list, tuple)):  # SelfSupDataPreprocessor views
            inputs = inputs[0]
        tokens = torch.stack([ds.text_tokens for ds in data_samples])
        return self.forward_train(inputs, tokens, **kwargs)

    def forward_train(
            self,
            images: torch.Tensor,
            text_tokens: torch.Tensor,
            mask_noise: Optional[torch.Tensor] = None
    ) -> Dict[str, torch.Tensor]:
        """Eq. 10 for images (B, 3, H, W) and token ids (B, L).

        ``mask_noise`` (B, N) optionally fixes the random masking (the
        smallest values are kept), e.g. to compare runs exactly.
        """
        f = self.backbone.forward_intact(images)[:, 1:]  # (B, N, C), Eq. 1
        latent, mask, ids_restore = self.backbone(
            images, mask=True, noise=mask_noise)  # Eq. 1, masked view
        g = self.neck(latent, ids_restore)  # (B, N, C), Eq. 3
        h = self.text_encoder(text_tokens)  # (B, C_t), Eq. 2
        return self.head.loss(f, g, h, mask)

    # ------------------------------------------------------------ zero-shot
    @torch.no_grad()
    def set_zero_shot_classifier(self,
                                 classnames: Sequence[str],
                                 templates: Sequence[str],
                                 batch_size: int = 256) -> torch.Tensor:
        """Build the zero-shot classifier: for each class, the normalised mean
        of the normalised embeddings of its prompts ``template.format(name)``
        (CLIP's prompt ensembling). Returns (num_classes, D)."""
        if not classnames or not templates:
            raise ValueError('zero-shot classification needs class names and '
                             f'prompt templates, got {len(classnames or [])} '
                             f'classes and {len(templates or [])} templates')
        was_training = self.training
        self.eval()
        device = self.head.logit_scale.device
        context = self.text_encoder.transformer.context_length
        prompts = [t.format(c) for c in classnames for t in templates]
        embeds = []
        for i in range(0, len(prompts), batch_size):
            tokens = open_clip.tokenize(
                prompts[i:i + batch_size], context_length=context)
            embeds.append(self.encode_text(tokens.to(device)).float())
        embeds = torch.cat(embeds).view(len(classnames), len(templates), -1)
        weights = F.normalize(F.normalize(embeds, dim=-1).mean(1), dim=-1)
        self.zero_shot_weights = weights
        self.train(was_training)
        return weights

    def predict(self, inputs: torch.Tensor,
                data_samples: Optional[List[DataSample]] = None,
                **kwargs) -> List[DataSample]:
        """Zero-shot classification: ``pred_score`` = softmax over classes of
        ``(1 / sigma) <z^I, w_c>``."""
        if self.zero_shot_weights is None:
            raise RuntimeError(
                'RILS.predict needs a zero-shot classifier: call '
                'set_zero_shot_classifier(classnames, templates) or add '
                "dict(type='ZeroShotClassifierHook') to custom_hooks")
        z = self.encode_image(inputs).float()
        logits = self.head.get_logit_scale() * z @ self.zero_shot_weights.t()
        scores = logits.softmax(dim=-1)
        if data_samples is None:
            data_samples = [DataSample() for _ in range(scores.shape[0])]
        for ds, score in zip(data_samples, scores):
            ds.set_pred_score(score).set_pred_label(score.argmax())
        return data_samples

    def forward(self, inputs, data_samples=None, mode: str = 'tensor'):
        """``tensor``: backbone features; ``loss``: Eq. 10; ``predict``:
        zero-shot classification."""
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        return super().forward(inputs, data_samples, mode)
