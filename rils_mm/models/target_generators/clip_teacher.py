"""A frozen image tower of this project's CLIP / RILS as a MIM target generator."""
import os.path as osp
from typing import Tuple

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmengine.runner.checkpoint import _load_checkpoint
from mmpretrain.registry import MODELS


@MODELS.register_module()
class CLIPTeacher(BaseModule):
    """The image encoder of a trained CLIP / RILS / MAE+CLIP / SLIP checkpoint
    of this project, frozen, giving MIM targets and attention.

    Used as ``target_generator`` by mmpretrain's ``MILAN`` (semantic-aware
    masking from the attention, CLIP features as targets) and ``EVA``
    (CLIP->MIM of Table 9), in place of mmpretrain's ``CLIPGenerator`` (which
    reads OpenAI / open_clip state dicts; use it for an open_clip file).

    ``forward(images)`` returns

    * ``features`` (B, 1 + N, D): theta of every output token of V-Enc (the
      joint-space features of Eq. 4/7, CLS first), or the raw tokens
      (B, 1 + N, C) with ``use_projection=False``;
    * ``attention`` (B, 1 + N, 1 + N): the last block's attention
      probabilities averaged over heads (row 0: the CLS token's attention).

    The checkpoint is a local file written by this project's ``Runner``
    (``state_dict`` with ``backbone.*`` and ``head.image_projection.weight``)
    or a bare state dict with those keys; nothing is downloaded. The module
    stays in eval mode, has no trainable parameter and is never
    re-initialised by ``init_weights``.

    Args:
        checkpoint (str): path of the teacher checkpoint.
        backbone (dict): the teacher's ``RILSViT`` config (as in its training
            config).
        vision_dims (int): its width C. Defaults to 768.
        embed_dims (int): its joint-space width D. Defaults to 512.
        use_projection (bool): apply theta. Defaults to True.
    """

    def __init__(self,
                 checkpoint: str,
                 backbone: dict,
                 vision_dims: int = 768,
                 embed_dims: int = 512,
                 use_projection: bool = True) -> None:
        super().__init__(init_cfg=None)
        if not osp.isfile(checkpoint):
            raise FileNotFoundError(
                f'CLIPTeacher: checkpoint {checkpoint!r} does not exist; train the teacher '
                '(e.g. configs/clip/...) first and point `checkpoint` at its .pth file')
        self.checkpoint = checkpoint
        self.backbone = MODELS.build(backbone)
        self.use_projection = use_projection
        self.image_projection = nn.Linear(vision_dims, embed_dims, bias=False)
        self._load(checkpoint)
        self.requires_grad_(False)
        self.eval()
        self._is_init = True

    def _load(self, path: str) -> None:
        ckpt = _load_checkpoint(path, map_location='cpu')
        state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
        if not isinstance(state, dict):
            raise ValueError(f'CLIPTeacher: {path!r} holds no state dict')
        state = {k[len('module.'):] if k.startswith('module.') else k: v
                 for k, v in state.items()}
        backbone = {k[len('backbone.'):]: v for k, v in state.items()
                    if k.startswith('backbone.')}
        missing = [] if backbone else ['backbone.*']
        proj = state.get('head.image_projection.weight')
        if self.use_projection and proj is None:
            missing.append('head.image_projection.weight')
        if missing:
            raise KeyError(
                f'CLIPTeacher: {path!r} lacks {missing}; expected a checkpoint of this '
                "project's CLIP / RILS (keys 'backbone.*' and 'head.image_projection.weight')")
        self.backbone.load_state_dict(backbone, strict=True)
        if proj is not None:
            if proj.shape != self.image_projection.weight.shape:
                raise ValueError(
                    f'CLIPTeacher: {path!r} has head.image_projection.weight of shape '
                    f'{tuple(proj.shape)}, expected {tuple(self.image_projection.weight.shape)} '
                    '(embed_dims x vision_dims)')
            self.image_projection.weight.data.copy_(proj)

    def init_weights(self) -> None:
        """Keep the checkpoint's weights."""

    def train(self, mode: bool = True) -> 'CLIPTeacher':
        """Always in eval mode."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(features, attention)`` of the intact images (B, 3, H, W)."""
        vit = self.backbone
        x = vit.patch_embed(images)[0]
        x = torch.cat((vit.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + vit.pos_embed
        x = vit.pre_norm(vit.drop_after_pos(x))
        for layer in vit.layers[:-1]:
            x = layer(x)
        last = vit.layers[-1]
        attention = self._attention(last, x)
        x = last(x)
        if vit.final_norm:
            x = vit.ln1(x)
        if self.use_projection:
            x = self.image_projection(x)
        return x, attention

    @staticmethod
    def _attention(layer, x: torch.Tensor) -> torch.Tensor:
        """softmax(q k^T / sqrt(d)) of ``layer``'s attention, mean over heads."""
        attn = layer.attn
        b, n, _ = x.shape
        qkv = attn.qkv(layer.ln1(x)).reshape(b, n, 3, attn.num_heads, attn.head_dims)
        q, k = qkv[:, :, 0].transpose(1, 2), qkv[:, :, 1].transpose(1, 2)
        scale = getattr(attn, 'scale', attn.head_dims**-0.5)
        return (q @ k.transpose(-2, -1) * scale).softmax(-1).mean(1)
