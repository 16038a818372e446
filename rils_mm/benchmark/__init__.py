"""Measurement code the benchmark tools share (``tools/benchmark_*.py``, ``tools/device_check.sh``).

* :mod:`.device`: the GPU device check's benchmark;
* :mod:`.grad_cache`: peak memory, step time and FLOPs of ``grad_cache``;
* :mod:`.stream_memory`: the WebDataset reader's resident memory over a long stream;
* :mod:`.metadata_rss`: reading a large parquet metadata table in bounded memory.
"""
