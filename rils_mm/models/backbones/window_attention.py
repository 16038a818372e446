"""Window attention with decomposed relative position bias (ViTDet).

Used by :class:`~rils_mm.models.backbones.RILSViT` when it serves as a dense
backbone (Li et al., "Exploring Plain Vision Transformer Backbones for Object
Detection", ECCV 2022, Sec. 3): most blocks attend inside non-overlapping
``window_size x window_size`` windows of the token grid, a few global blocks
attend over the whole grid, and every block adds the decomposed relative
position bias of MViTv2 (Li et al., CVPR 2022, Eq. 4):

    A = softmax(q k^T * s + B),  B[(i, j), (i', j')] = q_(i,j) . (R^h_(i-i') + R^w_(j-j'))

The partition / bias helpers are mmpretrain's (``mmpretrain.models.backbones.vit_sam``).
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.models.backbones.vit_sam import get_rel_pos, window_partition, window_unpartition
from mmpretrain.models.utils import MultiheadAttention


def decomposed_rel_pos_bias(q: torch.Tensor, rel_pos_h: torch.Tensor,
                            rel_pos_w: torch.Tensor,
                            hw: Tuple[int, int]) -> torch.Tensor:
    """The additive attention bias ``B`` of MViTv2 Eq. 4 for a token grid.

    Args:
        q (Tensor): queries ``(B, heads, H*W, C)`` (unscaled).
        rel_pos_h, rel_pos_w (Tensor): tables ``(2*L-1, C)``; resized linearly
            by :func:`get_rel_pos` when ``L`` differs from ``H`` / ``W``.
        hw (tuple): the grid ``(H, W)``.

    Returns:
        Tensor: ``(B, heads, H*W, H*W)``.
    """
    h, w = hw
    Rh = get_rel_pos(h, h, rel_pos_h)  # (h, h, C): R^h_(i - i')
    Rw = get_rel_pos(w, w, rel_pos_w)
    B, n, _, C = q.shape
    r_q = q.reshape(B, n, h, w, C)
    rel_h = torch.einsum('bnhwc,hkc->bnhwk', r_q, Rh)
    rel_w = torch.einsum('bnhwc,wkc->bnhwk', r_q, Rw)
    bias = rel_h[..., :, None] + rel_w[..., None, :]  # (B, n, h, w, h, w)
    return bias.reshape(B, n, h * w, h * w)


class WindowRelPosAttention(MultiheadAttention):
    """mmpretrain's multi-head self-attention over a ``(H, W)`` token grid,
    windowed and with decomposed relative position bias.

    Parameter names (``qkv``, ``proj``) are those of
    :class:`mmpretrain.models.utils.MultiheadAttention`, so a pre-training
    checkpoint loads unchanged; ``rel_pos_h`` / ``rel_pos_w`` are new
    (zero-initialised, as in ViTDet).

    Args:
        embed_dims (int): channels.
        num_heads (int): heads.
        window_size (int): window side in tokens; 0 means global attention.
        use_rel_pos (bool): add the decomposed relative position bias.
        rel_pos_size (tuple[int, int], optional): grid the tables are sized
            for (the window, or the full grid of a global block at the
            training resolution). Required with ``use_rel_pos``.
        **kwargs: see :class:`mmpretrain.models.utils.MultiheadAttention`.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 window_size: int = 0,
                 use_rel_pos: bool = False,
                 rel_pos_size: Optional[Tuple[int, int]] = None,
                 **kwargs) -> None:
        super().__init__(embed_dims, num_heads, **kwargs)
        if window_size < 0:
            raise ValueError(f'window_size must be >= 0, got {window_size}')
        self.window_size = window_size
        self.use_rel_pos = use_rel_pos
        if use_rel_pos:
            if rel_pos_size is None:
                raise ValueError('use_rel_pos=True needs rel_pos_size (H, W)')
            self.rel_pos_h = nn.Parameter(
                torch.zeros(2 * rel_pos_size[0] - 1, self.head_dims))
            self.rel_pos_w = nn.Parameter(
                torch.zeros(2 * rel_pos_size[1] - 1, self.head_dims))

    def forward(self, x: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
        """x: ``(B, H*W, C)`` patch tokens of an ``hw`` grid (no CLS token)."""
        B, N, C = x.shape
        H, W = hw
        if N != H * W:
            raise ValueError(f'{type(self).__name__}: got {N} tokens for a '
                             f'{H}x{W} grid (a CLS token cannot be windowed)')
        x = x.view(B, H, W, C)
        if self.window_size > 0:
            # zero-pads the grid to a multiple of the window (ViTDet)
            x, pad_hw = window_partition(x, self.window_size)
        b, h, w, _ = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads,
                                  self.head_dims).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (b, heads, h*w, head_dims)
        bias = None
        if self.use_rel_pos:
            bias = decomposed_rel_pos_bias(q, self.rel_pos_h, self.rel_pos_w,
                                           (h, w)).to(q.dtype)
        attn_drop = self.attn_drop if self.training else 0.
        x = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, dropout_p=attn_drop)
        x = x.transpose(1, 2).reshape(b, h, w, C)
        if self.window_size > 0:
            x = window_unpartition(x, self.window_size, pad_hw, (H, W))
        x = self.proj(x.reshape(B, N, C))
        return self.out_drop(self.gamma1(self.proj_drop(x)))
