"""What every image-text pre-trainer here shares: RILS, CLIP, MAE+CLIP, SLIP."""
from abc import abstractmethod
from typing import Dict, List, Optional

import torch
from mmpretrain.models.selfsup import BaseSelfSupervisor
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from .zero_shot import ZeroShotClassifierMixin, clip_data_preprocessor


class ImageTextPretrainer(ZeroShotClassifierMixin, BaseSelfSupervisor):
    """An mmpretrain self-supervisor with a text tower (paper Sec. 3, Fig. 1).

    The parts every method of the comparison (Fig. 2, Table 1) has:

    * ``backbone``: V-Enc; its intact-view patch tokens are ``f`` (Eq. 1);
    * ``text_encoder``: L-Enc; its pooled caption feature is ``h`` (Eq. 2);
    * ``head``: the projections theta (image) and phi (text) into the joint
      space, ``z^I = theta(mean f)``, ``z^T = phi(h)`` (Eq. 4), the learnable
      temperature sigma (``logit_scale`` = 1 / sigma) and ``lambda_1
      L_contra`` (Eqs. 5-6); RILS' head adds ``lambda_2 L_recon`` with tau1,
      tau2 over the aligned set C and the masked patches M (Eqs. 8-10);
    * ``neck``: V-Dec, where the method has one (``g``, Eq. 3).

    A subclass states what its method adds and implements
    :meth:`forward_train`; :meth:`loss` hands it the images and the stacked
    caption tokens. ``predict`` is zero-shot classification or retrieval
    (:class:`ZeroShotClassifierMixin`; the ``ZeroShotClassifierHook`` builds
    the classifier before every evaluation).

    Args:
        backbone (dict): V-Enc (``RILSViT``).
        head (dict): the joint-space head (``RILSHead`` or
            ``ImageTextContrastiveHead``).
        text_encoder (dict): L-Enc (``CLIPTextEncoder``).
        neck (dict, optional): V-Dec. Defaults to None.
        pretrained (str, optional): a checkpoint to initialise from.
        data_preprocessor (dict, optional): defaults to mmpretrain's
            :attr:`data_preprocessor_type` with CLIP mean/std and BGR->RGB.
        init_cfg (dict, optional): initialisation config.
    """

    #: the default data preprocessor (``SelfSupDataPreprocessor`` where the
    #: method takes several views)
    data_preprocessor_type = 'ClsDataPreprocessor'

    def __init__(self,
                 backbone: dict,
                 head: dict,
                 text_encoder: dict,
                 neck: Optional[dict] = None,
                 pretrained: Optional[str] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if data_preprocessor is None:
            data_preprocessor = clip_data_preprocessor(self.data_preprocessor_type)
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
        return self.head.embed_image(self.backbone.forward_intact(images)[:, 1:])

    def encode_text(self, text_tokens: torch.Tensor) -> torch.Tensor:
        """Normalised text embeddings ``z^T`` (B, D), Eq. 4."""
        return self.head.embed_text(self.text_encoder(text_tokens))

    # ------------------------------------------------------------ training
    def loss(self, inputs: torch.Tensor, data_samples: List[DataSample],
             **kwargs) -> Dict[str, torch.Tensor]:
        """Losses of one batch: images (B, 3, H, W) and captions tokenised in
        ``data_samples[i].text_tokens``."""
        if isinstance(inputs, (list, tuple)):  # SelfSupDataPreprocessor views
            inputs = inputs[0]
        return self.forward_train(inputs, self.text_tokens(data_samples), **kwargs)

    @staticmethod
    def text_tokens(data_samples: List[DataSample]) -> torch.Tensor:
        """The captions' token ids (B, L), from :class:`TokenizeText`."""
        return torch.stack([ds.text_tokens for ds in data_samples])

    @abstractmethod
    def forward_train(self, images: torch.Tensor, text_tokens: torch.Tensor,
                      **kwargs) -> Dict[str, torch.Tensor]:
        """The method's losses for images (B, 3, H, W) and token ids (B, L)."""

    def forward(self, inputs, data_samples=None, mode: str = 'tensor'):
        """``tensor``: backbone features; ``loss``: the method's losses;
        ``predict``: zero-shot classification (or retrieval embeddings)."""
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        return super().forward(inputs, data_samples, mode)
