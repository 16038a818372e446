from .rils_decoder import RILSDecoder

__all__ = ['RILSDecoder']
