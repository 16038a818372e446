from .logit_scale_hook import LogitScaleClampHook
from .rng_state_hook import RNGStateHook
from .zero_shot_hook import ZeroShotClassifierHook

__all__ = ['LogitScaleClampHook', 'RNGStateHook', 'ZeroShotClassifierHook']
