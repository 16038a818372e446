"""The ``cuda`` marker: a test (or a test's ``cuda`` parameter) that needs a CUDA GPU.

Where none is visible, each is reported as not run with the reason (``-ra`` lists it);
this is the only skip in the suite. ``DEVICES`` parametrizes a test over the CPU (run
everywhere, in the normal suite) and the GPU (run where one is visible).
"""
import os

import pytest
import torch

# Deterministic cuBLAS (exact-resume tests) needs this before the first CUDA call.
os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')

NO_GPU = ('no CUDA GPU visible (torch.cuda.is_available() is False); the cuda tests '
          'run on a GPU machine, e.g. by tools/device_check.sh')

DEVICES = [pytest.param('cpu', id='cpu'),
           pytest.param('cuda', id='cuda', marks=pytest.mark.cuda)]


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason=NO_GPU)
    for item in items:
        if item.get_closest_marker('cuda') is not None:
            item.add_marker(skip)
