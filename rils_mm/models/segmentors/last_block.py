"""Dense patch features of V-Enc for training-free segmentation, and the
last-block variants the open-vocabulary segmentation literature compares.

Every variant changes only the *last* transformer block of the image encoder;
blocks ``1 .. L-1``, the final LayerNorm and theta are the checkpoint's. For the
last block's input ``x`` (CLS + patch tokens) and ``y = LN_1(x)`` with per-head
``q = y W_q``, ``k = y W_k``, ``v = y W_v`` (scale ``s = d_head^-1/2``):

=============  ==========================================  ========  =====
variant        attention weights ``A``                     residual  FFN
=============  ==========================================  ========  =====
``plain``      ``softmax(s q k^T)`` (the trained block)    yes       yes
``maskclip``   ``I`` (each token keeps its value)          no        no
``sclip``      ``softmax(s q q^T) + softmax(s k k^T)``     yes       yes
``clearclip``  ``softmax(s q q^T)``                        no        no
=============  ==========================================  ========  =====

and the block's output is ``o = W_o (A v)`` (+ ``x`` with the residual; then
``+ FFN(LN_2(.))`` with the FFN).

* MaskCLIP: C. Zhou, C. C. Loy, B. Dai, "Extract Free Dense Labels from
  CLIP", ECCV 2022 -- the value embedding path of the last attention layer
  (query and key discarded), written as identity attention without residual or
  FFN as in ClearCLIP's decomposition (Lan et al. 2024, Sec. 3).
* SCLIP: F. Wang, J. Mei, A. Yuille, "SCLIP: Rethinking Self-Attention for
  Dense Vision-Language Inference", ECCV 2024 -- correlative self-attention,
  the sum of the two softmaxes, residual and FFN kept (their released code).
* ClearCLIP: M. Lan, C. Chen, Y. Ke, X. Wang, L. Feng, W. Zhang, "ClearCLIP:
  Decomposing CLIP Representations for Dense Vision-Language Inference",
  ECCV 2024 -- query-query attention, no residual connection, no FFN.

``residual`` / ``ffn`` can be overridden for ablations (e.g. SCLIP attention
without the residual).
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.models.utils import resize_pos_embed

__all__ = ['LAST_BLOCK_VARIANTS', 'last_block_forward', 'dense_patch_tokens']

#: variant -> (attention, residual, FFN)
LAST_BLOCK_VARIANTS = {
    'plain': ('qk', True, True),
    'maskclip': ('identity', False, False),
    'sclip': ('qq+kk', True, True),
    'clearclip': ('qq', False, False),
}


def _variant(name: str, residual: Optional[bool], ffn: Optional[bool]):
    if name not in LAST_BLOCK_VARIANTS:
        raise KeyError(f'last_block {name!r} is not one of {sorted(LAST_BLOCK_VARIANTS)}')
    attn, res, mlp = LAST_BLOCK_VARIANTS[name]
    return attn, res if residual is None else residual, mlp if ffn is None else ffn


def last_block_forward(layer: nn.Module, x: torch.Tensor, variant: str = 'plain',
                       residual: Optional[bool] = None,
                       ffn: Optional[bool] = None) -> torch.Tensor:
    """One mmpretrain ``TransformerEncoderLayer`` (``ln1``, ``attn`` with a
    fused ``qkv`` and ``proj``, ``ln2``, ``ffn``) applied to ``x`` (B, N, C)
    with the attention / residual / FFN of ``variant`` (module docstring)."""
    kind, residual, ffn = _variant(variant, residual, ffn)
    if kind == 'qk' and residual and ffn:
        return layer(x)  # the trained block, unchanged
    attn = layer.attn
    B, N, C = x.shape
    qkv = attn.qkv(layer.ln1(x)).reshape(B, N, 3, attn.num_heads, attn.head_dims)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, N, d)
    scale = attn.head_dims**-0.5
    if kind == 'identity':
        out = v
    else:
        if kind == 'qk':
            weights = F.softmax(scale * q @ k.transpose(-2, -1), dim=-1)
        elif kind == 'qq':
            weights = F.softmax(scale * q @ q.transpose(-2, -1), dim=-1)
        else:  # 'qq+kk'
            weights = (F.softmax(scale * q @ q.transpose(-2, -1), dim=-1)
                       + F.softmax(scale * k @ k.transpose(-2, -1), dim=-1))
        out = weights @ v
    out = attn.gamma1(attn.proj(out.transpose(1, 2).reshape(B, N, C)))
    if residual:
        out = x + out
    if ffn:
        out = layer.ffn(layer.ln2(out), identity=out)
    return out


def dense_patch_tokens(backbone: nn.Module, images: torch.Tensor, variant: str = 'plain',
                       residual: Optional[bool] = None,
                       ffn: Optional[bool] = None) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """The patch features ``f^k`` (B, h*w, C) of V-Enc (Eq. 1, final norm
    applied) for images of any size, and the grid ``(h, w)``.

    The CLS token is kept in the sequence (as in pre-training); the absolute
    positions are resized (``backbone.interpolate_mode``, bicubic) when the
    grid differs from the pre-training one, so on a ``img_size`` input with
    ``variant='plain'`` this is ``backbone.forward_intact(images)[:, 1:]``.
    """
    if getattr(backbone, 'dense', False):
        raise ValueError('dense_patch_tokens needs the pre-training encoder '
                         '(window_size=0, use_rel_pos=False)')
    x, hw = backbone.patch_embed(images)
    pos = resize_pos_embed(backbone.pos_embed, backbone.patch_resolution, hw,
                           mode=backbone.interpolate_mode, num_extra_tokens=1)
    cls = backbone.cls_token.expand(x.shape[0], -1, -1)
    x = torch.cat((cls, x), dim=1) + pos.to(x.dtype)
    x = backbone.pre_norm(backbone.drop_after_pos(x))
    for layer in backbone.layers[:-1]:
        x = layer(x)
    x = last_block_forward(backbone.layers[-1], x, variant, residual, ffn)
    if backbone.final_norm:
        x = backbone.ln1(x)
    return x[:, 1:], tuple(hw)
