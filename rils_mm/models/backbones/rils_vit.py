"""RILS vision encoder (V-Enc, Eq. 1)."""
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.models.selfsup.mae import MAEViT
from mmpretrain.models.utils import resize_pos_embed
from mmpretrain.registry import MODELS

from ..utils.activation_checkpoint import run_blocks
from .encoder_loading import load_encoder_checkpoint
from .window_attention import WindowRelPosAttention


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


def _pretrained_cfg(init_cfg) -> Optional[dict]:
    cfgs = init_cfg if isinstance(init_cfg, (list, tuple)) else [init_cfg]
    found = [c for c in cfgs if isinstance(c, dict) and c.get('type') == 'Pretrained']
    return found[0] if found else None


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

    As a dense backbone (ViTDet, Li et al. 2022; mmdet / mmseg configs) it
    takes ``window_size`` (attention inside non-overlapping windows of the
    token grid, except in the ``global_attn_indexes`` blocks) and
    ``use_rel_pos`` (decomposed relative position bias, see
    :class:`WindowRelPosAttention`). Either one makes the forward *dense*: no
    CLS token (it stays a frozen parameter, so checkpoints load unchanged), the
    absolute positions interpolated to the input's grid and trained, and
    ``out_type`` ``'featmap'`` / ``'raw'`` / ``'avg_featmap'`` of the patch
    tokens. ``drop_path_rate`` (stochastic depth, linear in depth) is
    mmpretrain's. A ``Pretrained`` ``init_cfg`` loads the encoder of a RILS
    checkpoint (:func:`load_encoder_checkpoint`) with a printed report.

    Args:
        qv_bias (bool): bias on q and v but not k. Defaults to True.
        with_cp (bool | int | str): activation checkpointing in the
            pretraining views (:meth:`forward_intact`, ``forward(x,
            mask=True)``) of all (True) or of the first ``n`` blocks
            (identical gradients, less memory, ~1/3 more encoder FLOPs), or
            ``'selective'``: every block keeps its matmul / attention outputs
            and recomputes only the element-wise ops (identical gradients, no
            extra FLOPs, less memory saved; see :func:`run_blocks`).
            Defaults to False.
        window_size (int): window side in tokens; 0 (default) = global
            attention everywhere.
        global_attn_indexes (Sequence[int]): blocks that keep global attention
            when ``window_size > 0`` (ViTDet ViT-B: 2, 5, 8, 11).
        use_rel_pos (bool): decomposed relative position bias in every block.
            Defaults to False.
        frozen_stages (int): as mmpretrain's ``VisionTransformer`` (which
            ``MAEViT`` does not pass on): stop the gradient of the patch
            embedding, CLS token and the first ``frozen_stages`` blocks (and
            the final norms when all are frozen), e.g. for linear probing.
            Defaults to -1 (nothing frozen).
        Others: see :class:`mmpretrain.models.MAEViT`.
    """

    def __init__(self,
                 *args,
                 qv_bias: bool = True,
                 with_cp: Union[bool, int, str] = False,
                 window_size: int = 0,
                 global_attn_indexes: Sequence[int] = (),
                 use_rel_pos: bool = False,
                 frozen_stages: int = -1,
                 **kwargs) -> None:
        if isinstance(kwargs.get('out_indices'), tuple):  # mmpretrain edits it in place
            kwargs['out_indices'] = list(kwargs['out_indices'])
        super().__init__(*args, **kwargs)
        self.with_cp = with_cp
        self.window_size = window_size
        self.global_attn_indexes = tuple(
            i % self.num_layers for i in global_attn_indexes)
        self.use_rel_pos = use_rel_pos
        self.dense = window_size > 0 or use_rel_pos
        if self.dense:
            self._build_dense_attention(global_attn_indexes)
        if qv_bias:
            for layer in self.layers:
                qkv = layer.attn.qkv
                layer.attn.qkv = QVBiasLinear(qkv.in_features,
                                              qkv.out_features)
        self.frozen_stages = frozen_stages
        if frozen_stages > 0:
            self._freeze_stages()

    def _build_dense_attention(self, global_attn_indexes: Sequence[int]) -> None:
        for i in global_attn_indexes:
            if not -self.num_layers <= i < self.num_layers:
                raise ValueError(f'RILSViT: global_attn_indexes entry {i} is not a block '
                                 f'index of a {self.num_layers}-block ViT')
        if self.window_size < 0:
            raise ValueError(f'RILSViT: window_size must be >= 0, got {self.window_size}')
        if self.out_type == 'cls_token':
            raise ValueError("RILSViT: out_type='cls_token' needs the CLS token, which the "
                             'dense (windowed / relative-position) forward does not use')
        for i, layer in enumerate(self.layers):
            old = layer.attn
            window = 0 if i in self.global_attn_indexes else self.window_size
            new = WindowRelPosAttention(
                self.embed_dims, old.num_heads, window_size=window,
                use_rel_pos=self.use_rel_pos,
                rel_pos_size=(window, window) if window else self.patch_resolution,
                attn_drop=old.attn_drop, qkv_bias=old.qkv.bias is not None)
            new.proj_drop, new.out_drop, new.gamma1 = old.proj_drop, old.out_drop, old.gamma1
            layer.attn = new
        # fine-tuning learns the absolute positions (ViTDet, MAE fine-tuning);
        # the CLS token is kept (frozen) only so that checkpoints load unchanged
        self.pos_embed.requires_grad = True
        self.cls_token.requires_grad = False

    def init_weights(self) -> None:
        """MAE initialisation, then the encoder of a ``Pretrained`` checkpoint.

        mmpretrain's ``MAEViT.init_weights`` re-initialises the sin-cos
        positions, the patch embedding and the class token *after* a
        ``Pretrained`` ``init_cfg`` was loaded. Here the MAE initialisation runs
        first (it is what the tensors the checkpoint does not have keep) and
        :func:`load_encoder_checkpoint` last, so every loaded tensor keeps the
        checkpoint's value. ``init_cfg=dict(type='Pretrained', checkpoint=...,
        prefix='backbone.')`` as usual in OpenMMLab configs.
        """
        pretrained = _pretrained_cfg(self.init_cfg)
        if pretrained is None:
            super().init_weights()
            return
        init_cfg, self.init_cfg = self.init_cfg, None
        try:
            super().init_weights()
        finally:
            self.init_cfg = init_cfg
        load_encoder_checkpoint(self, pretrained['checkpoint'],
                                prefix=pretrained.get('prefix', 'backbone.'),
                                map_location=pretrained.get('map_location', 'cpu'))

    @property
    def num_masked(self) -> int:
        """``|M|``: the patches :meth:`random_masking` masks in every image."""
        return self.num_patches - int(self.num_patches * (1 - self.mask_ratio))

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
        if self.dense:
            if mask:
                self._refuse_pretraining_view()
            return self.forward_dense(x)
        if not mask:
            return super(MAEViT, self).forward(x)
        B = x.shape[0]
        x = self.patch_embed(x)[0] + self.pos_embed[:, 1:, :]
        x, mask, ids_restore = self.random_masking(x, self.mask_ratio, noise)
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(B, -1, -1)
        x = self._run_layers(torch.cat((cls, x), dim=1))
        return x, mask, ids_restore

    def forward_dense(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """The ViTDet forward: patch tokens only, absolute positions resized to
        the input's grid, windowed / global blocks; one output per
        ``out_indices`` entry (``featmap``: ``(B, C, H/p, W/p)``)."""
        x, hw = self.patch_embed(x)
        pos = resize_pos_embed(self.pos_embed, self.patch_resolution, hw,
                               mode=self.interpolate_mode,
                               num_extra_tokens=self.num_extra_tokens)
        x = self.drop_after_pos(x + pos[:, self.num_extra_tokens:])
        x = self.pre_norm(x)
        outs = []
        for i, layer in enumerate(self.layers):
            x = x + layer.attn(layer.ln1(x), hw)
            x = layer.ffn(layer.ln2(x), identity=x)
            if i == len(self.layers) - 1 and self.final_norm:
                x = self.ln1(x)
            if i in self.out_indices:
                if self.out_type == 'featmap':
                    outs.append(x.reshape(x.shape[0], *hw, -1).permute(0, 3, 1, 2))
                elif self.out_type == 'avg_featmap':
                    outs.append(self.ln2(x.mean(dim=1)))
                else:  # 'raw': the patch tokens
                    outs.append(x)
        return tuple(outs)

    def _refuse_pretraining_view(self):
        raise ValueError(
            'RILSViT: the pre-training views (masked / intact with CLS) are not defined '
            'with window attention or relative position bias; build the pre-training '
            'encoder with window_size=0 and use_rel_pos=False')

    def forward_intact(self, x: torch.Tensor) -> torch.Tensor:
        """All tokens (B, 1 + N, C) of the unmasked image, final norm applied."""
        if self.dense:
            self._refuse_pretraining_view()
        x = self.patch_embed(x)[0]
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat((cls, x), dim=1) + self.pos_embed
        return self._run_layers(x)

    def _run_layers(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop_after_pos(x)
        x = self.pre_norm(x)
        x = run_blocks(self.layers, x, self.with_cp)
        return self.ln1(x) if self.final_norm else x
