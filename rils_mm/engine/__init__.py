from .hooks import *  # noqa: F401,F403
from .loops import ResumableEpochBasedTrainLoop, ResumableSampler
from .optim_wrapper import (
                            AutocastOptimWrapper,
                            FiniteStepAmpOptimWrapper,
                            FiniteStepOptimWrapper,
                            NonFiniteStepError,
)
from .optimizers import (
                            BackboneLayerDecayOptimWrapperConstructor,
                            MergedParamGroupsOptimWrapperConstructor,
)
from .resume import RankStateHook, ResumableStream, ResumeParticipant, ResumePosition

__all__ = [
    'AutocastOptimWrapper', 'FiniteStepOptimWrapper', 'FiniteStepAmpOptimWrapper',
    'NonFiniteStepError', 'ResumableEpochBasedTrainLoop', 'ResumableSampler',
    'BackboneLayerDecayOptimWrapperConstructor', 'MergedParamGroupsOptimWrapperConstructor',
    'ResumeParticipant', 'ResumableStream',
    'ResumePosition', 'RankStateHook'
]
