"""Downstream evaluation: metrics (mmpretrain ``METRICS``), benchmark metadata,
the benchmark runner, low-shot logistic regression and the clip-benchmark
adapter."""
from .benchmark_meta import (
                             OOD_DATASETS,
                             TABLE6_DATASETS,
                             imagenet_subset_wnids,
                             imagenet_wnids,
                             load_classnames,
                             load_templates,
)
from .benchmark_runner import merge_benchmark_cfg, run_benchmark
from .low_shot import low_shot_logistic_regression, sample_k_per_class
from .metrics import (
                             ImageTextRetrievalRecall,
                             ZeroShotAccuracy,
                             image_text_recall_at_k,
                             mean_per_class_accuracy,
                             top_k_accuracy,
)

__all__ = [
    'ZeroShotAccuracy', 'ImageTextRetrievalRecall', 'image_text_recall_at_k',
    'mean_per_class_accuracy', 'top_k_accuracy', 'TABLE6_DATASETS', 'OOD_DATASETS',
    'load_classnames', 'load_templates', 'imagenet_wnids', 'imagenet_subset_wnids',
    'merge_benchmark_cfg', 'run_benchmark', 'low_shot_logistic_regression',
    'sample_k_per_class'
]
