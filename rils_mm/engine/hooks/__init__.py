from .data_skip_hook import DataSkipCounterHook
from .logit_scale_hook import LogitScaleClampHook
from .rng_state_hook import RNGStateHook
from .webdataset_epoch_hook import WebDatasetEpochHook
from .zero_shot_hook import ZeroShotClassifierHook

__all__ = [
    'DataSkipCounterHook', 'LogitScaleClampHook', 'RNGStateHook', 'WebDatasetEpochHook',
    'ZeroShotClassifierHook'
]
