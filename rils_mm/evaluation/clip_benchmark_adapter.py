"""Run clip-benchmark's own evaluation code on any checkpoint of this project.

:func:`load_for_clip_benchmark` returns ``(model, transform, tokenizer)``, the
triple clip-benchmark's model loaders return (``clip_benchmark.models``), so
``clip_benchmark.metrics.zeroshot_classification.evaluate`` and
``zeroshot_retrieval.evaluate`` run unchanged:

* ``model.encode_image(images)`` / ``model.encode_text(tokens)``: our joint
  space embeddings ``z^I``, ``z^T`` (Eq. 4);
* ``transform``: PIL image -> tensor through the same resize / crop as our
  benchmark configs and the model's data preprocessor (CLIP mean/std), so
  the images our test loop scores are bit-identical;
* ``tokenizer``: open_clip's CLIP BPE at the model's context length.

:func:`register_with_clip_benchmark` adds the loader as ``--model_type
rils_mm`` to clip-benchmark's CLI (``tools/clip_benchmark_eval.py``).

clip-benchmark 1.6.2's ``accuracy`` calls ``float()`` on a one-element 1-D
numpy array, which numpy >= 2 refuses (only 0-d arrays convert).
:func:`patch_clip_benchmark_for_numpy2` replaces that one function in its
module with an equivalent that takes ``.item()``; numpy is not pinned.
"""
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

__all__ = [
    'CLIPBenchmarkModel', 'load_for_clip_benchmark',
    'patch_clip_benchmark_for_numpy2', 'register_with_clip_benchmark'
]


class CLIPBenchmarkModel(nn.Module):
    """``encode_image`` / ``encode_text`` view of one of our models."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(images)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(tokens)


class _PipelineTransform:
    """PIL image -> normalised CHW float tensor: our test pipeline (resize,
    crop) followed by the model's data preprocessor."""

    def __init__(self, pipeline: Sequence[dict], data_preprocessor) -> None:
        from mmcv.transforms import Compose
        from mmpretrain.registry import TRANSFORMS
        steps = [
            t for t in pipeline
            if t['type'] not in ('LoadImageFromFile', 'PackInputs',
                                 'PackImageTextInputs', 'TokenizeText',
                                 'TokenizeCaptions')
        ]
        self.compose = Compose([TRANSFORMS.build(dict(t)) for t in steps])
        self.preprocessor = data_preprocessor

    def __call__(self, img) -> torch.Tensor:
        from mmpretrain.datasets.transforms.formatting import PackInputs
        arr = np.ascontiguousarray(np.asarray(img.convert('RGB'))[..., ::-1])
        results = self.compose(
            dict(img=arr, img_shape=arr.shape[:2], ori_shape=arr.shape[:2]))
        inputs = PackInputs.format_input(results['img'])
        with torch.no_grad():
            out = self.preprocessor(dict(inputs=[inputs]), False)
        return out['inputs'][0]


def load_for_clip_benchmark(config, checkpoint: Optional[str] = None,
                            device='cpu',
                            pipeline: Optional[Sequence[dict]] = None):
    """``(model, transform, tokenizer)`` for clip-benchmark from one of our
    configs (path or ``Config``) and checkpoint.

    ``pipeline`` is the test pipeline to mirror; by default the zero-shot
    benchmark pipeline (short-side bicubic resize + centre crop) at the
    model's input size.
    """
    import open_clip
    from mmengine.config import Config
    from mmengine.runner import load_checkpoint
    from mmpretrain.registry import MODELS

    from .benchmark_runner import _fit_pipeline, model_context_length, model_image_size
    cfg = Config.fromfile(config) if isinstance(config, str) else config
    model = MODELS.build(cfg.model)
    if checkpoint:
        load_checkpoint(model, checkpoint, map_location='cpu', strict=False,
                        logger='current')
    model.to(device).eval()
    if pipeline is None:
        size = model_image_size(cfg)
        pipeline = [
            dict(type='ResizeEdge', scale=size, edge='short',
                 backend='pillow', interpolation='bicubic'),
            dict(type='CenterCrop', crop_size=size),
        ]
    pipeline = [dict(t) for t in pipeline]
    _fit_pipeline(pipeline, model_image_size(cfg), model_context_length(cfg))
    transform = _PipelineTransform(pipeline, model.data_preprocessor)
    context = model_context_length(cfg)

    def tokenizer(texts):
        return open_clip.tokenize(texts, context_length=context)

    return CLIPBenchmarkModel(model), transform, tokenizer


def _accuracy(output: torch.Tensor, target: torch.Tensor,
              topk=(1, )) -> list:
    """clip-benchmark's ``accuracy`` with ``.item()`` (numpy 2 safe)."""
    pred = output.topk(max(topk), 1, True, True)[1].t()
    correct = pred.eq(target.view(1, -1).expand_as(pred))
    n = len(target)
    return [float(correct[:k].reshape(-1).float().sum().item()) / n
            for k in topk]


def patch_clip_benchmark_for_numpy2() -> Callable:
    """Make clip-benchmark's zero-shot ``accuracy`` work under numpy 2.

    Replaces ``clip_benchmark.metrics.zeroshot_classification.accuracy``
    (looked up at call time by its ``evaluate``) when it raises on a probe;
    returns the function in place. Idempotent.
    """
    from clip_benchmark.metrics import zeroshot_classification as zc
    try:
        zc.accuracy(torch.eye(2), torch.arange(2), topk=(1, ))
    except TypeError:
        zc.accuracy = _accuracy
    return zc.accuracy


def register_with_clip_benchmark(name: str = 'rils_mm') -> None:
    """Add ``--model_type rils_mm`` to clip-benchmark's CLI: ``--model`` is
    our config file, ``--pretrained`` the checkpoint."""
    import clip_benchmark.cli as cli
    import clip_benchmark.models as cbm

    def loader(model_name, pretrained, cache_dir=None, device='cpu'):
        return load_for_clip_benchmark(model_name, pretrained, device)

    cbm.TYPE2FUNC[name] = loader
    if name not in cbm.MODEL_TYPES:
        cbm.MODEL_TYPES.append(name)
    if hasattr(cli, 'MODEL_TYPES') and name not in cli.MODEL_TYPES:
        cli.MODEL_TYPES.append(name)
    patch_clip_benchmark_for_numpy2()
