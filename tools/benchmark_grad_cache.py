"""Peak memory, step time and FLOPs of ``grad_cache`` against one pass (ViT-B/16 RILS).

    python tools/benchmark_grad_cache.py --batch-size 64 --micro-batch-sizes 8 16 32 64

The logic is :mod:`rils_mm.benchmark.grad_cache`.
"""
from project_env import setup_tool

setup_tool(__name__)

from rils_mm.benchmark.grad_cache import main  # noqa: E402

if __name__ == '__main__':
    main()
