from .checkpoint_hook import AtomicCheckpointHook
from .data_skip_hook import DataSkipCounterHook
from .dataset_epoch_hook import DatasetEpochHook, WebDatasetEpochHook
from .logit_scale_hook import LogitScaleClampHook
from .nonfinite_step_hook import NonFiniteStepHook
from .rng_state_hook import RNGStateHook
from .zero_shot_hook import ZeroShotClassifierHook

__all__ = [
    'AtomicCheckpointHook', 'DatasetEpochHook', 'DataSkipCounterHook', 'LogitScaleClampHook',
    'NonFiniteStepHook', 'RNGStateHook', 'WebDatasetEpochHook', 'ZeroShotClassifierHook'
]
