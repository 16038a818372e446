from .checkpoint_hook import AtomicCheckpointHook, CheckpointWriteError
from .data_skip_hook import DataSkipCounterHook
from .dataset_epoch_hook import DatasetEpochHook, WebDatasetEpochHook
from .logit_scale_hook import LogitScaleClampHook
from .nonfinite_step_hook import NonFiniteStepHook
from .param_group_layout_hook import ParamGroupLayoutHook
from .preemption_hook import REQUEUE_EXIT_CODE, Preempted, PreemptionHook
from .rng_state_hook import RNGStateHook
from .zero_shot_hook import ZeroShotClassifierHook

__all__ = [
    'AtomicCheckpointHook', 'CheckpointWriteError', 'DatasetEpochHook', 'DataSkipCounterHook',
    'LogitScaleClampHook', 'NonFiniteStepHook', 'ParamGroupLayoutHook', 'Preempted',
    'PreemptionHook', 'REQUEUE_EXIT_CODE', 'RNGStateHook', 'WebDatasetEpochHook',
    'ZeroShotClassifierHook'
]
