from .encoder_loading import load_encoder_checkpoint
from .rils_vit import QVBiasLinear, RILSViT
from .window_attention import WindowRelPosAttention, decomposed_rel_pos_bias

__all__ = ['RILSViT', 'QVBiasLinear', 'WindowRelPosAttention', 'decomposed_rel_pos_bias',
           'load_encoder_checkpoint']
