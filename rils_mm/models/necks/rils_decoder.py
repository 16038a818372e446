"""RILS vision decoder (V-Dec, Eq. 3)."""
from typing import Union

import torch
from mmpretrain.models.necks import MAEPretrainDecoder
from mmpretrain.registry import MODELS

from ..utils.activation_checkpoint import run_blocks


@MODELS.register_module()
class RILSDecoder(MAEPretrainDecoder):
    """Lightweight decoder predicting *features* of every patch (Eq. 3).

    MAE's decoder (learnable [MASK] token, fixed sin-cos positions, Transformer
    blocks, final LayerNorm) with RILS' settings: the same width as the encoder
    and a linear output back to the encoder width, so that the predictions
    ``g`` share the vision projection theta with the encoder features ``f``
    (Eq. 7). The paper uses 1 block (768-d, 12 heads for ViT-B) and ablates
    1/2/4.

    ``forward(x, ids_restore)`` takes the encoder output of the masked view
    (CLS + visible tokens) and returns ``g`` of shape (B, N, embed_dim),
    without the CLS position.

    Args:
        num_patches (int): N. Defaults to 196.
        embed_dim (int): encoder width. Defaults to 768.
        decoder_embed_dim (int, optional): decoder width; defaults to
            ``embed_dim`` (paper).
        decoder_depth (int): blocks. Defaults to 1.
        decoder_num_heads (int): heads. Defaults to 12.
        predict_feature_dim (int, optional): output width; defaults to
            ``embed_dim``.
        with_cp (bool | int | str): activation checkpointing of all (True)
            or of the first ``n`` blocks, or ``'selective'`` (only the
            element-wise ops recomputed, see :func:`run_blocks`). Defaults
            to False.
    """

    def __init__(self,
                 num_patches: int = 196,
                 embed_dim: int = 768,
                 decoder_embed_dim=None,
                 decoder_depth: int = 1,
                 decoder_num_heads: int = 12,
                 mlp_ratio: int = 4,
                 norm_cfg: dict = dict(type='LN', eps=1e-6),
                 predict_feature_dim=None,
                 with_cp: Union[bool, int, str] = False,
                 init_cfg=None) -> None:
        super().__init__(
            num_patches=num_patches,
            embed_dim=embed_dim,
            decoder_embed_dim=decoder_embed_dim or embed_dim,
            decoder_depth=decoder_depth,
            decoder_num_heads=decoder_num_heads,
            mlp_ratio=mlp_ratio,
            norm_cfg=norm_cfg,
            predict_feature_dim=predict_feature_dim or embed_dim,
            init_cfg=init_cfg)
        self.with_cp = with_cp

    def forward(self, x: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """``g`` (B, N, C) from the masked view's tokens ``x`` (CLS +
        visible) and the unshuffling indices: mmpretrain's
        ``MAEPretrainDecoder.forward`` with optional per-block checkpointing."""
        x = self.decoder_embed(x)
        mask_tokens = self.mask_token.expand(
            x.shape[0], ids_restore.shape[1] + 1 - x.shape[1], -1)
        x_ = torch.cat([x[:, 1:, :], mask_tokens], dim=1)
        x_ = torch.gather(
            x_, dim=1, index=ids_restore[..., None].expand(-1, -1, x.shape[2]))
        x = torch.cat([x[:, :1, :], x_], dim=1) + self.decoder_pos_embed
        x = run_blocks(self.decoder_blocks, x, self.with_cp)
        x = self.decoder_pred(self.decoder_norm(x))
        return x[:, 1:, :]  # drop the CLS position
