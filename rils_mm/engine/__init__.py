from .hooks import *  # noqa: F401,F403
from .optim_wrapper import (
                            AutocastOptimWrapper,
                            FiniteStepAmpOptimWrapper,
                            FiniteStepOptimWrapper,
                            NonFiniteStepError,
)
from .optimizers import BackboneLayerDecayOptimWrapperConstructor

__all__ = [
    'AutocastOptimWrapper', 'FiniteStepOptimWrapper', 'FiniteStepAmpOptimWrapper',
    'NonFiniteStepError', 'BackboneLayerDecayOptimWrapperConstructor'
]
