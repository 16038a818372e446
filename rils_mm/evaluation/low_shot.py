"""Low-shot classification by logistic regression on frozen features (paper
Table 4): k labelled images per class from the train split, several seeds,
mean +- std of the top-1 accuracy on the whole validation split."""
import time
from typing import Dict, Iterable, Sequence

import numpy as np

__all__ = [
    'sample_k_per_class', 'low_shot_logistic_regression', 'format_mean_std',
    'extract_features', 'run_low_shot'
]


def sample_k_per_class(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Indices of ``k`` samples of every class in ``labels``, drawn without
    replacement with ``np.random.default_rng(seed)``; sorted.

    Raises ``ValueError`` naming the classes that have fewer than ``k``
    samples.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    chosen, short = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < k:
            short.append((int(c), len(idx)))
            continue
        chosen.append(rng.choice(idx, size=k, replace=False))
    if short:
        raise ValueError(f'{len(short)} classes have fewer than {k} train '
                         f'samples (class, count): {short[:10]}')
    return np.sort(np.concatenate(chosen))


def _l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def low_shot_logistic_regression(train_feats: np.ndarray,
                                 train_labels: np.ndarray,
                                 test_feats: np.ndarray,
                                 test_labels: np.ndarray,
                                 shots: Sequence[int] = (1, 2, 5, 10),
                                 seeds: Iterable[int] = (0, 1, 2),
                                 C: float = 1.0,
                                 max_iter: int = 1000,
                                 tol: float = 1e-8,
                                 normalize: bool = True,
                                 logger=None) -> Dict[int, dict]:
    """Fit a multinomial logistic regression (scikit-learn, L-BFGS, L2
    penalty ``1/C``) on ``k`` samples per class for each ``k`` in ``shots``
    and each seed, and score it on all test samples.

    Features are L2-normalised first (``normalize``), the usual treatment of
    frozen ViT features in low-shot probes.

    ``tol`` defaults to 1e-8, not scikit-learn's 1e-4: scikit-learn averages
    the loss over samples, so with 1000 classes the initial gradient is
    already below 1e-4 and L-BFGS stops before its first step (0 iterations,
    chance accuracy; measured on ImageNet-sized synthetic features).

    Returns:
        dict: ``{k: dict(mean=..., std=..., accs=[...], seconds=[...],
        iterations=[...])}`` (L-BFGS iterations per seed)
        with accuracies in percent (std over seeds, ``ddof=0``).
    """
    from sklearn.linear_model import LogisticRegression

    if normalize:
        train_feats = _l2_normalize(train_feats)
        test_feats = _l2_normalize(test_feats)
    train_labels = np.asarray(train_labels)
    test_labels = np.asarray(test_labels)
    seeds = list(seeds)
    if not seeds:
        raise ValueError('low-shot evaluation needs at least one seed')
    results = {}
    for k in shots:
        accs, secs, iters = [], [], []
        for seed in seeds:
            idx = sample_k_per_class(train_labels, k, seed)
            tic = time.perf_counter()
            clf = LogisticRegression(C=C, max_iter=max_iter, tol=tol,
                                     random_state=seed)
            clf.fit(train_feats[idx], train_labels[idx])
            acc = float((clf.predict(test_feats) == test_labels).mean() * 100)
            secs.append(time.perf_counter() - tic)
            iters.append(int(np.max(clf.n_iter_)))
            accs.append(acc)
            if logger is not None:
                logger(f'low-shot k={k} seed={seed}: top-1 {acc:.2f}% '
                       f'({secs[-1]:.1f} s)')
        results[k] = dict(mean=float(np.mean(accs)), std=float(np.std(accs)),
                          accs=accs, seconds=secs, iterations=iters)
    return results


def format_mean_std(result: dict, digits: int = 1) -> str:
    """``'24.0 +- 0.27'`` style cell for the report."""
    return f'{result["mean"]:.{digits}f} ± {result["std"]:.2f}'


def frozen_image_features(model, inputs):
    """Frozen encoder features of preprocessed images: the mean of the final
    patch tokens (the feature RILS pools for ``z^I``, Eq. 4, before the
    projection theta) when the backbone has ``forward_intact``; otherwise the
    backbone's last output, mean-pooled over space if it is a map."""
    import torch
    backbone = model.backbone
    with torch.no_grad():
        if hasattr(backbone, 'forward_intact'):
            return backbone.forward_intact(inputs)[:, 1:].mean(1)
        out = backbone(inputs)
        out = out[-1] if isinstance(out, (list, tuple)) else out
        if isinstance(out, (list, tuple)):
            out = out[0]
        return out.flatten(2).mean(-1) if out.dim() == 4 else out


def extract_features(model, dataset, indices=None, batch_size: int = 64,
                     num_workers: int = 0):
    """``(features (N, C) float32, labels (N,))`` of ``dataset[indices]``
    through ``model.data_preprocessor`` and :func:`frozen_image_features`."""
    import torch
    from mmengine.dataset import pseudo_collate
    from torch.utils.data import DataLoader, Subset
    subset = dataset if indices is None else Subset(dataset, list(indices))
    loader = DataLoader(subset, batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, collate_fn=pseudo_collate)
    feats, labels = [], []
    model.eval()
    for batch in loader:
        data = model.data_preprocessor(batch, False)
        feats.append(frozen_image_features(model, data['inputs']).float())
        labels.extend(int(ds.gt_label) for ds in data['data_samples'])
    return (torch.cat(feats).cpu().numpy().astype(np.float32),
            np.asarray(labels))


def run_low_shot(model_cfg, bench, checkpoint: str,
                 train_root=None, test_root=None, shots=None, seeds=None,
                 C=None, logger=print) -> dict:
    """Low-shot protocol of a benchmark config (``configs/benchmarks/
    low_shot/``) on ``checkpoint`` of the model in ``model_cfg``: encodes
    only the sampled train images and the test split, then fits
    (:func:`low_shot_logistic_regression`). Returns
    ``{k: dict(mean, std, accs, seconds)}``."""
    from mmengine.runner import load_checkpoint
    from mmpretrain.registry import DATASETS, MODELS

    from .benchmark_runner import _fit_pipeline, model_image_size
    model = MODELS.build(model_cfg.model)
    load_checkpoint(model, checkpoint, map_location='cpu', strict=False,
                    logger='current')
    model.eval()
    shots = tuple(shots or bench.shots)
    seeds = tuple(seeds if seeds is not None else bench.seeds)
    size = model_image_size(model_cfg)
    datasets = {}
    for which, root in (('train', train_root), ('test', test_root)):
        cfg = bench[f'{which}_dataset'].copy()
        if root:
            cfg['data_root'] = root
        _fit_pipeline(cfg['pipeline'], size, 77)
        datasets[which] = DATASETS.build(cfg)
    labels = datasets['train'].get_labels()
    per_seed = {(k, s): sample_k_per_class(labels, k, s)
                for k in shots for s in seeds}
    union = np.unique(np.concatenate(list(per_seed.values())))
    tic = time.time()
    train_x, train_y = extract_features(model, datasets['train'], union,
                                        bench.get('batch_size', 64))
    test_x, test_y = extract_features(model, datasets['test'], None,
                                      bench.get('batch_size', 64))
    logger(f'encoded {len(union)} train and {len(test_y)} test images in '
           f'{time.time() - tic:.1f} s')
    # features of the whole train split are only needed at the sampled rows
    full_x = np.zeros((len(labels), train_x.shape[1]), np.float32)
    full_x[union] = train_x
    return low_shot_logistic_regression(
        full_x, labels, test_x, test_y, shots=shots, seeds=seeds,
        C=C if C is not None else bench.get('C', 1.0),
        max_iter=bench.get('max_iter', 1000), logger=logger)
