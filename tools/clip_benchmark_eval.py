"""clip-benchmark's own command line, with our checkpoints as ``--model_type rils_mm``.

    python tools/clip_benchmark_eval.py eval --model_type rils_mm \
        --model configs/rils/rils_vitb16_l20m.py --pretrained rils.pth \
        --dataset wds/cifar10 --dataset_root data/wds_cifar10 --task zeroshot_classification

Every argument is clip-benchmark's (``clip_benchmark eval --help``); ``--model`` is our config
file and ``--pretrained`` the checkpoint. The numpy-2 fix of clip-benchmark 1.6.2's
``accuracy`` is applied (see rils_mm/evaluation/clip_benchmark_adapter.py).
"""
import sys

from project_env import setup_tool

setup_tool(__name__)

import rils_mm  # noqa: E402,F401
from rils_mm.evaluation.clip_benchmark_adapter import register_with_clip_benchmark  # noqa: E402


def main(argv=None):
    register_with_clip_benchmark()
    from clip_benchmark.cli import main as cli_main
    if argv is not None:
        sys.argv = ['clip_benchmark'] + list(argv)
    return cli_main()


if __name__ == '__main__':
    main()
