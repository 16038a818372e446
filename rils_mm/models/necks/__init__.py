from .rils_decoder import RILSDecoder
from .simple_fpn import SimpleFPN

__all__ = ['RILSDecoder', 'SimpleFPN']
