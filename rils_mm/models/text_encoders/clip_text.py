"""CLIP language encoder (L-Enc, Eq. 2)."""
import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS
from open_clip.transformer import QuickGELU, TextTransformer

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
    """

    def __init__(self,
                 context_length: int = 77,
                 vocab_size: int = 49408,
                 width: int = 512,
                 heads: int = 8,
                 layers: int = 12,
                 mlp_ratio: float = 4.0,
                 act_layer: str = 'QuickGELU',
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        if act_layer not in TEXT_ACTIVATIONS:
            raise ValueError(f'CLIPTextEncoder: act_layer must be one of '
                             f'{sorted(TEXT_ACTIVATIONS)}, got {act_layer!r}')
        self.act_layer = act_layer
        self.width = width
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
        """(B, L) token ids -> (B, width) EOT features ``h``."""
        return self.transformer(tokens)
