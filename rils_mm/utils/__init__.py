from .checkpoint import UnsafeCheckpointError, allow_checkpoint_types, register_checkpoint_safety
from .cpu import cpu_has_native_bf16, cpu_summary

__all__ = [
    'allow_checkpoint_types', 'register_checkpoint_safety', 'UnsafeCheckpointError',
    'cpu_has_native_bf16', 'cpu_summary'
]
