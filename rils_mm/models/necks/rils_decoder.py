"""RILS vision decoder (V-Dec, Eq. 3)."""
from mmpretrain.models.necks import MAEPretrainDecoder
from mmpretrain.registry import MODELS


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
