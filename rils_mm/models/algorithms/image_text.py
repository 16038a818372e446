"""What every image-text pre-trainer here shares: RILS, CLIP, MAE+CLIP, SLIP."""
from typing import Dict, List, Optional, Tuple

import torch
from mmpretrain.models.selfsup import BaseSelfSupervisor
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from ..utils.grad_cache import GradCache, StepContext, active_optim_wrapper, plain_step
from .zero_shot import ZeroShotClassifierMixin, clip_data_preprocessor

Tensors = Dict[str, torch.Tensor]


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

    A step is three parts (:mod:`rils_mm.models.utils.grad_cache`):
    :meth:`embed` (per-sample representations, ``z^I`` and ``z^T``),
    :meth:`batch_losses` (the losses that couple samples, L_contra) and
    :meth:`micro_batch_losses` (the losses of single samples, e.g. L_recon).
    A subclass states what its method adds in these; :meth:`loss` hands
    :meth:`forward_train` the images and the stacked caption tokens, and
    with ``grad_cache`` the step runs in micro-batches that each act as
    one rank, so a few devices compute the paper's global batch exactly.
    ``predict`` is zero-shot classification or retrieval
    (:class:`ZeroShotClassifierMixin`; the ``ZeroShotClassifierHook`` builds
    the classifier before every evaluation).

    Args:
        backbone (dict): V-Enc (``RILSViT``).
        head (dict): the joint-space head (``RILSHead`` or
            ``ImageTextContrastiveHead``).
        text_encoder (dict): L-Enc (``CLIPTextEncoder``).
        neck (dict, optional): V-Dec. Defaults to None.
        grad_cache (dict, optional): ``dict(micro_batch_size=M)``: run each
            per-rank batch of ``K * M`` images as K micro-batches, each one
            virtual rank (:class:`~rils_mm.models.utils.grad_cache.GradCache`).
            Defaults to None: one pass over the batch.
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
                 grad_cache: Optional[dict] = None,
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
        self.grad_cache = None
        if grad_cache is not None:
            if not isinstance(grad_cache, dict) or set(grad_cache) != {'micro_batch_size'}:
                raise ValueError('grad_cache must be None or dict(micro_batch_size=M), got '
                                 f'{grad_cache!r}')
            self.check_grad_cache()
            self.grad_cache = GradCache(**grad_cache)

    def check_grad_cache(self) -> None:
        """Refuse, at build time, what micro-batches cannot compute exactly."""
        loss = self.head.contrastive_loss
        if not loss.local_loss and not loss.gather_with_grad:
            raise ValueError(
                'grad_cache: ImageTextContrastiveLoss(local_loss=False, gather_with_grad='
                'False) gives each rank the gradient of its own slice of the (B_g, B_g) '
                'matrix, which depends on how many ranks share it, so micro-batches cannot '
                'reproduce it; use the official semantics (local_loss=True, '
                'gather_with_grad=False) or an exact one (gather_with_grad=True)')

    # ------------------------------------------------------------ encoders
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised image embeddings ``z^I`` (B, D), Eq. 4."""
        return self.head.embed_image(self.backbone.forward_intact(images)[:, 1:])

    def encode_text(self, text_tokens: torch.Tensor) -> torch.Tensor:
        """Normalised text embeddings ``z^T`` (B, D), Eq. 4."""
        return self.head.embed_text(self.text_encoder(text_tokens))

    # ------------------------------------------------------------ training
    def train_step(self, data, optim_wrapper) -> Dict[str, torch.Tensor]:
        """mmengine's step; ``grad_cache`` back-propagates its earlier
        micro-batches through ``optim_wrapper`` (loss scale, accumulation)."""
        with active_optim_wrapper(optim_wrapper):
            return super().train_step(data, optim_wrapper)

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

    def forward_train(self, images: torch.Tensor, text_tokens: torch.Tensor,
                      **kwargs) -> Dict[str, torch.Tensor]:
        """The method's losses for images (B, 3, H, W) and token ids (B, L)."""
        return self.train_losses(dict(images=images, text_tokens=text_tokens, **kwargs))

    def train_losses(self, batch: Tensors) -> Tensors:
        """The losses of a batch (every value (B, ...)): the three parts of
        the step in a row, or in micro-batches with ``grad_cache``."""
        if self.grad_cache is not None:
            return self.grad_cache(self, batch)
        return plain_step(self, batch)

    # ------------------------------------------------- the step in three parts
    def embed(self, batch: Tensors) -> Tuple[Tensors, Tensors]:
        """Per-sample representations and what :meth:`micro_batch_losses` reuses.

        Returns:
            tuple: ``z^I`` and ``z^T`` (Eq. 4) as ``z_image``, ``z_text``
            (their gradient is what ``grad_cache`` caches), and ``f``
            (B, N, C), the intact-view patch tokens (Eq. 1).
        """
        f = self.backbone.forward_intact(batch['images'])[:, 1:]  # (B, N, C), Eq. 1
        h = self.text_encoder(batch['text_tokens'])  # (B, C_t), Eq. 2
        return dict(z_image=self.head.embed_image(f), z_text=self.head.embed_text(h)), dict(f=f)

    def batch_losses(self, embeds: Tensors,
                     virtual_ranks: int = 1) -> Tuple[Tensors, StepContext]:
        """The losses that couple the samples: ``lambda_1 L_contra`` (Eqs. 5-6).

        Args:
            embeds (dict): :meth:`embed`'s first output for this rank's batch.
            virtual_ranks (int): micro-batches per rank, each acting as one rank.
        """
        losses, _ = self.head.contrastive(embeds['z_image'], embeds['z_text'],
                                          virtual_ranks=virtual_ranks)
        return losses, StepContext()

    def micro_batch_losses(self, batch: Tensors, aux: Tensors, context: StepContext,
                           virtual_ranks: int = 1) -> Tensors:
        """The losses of single samples (none for CLIP); their sum over the
        micro-batches is the rank's loss."""
        return {}

    def forward(self, inputs, data_samples=None, mode: str = 'tensor'):
        """``tensor``: backbone features; ``loss``: the method's losses;
        ``predict``: zero-shot classification (or retrieval embeddings)."""
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        return super().forward(inputs, data_samples, mode)
