"""Helpers for tests, benchmarks and demos (like ``mmdet.testing``).

Not imported by ``import rils_mm``: import ``rils_mm.testing`` explicitly.
"""
from ._utils import fake_batch, free_port, shrink_toy_model, tiny_rils_cfg
from .shards import write_tar_shard
from .toy_corpus import generate_toy_corpus
from .toy_runner import ImageToyModel, ToyData, ToyModel

__all__ = ['tiny_rils_cfg', 'fake_batch', 'free_port', 'generate_toy_corpus',
           'shrink_toy_model', 'write_tar_shard', 'ToyData', 'ToyModel',
           'ImageToyModel']
