"""Measurement code the benchmark tools share (``tools/benchmark_*.py``, ``tools/device_check.sh``).

:mod:`.device` is the GPU device check's benchmark.
"""
