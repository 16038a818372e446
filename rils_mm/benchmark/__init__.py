"""Measurement code: what ``tools/benchmark_*.py``, ``tools/compare_methods.py``,
``tools/analysis/*_memory.py`` and ``tools/device_check.sh`` call.

* :mod:`.precision`: ``fp32`` / ``bf16`` / ``fp16`` -> the optimiser wrapper (also used by
  ``tools/train.py --amp``) and the autocast dtype;
* :mod:`.memory`: peak memory, measured one way (``VmHWM`` on CPU, ``max_memory_allocated``
  on CUDA) in a fresh process;
* :mod:`.flops`: FLOP counting (CPU flash attention included) and a matmul peak;
* :mod:`.inputs`: synthetic batches with LAION-like caption lengths;
* :mod:`.runners` / :mod:`.official`: one training step of a config / of the official code;
* :mod:`.train_step`: timing, parts and memory of runners; :mod:`.report`: the printout;
* :mod:`.compare`: same-budget training of toy configs and their table;
* :mod:`.device`: the GPU device check's benchmark;
* :mod:`.grad_cache`: peak memory, step time and FLOPs of ``grad_cache``;
* :mod:`.stream_memory`: the WebDataset reader's resident memory over a long stream;
* :mod:`.metadata_rss`: reading a large parquet metadata table in bounded memory.

Not imported by ``import rils_mm``: import the submodules explicitly.
"""
