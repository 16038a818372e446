from .checkpoint_hook import AtomicCheckpointHook
from .data_skip_hook import DataSkipCounterHook
from .logit_scale_hook import LogitScaleClampHook
from .nonfinite_step_hook import NonFiniteStepHook
from .rng_state_hook import RNGStateHook
from .webdataset_epoch_hook import WebDatasetEpochHook
from .zero_shot_hook import ZeroShotClassifierHook

__all__ = [
    'AtomicCheckpointHook', 'DataSkipCounterHook', 'LogitScaleClampHook', 'NonFiniteStepHook',
    'RNGStateHook', 'WebDatasetEpochHook', 'ZeroShotClassifierHook'
]
