"""Zero-shot classification metric with each benchmark's usual score."""
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.evaluator import BaseMetric
from mmpretrain.registry import METRICS

__all__ = ['ZeroShotAccuracy', 'top_k_accuracy', 'mean_per_class_accuracy']


def top_k_accuracy(scores: torch.Tensor, labels: torch.Tensor,
                   k: int = 1) -> float:
    """Percentage of samples whose label is among the ``k`` highest scores.

    Ties are broken by ``torch.topk`` (lowest index first on CPU).
    """
    k = min(k, scores.shape[1])
    topk = scores.topk(k, dim=1).indices
    return (topk == labels[:, None]).any(dim=1).float().mean().item() * 100


def mean_per_class_accuracy(pred: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over the classes present in ``labels`` of the per-class recall
    (the fraction of a class's samples predicted as that class), in percent.

    This is SLIP's / clip-benchmark's ``mean_per_class_recall`` (scikit-learn's
    ``balanced_accuracy_score``).
    """
    recalls = [(pred[labels == c] == c).float().mean()
               for c in labels.unique()]
    return torch.stack(recalls).mean().item() * 100


@METRICS.register_module()
class ZeroShotAccuracy(BaseMetric):
    """Zero-shot classification accuracy (paper Table 6, 8).

    Computes top-1, top-5 (when there are at least 5 classes) and mean
    per-class accuracy from ``pred_score`` and ``gt_label`` of the data
    samples, and reports the data set's usual metric once more as ``score``:
    mean per-class accuracy for FGVC-Aircraft, Oxford-IIIT Pets, Caltech-101
    and Flowers-102, top-1 elsewhere (the protocol of CLIP and SLIP).

    Args:
        main_metric (str): ``'top1'`` or ``'mean_per_class'``: what ``score``
            repeats. Defaults to ``'top1'``.
        collect_device (str): Defaults to 'cpu'.
        prefix (str, optional): Defaults to ``'zero-shot'``.
    """
    default_prefix = 'zero-shot'
    MAIN_METRICS = ('top1', 'mean_per_class')

    def __init__(self,
                 main_metric: str = 'top1',
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if main_metric not in self.MAIN_METRICS:
            raise ValueError(f'ZeroShotAccuracy: main_metric must be one of '
                             f'{self.MAIN_METRICS}, got {main_metric!r}')
        self.main_metric = main_metric

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for ds in data_samples:
            if 'pred_score' not in ds or 'gt_label' not in ds:
                raise KeyError('ZeroShotAccuracy needs pred_score and '
                               f'gt_label in each data sample, got keys '
                               f'{sorted(ds)}')
            self.results.append(
                dict(score=ds['pred_score'].cpu().float(),
                     label=ds['gt_label'].cpu().view(-1)[0].long()))

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        scores = torch.stack([r['score'] for r in results])
        labels = torch.stack([r['label'] for r in results])
        metrics = dict(top1=top_k_accuracy(scores, labels, 1))
        if scores.shape[1] >= 5:
            metrics['top5'] = top_k_accuracy(scores, labels, 5)
        metrics['mean_per_class'] = mean_per_class_accuracy(
            scores.argmax(dim=1), labels)
        metrics['score'] = metrics[self.main_metric]
        return metrics
