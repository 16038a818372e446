from .checkpoint import UnsafeCheckpointError, allow_checkpoint_types, register_checkpoint_safety

__all__ = ['allow_checkpoint_types', 'register_checkpoint_safety', 'UnsafeCheckpointError']
