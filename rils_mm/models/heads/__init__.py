from .rils_head import RILSHead

__all__ = ['RILSHead']
