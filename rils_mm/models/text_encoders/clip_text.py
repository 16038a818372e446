"""CLIP language encoder (L-Enc, Eq. 2)."""
from typing import Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS
from open_clip.transformer import QuickGELU, TextTransformer

from ..utils.activation_checkpoint import run_blocks

#: ``act_layer`` names -> activation classes of the text Transformer's MLP.
TEXT_ACTIVATIONS = {'QuickGELU': QuickGELU, 'GELU': nn.GELU}


@MODELS.register_module()
class CLIPTextEncoder(BaseModule):
    """CLIP text Transformer: causal self-attention, learned positions,
    feature of the end-of-text token (Eq. 2).

    A thin registry wrapper around open_clip's ``TextTransformer`` (so that
    weights keep open_clip's names and initialisation) without its projection:
    the projection phi lives in :class:`RILSHead`. Captions are tokenised in the
    data pipeline with open_clip's BPE tokenizer (vocabulary 49408, context 77).

    Args:
        context_length (int): Defaults to 77.
        vocab_size (int): Defaults to 49408.
        width (int): Defaults to 512.
        heads (int): Defaults to 8.
        layers (int): Defaults to 12.
        mlp_ratio (float): Defaults to 4.0.
        act_layer (str): activation of the MLPs: ``'QuickGELU'``
            (``x * sigmoid(1.702 x)``, as in CLIP, SLIP and the official RILS
            text tower, and open_clip's ``*-quickgelu`` models) or ``'GELU'``
            (open_clip's default for its newer models). Defaults to
            'QuickGELU'.
        truncate_to_longest (bool): run each batch only up to its longest
            caption (exact, see :meth:`forward`). Defaults to True.
        with_cp (bool | int | str): activation checkpointing of all (True)
            or of the first ``n`` blocks, or ``'selective'`` (only the
            element-wise ops recomputed, see :func:`run_blocks`). Defaults
            to False.
    """

    def __init__(self,
                 context_length: int = 77,
                 vocab_size: int = 49408,
                 width: int = 512,
                 heads: int = 8,
                 layers: int = 12,
                 mlp_ratio: float = 4.0,
                 act_layer: str = 'QuickGELU',
                 truncate_to_longest: bool = True,
                 with_cp: Union[bool, int, str] = False,
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        if act_layer not in TEXT_ACTIVATIONS:
            raise ValueError(f'CLIPTextEncoder: act_layer must be one of '
                             f'{sorted(TEXT_ACTIVATIONS)}, got {act_layer!r}')
        self.act_layer = act_layer
        self.width = width
        self.truncate_to_longest = truncate_to_longest
        self.with_cp = with_cp
        self.transformer = TextTransformer(
            context_length=context_length,
            vocab_size=vocab_size,
            width=width,
            heads=heads,
            layers=layers,
            mlp_ratio=mlp_ratio,
            output_dim=None,
            pool_type='argmax',
            act_layer=TEXT_ACTIVATIONS[act_layer])

    @property
    def context_length(self) -> int:
        """Token positions the encoder takes (77 for CLIP)."""
        return self.transformer.context_length

    def init_weights(self) -> None:
        """Keep open_clip's CLIP initialisation (done at construction)."""
        if self.init_cfg is not None:
            super().init_weights()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L) token ids -> (B, width) EOT features ``h``.

        The causal mask makes every position depend only on the positions
        before it, and ``h`` is read at the end-of-text token (the arg-max
        id), so the padding after the last EOT of the batch never reaches
        ``h``: with ``truncate_to_longest`` the batch is cut to its longest
        caption (identical outputs and gradients, fewer FLOPs on short
        captions). Attention runs through ``scaled_dot_product_attention``
        with ``is_causal=True`` (no materialised mask).
        """
        t = self.transformer
        if tokens.dim() != 2:
            raise ValueError('CLIPTextEncoder expects token ids of shape '
                             f'(B, L), got {tuple(tokens.shape)}')
        if tokens.shape[1] > t.num_pos:
            raise ValueError(f'captions have {tokens.shape[1]} tokens, more '
                             f'than context_length={t.num_pos}')
        eot = tokens.argmax(dim=-1)
        if self.truncate_to_longest and tokens.shape[0] > 0:
            tokens = tokens[:, :int(eot.max()) + 1]
        x = t.token_embedding(tokens) + t.positional_embedding[:tokens.shape[1]]
        x = run_blocks(t.transformer.resblocks, x, self.with_cp,
                       fn=_causal_block)
        x = t.ln_final(x)
        return x[torch.arange(x.shape[0], device=x.device), eot]


def _causal_block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """open_clip's ``ResidualAttentionBlock`` (batch first) with its
    ``nn.MultiheadAttention`` weights, computed by
    ``scaled_dot_product_attention(is_causal=True)``."""
    attn = block.attn
    B, L, C = x.shape
    H = attn.num_heads
    qkv = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)
    q, k, v = qkv.view(B, L, 3, H, C // H).permute(2, 0, 3, 1, 4)
    y = F.scaled_dot_product_attention(
        q, k, v, dropout_p=attn.dropout if block.training else 0.,
        is_causal=True)
    y = attn.out_proj(y.transpose(1, 2).reshape(B, L, C))
    x = x + block.ls_1(y)
    return x + block.ls_2(block.mlp(block.ln_2(x)))
