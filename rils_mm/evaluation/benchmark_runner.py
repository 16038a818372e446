"""Run a downstream benchmark config (``configs/benchmarks/``) on a model.

A benchmark config holds only the evaluation data, pipeline and metric
(``test_dataloader``, ``test_evaluator``, ``benchmark_type``); the model comes
from the pretraining config of the checkpoint, so one benchmark config serves
every method of the project (RILS, CLIP, MAE+CLIP, SLIP, ...).
"""
import copy
from typing import Optional

from mmengine.config import Config

__all__ = ['merge_benchmark_cfg', 'run_benchmark', 'model_image_size',
           'model_context_length']

BENCHMARK_TYPES = ('zero_shot', 'retrieval')


def model_image_size(cfg: Config, default: int = 224) -> int:
    """The input size the model was trained at (``model.backbone.img_size``)."""
    size = cfg.get('model', {}).get('backbone', {}).get('img_size', default)
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def model_context_length(cfg: Config, default: int = 77) -> int:
    """The text context length of the model (``model.text_encoder``)."""
    return int(cfg.get('model', {}).get('text_encoder', {}).get(
        'context_length', default))


def _fit_pipeline(pipeline, image_size: int, context_length: int) -> None:
    for t in pipeline:
        kind = t.get('type')
        if kind == 'ResizeEdge':
            t['scale'] = image_size
        elif kind == 'CenterCrop':
            t['crop_size'] = image_size
        elif kind in ('TokenizeCaptions', 'TokenizeText'):
            t['context_length'] = context_length


def merge_benchmark_cfg(model_cfg: Config,
                        bench_cfg: Config,
                        data_root: Optional[str] = None,
                        fit_to_model: bool = True) -> Config:
    """A config that evaluates ``model_cfg``'s model on ``bench_cfg``'s data.

    ``test_dataloader`` and ``test_evaluator`` come from the benchmark; for
    ``benchmark_type='zero_shot'`` a :class:`ZeroShotClassifierHook` is added
    (the class-name classifier is built from the data set's metainfo).
    ``data_root`` replaces the data set's ``data_root`` (relative
    ``ann_file`` / ``data_prefix`` are joined to it). With ``fit_to_model``
    the resize/crop size and the caption context length follow the model's ``img_size`` and text
    ``context_length`` (a 64 px toy model is evaluated at 64 px).
    """
    kind = bench_cfg.get('benchmark_type')
    if kind not in BENCHMARK_TYPES:
        raise KeyError(f'benchmark config {bench_cfg.filename!r} must set '
                       f'benchmark_type to one of {BENCHMARK_TYPES}, got '
                       f'{kind!r}')
    for key in ('test_dataloader', 'test_evaluator'):
        if key not in bench_cfg:
            raise KeyError(f'benchmark config {bench_cfg.filename!r} has no '
                           f'{key}')
    cfg = copy.deepcopy(model_cfg)
    loader = copy.deepcopy(bench_cfg.test_dataloader)
    if data_root is not None:
        loader['dataset']['data_root'] = data_root
    if fit_to_model:
        _fit_pipeline(loader['dataset'].get('pipeline', []),
                      model_image_size(cfg), model_context_length(cfg))
    cfg.test_dataloader = loader
    cfg.test_evaluator = copy.deepcopy(bench_cfg.test_evaluator)
    cfg.test_cfg = dict()
    hooks = [
        h for h in cfg.get('custom_hooks', [])
        if h.get('type') != 'ZeroShotClassifierHook'
    ]
    if kind == 'zero_shot':
        hooks.append(dict(type='ZeroShotClassifierHook'))
    cfg.custom_hooks = hooks
    for key in ('train_dataloader', 'val_dataloader', 'train_cfg', 'val_cfg',
                'val_evaluator', 'optim_wrapper', 'param_scheduler'):
        cfg.pop(key, None)
    cfg.benchmark_type = kind
    return cfg


def run_benchmark(model_cfg: Config,
                  bench_cfg: Config,
                  checkpoint: str,
                  work_dir: str,
                  data_root: Optional[str] = None,
                  launcher: str = 'none') -> dict:
    """Evaluate ``checkpoint`` on one benchmark with mmengine's test loop;
    returns the metrics dict."""
    from mmengine.runner import Runner
    cfg = merge_benchmark_cfg(model_cfg, bench_cfg, data_root)
    cfg.work_dir = work_dir
    cfg.load_from = checkpoint
    cfg.launcher = launcher
    return Runner.from_cfg(cfg).test()
