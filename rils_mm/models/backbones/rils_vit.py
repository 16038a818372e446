"""RILS vision encoder (V-Enc, Eq. 1)."""
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.models.selfsup.mae import MAEViT
from mmpretrain.registry import MODELS


class QVBiasLinear(nn.Linear):
    """The fused qkv projection with a bias on q and v only (no k bias).

    This is the BEiT/official-RILS attention parameterisation. Parameters are
    named ``weight``, ``q_bias`` and ``v_bias`` like the official release.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features, bias=False)
        assert out_features % 3 == 0, 'expects a fused qkv projection'
        dim = out_features // 3
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = torch.cat(
            (self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        return F.linear(x, self.weight, bias)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Also load a plain ``qkv.bias`` (mmpretrain's ``MAEViT``, timm): its
        q and v thirds become ``q_bias`` / ``v_bias``; the k third is dropped,
        which changes nothing since a key bias adds the same value to every
        logit of a query and cancels in the softmax. This lets a MAE
        checkpoint initialise ``RILSViT`` (two-stage baselines)."""
        bias = state_dict.pop(prefix + 'bias', None)
        if bias is not None and prefix + 'q_bias' not in state_dict:
            q, _, v = bias.chunk(3)
            state_dict[prefix + 'q_bias'], state_dict[prefix + 'v_bias'] = q, v
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _loads_pretrained(init_cfg) -> bool:
    cfgs = init_cfg if isinstance(init_cfg, (list, tuple)) else [init_cfg]
    return any(isinstance(c, dict) and c.get('type') == 'Pretrained' for c in cfgs)


@MODELS.register_module()
class RILSViT(MAEViT):
    """Plain ViT encoder of RILS: CLS token, fixed 2-D sin-cos positions,
    q/v bias, LayerNorm eps 1e-6 (paper Sec. 3.1, Eq. 1).

    The one vision encoder of the project: pretraining, and ``mmpretrain.RILSViT``
    in mmpretrain, mmdet and mmseg configs (with
    ``custom_imports=dict(imports=['rils_mm'])``).

    ``forward(x)`` (or ``mask=None``/``False``) is an ordinary mmpretrain
    backbone honouring ``out_type``/``out_indices`` for downstream use.
    ``forward(x, mask=True)`` encodes a randomly masked copy (per-sample
    shuffle, ``mask_ratio``) and returns ``(tokens, mask, ids_restore)`` with
    ``tokens`` = CLS + visible patches. :meth:`forward_intact` returns all
    tokens of the intact image regardless of ``out_type``.

    Args:
        qv_bias (bool): bias on q and v but not k. Defaults to True.
        frozen_stages (int): as mmpretrain's ``VisionTransformer`` (which
            ``MAEViT`` does not pass on): stop the gradient of the patch
            embedding, CLS token and the first ``frozen_stages`` blocks (and
            the final norms when all are frozen), e.g. for linear probing.
            Defaults to -1 (nothing frozen).
        Others: see :class:`mmpretrain.models.MAEViT`.
    """

    def __init__(self, *args, qv_bias: bool = True, frozen_stages: int = -1,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if qv_bias:
            for layer in self.layers:
                qkv = layer.attn.qkv
                layer.attn.qkv = QVBiasLinear(qkv.in_features,
                                              qkv.out_features)
        self.frozen_stages = frozen_stages
        if frozen_stages > 0:
            self._freeze_stages()

    def init_weights(self) -> None:
        """MAE initialisation, unless the weights come from a checkpoint.

        mmpretrain's ``MAEViT.init_weights`` re-initialises the sin-cos
        positions, the patch embedding and the class token *after* a
        ``Pretrained`` ``init_cfg`` was loaded. With such an ``init_cfg`` only
        the loading runs here, so every loaded tensor keeps the checkpoint's
        value.
        """
        if _loads_pretrained(self.init_cfg):
            super(MAEViT, self).init_weights()  # VisionTransformer: load only
        else:
            super().init_weights()

    def random_masking(
        self,
        x: torch.Tensor,
        mask_ratio: float = 0.75,
        noise: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """MAE per-sample random masking; ``noise`` (B, N) may be given for
        reproducibility (smallest values are kept)."""
        B, N, C = x.shape
        len_keep = int(N * (1 - mask_ratio))
        if noise is None:
            noise = torch.rand(B, N, device=x.device)
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :len_keep]
        x_masked = torch.gather(x, 1, ids_keep[..., None].expand(-1, -1, C))
        mask = torch.ones(B, N, device=x.device)
        mask[:, :len_keep] = 0
        mask = torch.gather(mask, 1, ids_restore)
        return x_masked, mask, ids_restore

    def forward(self,
                x: torch.Tensor,
                mask: Optional[bool] = None,
                noise: Optional[torch.Tensor] = None) -> Union[tuple, torch.Tensor]:
        if not mask:
            return super(MAEViT, self).forward(x)
        B = x.shape[0]
        x = self.patch_embed(x)[0] + self.pos_embed[:, 1:, :]
        x, mask, ids_restore = self.random_masking(x, self.mask_ratio, noise)
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(B, -1, -1)
        x = self._run_layers(torch.cat((cls, x), dim=1))
        return x, mask, ids_restore

    def forward_intact(self, x: torch.Tensor) -> torch.Tensor:
        """All tokens (B, 1 + N, C) of the unmasked image, final norm applied."""
        x = self.patch_embed(x)[0]
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat((cls, x), dim=1) + self.pos_embed
        return self._run_layers(x)

    def _run_layers(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop_after_pos(x)
        x = self.pre_norm(x)
        for layer in self.layers:
            x = layer(x)
        return self.ln1(x) if self.final_norm else x
