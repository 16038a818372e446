from .rils_vit import QVBiasLinear, RILSViT

__all__ = ['RILSViT', 'QVBiasLinear']
