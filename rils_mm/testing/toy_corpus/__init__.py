"""A deterministic toy image-text corpus for tests, demos and CPU smoke runs.

The corpus consists of small RGB images showing coloured geometric shapes on muted,
textured backgrounds, paired with natural-language captions that describe them. Every
image has one *dominant* category (a colour + shape pair such as ``"red circle"``,
drawn one to three times, large), optionally plus a smaller *distractor* object of a
different category. The dominant category is the zero-shot class, so a tiny CLIP/RILS
model trained contrastively on the captions can be evaluated with zero-shot
classification on the held-out split.

Generation is split into three independent steps, one module each, so that the same
scenes can also be rendered as detection / segmentation annotations:

1. :func:`sample_scene` draws a resolution-independent :class:`Scene`
   (normalised object geometry, colours, background description).
2. :func:`render_scene` rasterises it into a ``PIL.Image``;
   :func:`render_instance_masks` / :func:`render_semantic_mask` rasterise the objects
   into masks, and :func:`object_bbox` gives tight pixel boxes consistent with them.
3. :func:`make_caption` writes a caption for the scene.

:func:`generate_toy_corpus` (``writer.py``) writes the whole corpus to disk (JPEG files
+ CSV + JSONL + WebDataset shards in the img2dataset/LAION layout for training, JPEG
files + CSV with integer labels for validation, class names, prompt templates and
``meta.json``).

All randomness comes from :class:`numpy.random.Generator` objects seeded from
``(seed, split, index)``; no global RNG state is touched, so the output is
byte-identical for identical arguments.
"""
from .captions import SHAPE_WORDS, TEMPLATES, make_caption
from .render import (
                     object_bbox,
                     object_polygon,
                     render_instance_masks,
                     render_scene,
                     render_semantic_mask,
)
from .scene import (
                     BACKGROUNDS,
                     COLOURS,
                     POSITIONS,
                     SHAPES,
                     Background,
                     Scene,
                     SceneObject,
                     get_classnames,
                     sample_scene,
)
from .writer import GENERATOR_VERSION, corpus_scene, generate_toy_corpus

__all__ = [
    'GENERATOR_VERSION', 'SHAPES', 'COLOURS', 'BACKGROUNDS', 'POSITIONS',
    'TEMPLATES', 'SHAPE_WORDS', 'get_classnames', 'SceneObject', 'Background',
    'Scene', 'sample_scene', 'object_polygon', 'object_bbox', 'render_scene',
    'render_instance_masks', 'render_semantic_mask', 'make_caption', 'corpus_scene',
    'generate_toy_corpus'
]

