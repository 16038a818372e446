from .hooks import *  # noqa: F401,F403
from .optim_wrapper import AutocastOptimWrapper

__all__ = ['AutocastOptimWrapper']
