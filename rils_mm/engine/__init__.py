from .hooks import *  # noqa: F401,F403
from .optim_wrapper import AutocastOptimWrapper
from .optimizers import BackboneLayerDecayOptimWrapperConstructor

__all__ = ['AutocastOptimWrapper', 'BackboneLayerDecayOptimWrapperConstructor']
