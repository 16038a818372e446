"""Class names and prompt templates of the zero-shot benchmarks.

They come from the metadata that ships inside the installed ``clip_benchmark``
package (``clip_benchmark/datasets/en_classnames.json`` and
``en_zeroshot_classification_templates.json``; nothing is downloaded), or
from any JSON file of the same shape: ``{dataset_key: [str, ...]}``.
clip-benchmark's templates use ``{c}`` for the class name; they are returned
with ``{}`` (``str.format`` positional), the form :class:`ZeroShotClsDataset`
and :meth:`RILS.set_zero_shot_classifier` use.

Table 6 of the paper names 21 data sets; :data:`TABLE6_DATASETS` maps each to
its clip-benchmark key and to its usual metric.
"""
import ast
import json
import os.path as osp
from typing import Dict, List, Optional, Sequence

__all__ = [
    'TABLE6_DATASETS', 'OOD_DATASETS', 'clip_benchmark_metadata_dir',
    'load_classnames', 'load_templates', 'imagenet_wnids',
    'imagenet_subset_wnids', 'EXTRA_TEMPLATES'
]

#: Table 6 of the paper: short name -> (clip-benchmark key, usual metric).
#: ``mean_per_class`` for Aircraft, Pets, Caltech-101 and Flowers-102 (as in
#: CLIP / SLIP), ``top1`` elsewhere.
TABLE6_DATASETS: Dict[str, tuple] = {
    'food101': ('food101', 'top1'),
    'cifar10': ('cifar10', 'top1'),
    'cifar100': ('cifar100', 'top1'),
    'cub200': ('cub200', 'top1'),
    'sun397': ('sun397', 'top1'),
    'cars': ('cars', 'top1'),
    'aircraft': ('fgvc_aircraft', 'mean_per_class'),
    'dtd': ('dtd', 'top1'),
    'pets': ('pets', 'mean_per_class'),
    'caltech101': ('caltech101', 'mean_per_class'),
    'flowers': ('flowers', 'mean_per_class'),
    'mnist': ('mnist', 'top1'),
    'fer2013': ('fer2013', 'top1'),
    'stl10': ('stl10', 'top1'),
    'eurosat': ('eurosat', 'top1'),
    'resisc45': ('resisc45', 'top1'),
    'gtsrb': ('gtsrb', 'top1'),
    'country211': ('country211', 'top1'),
    'clevr': ('clevr_count_all', 'top1'),
    'sst2': ('renderedsst2', 'top1'),
    'imagenet': ('imagenet1k', 'top1'),
}

#: Table 8: ImageNet variants; all use ImageNet's class names and templates.
OOD_DATASETS = ('imagenet-a', 'imagenet-r', 'imagenet-sketch', 'imagenetv2',
                'objectnet')

#: Templates for the one Table 6 set clip-benchmark has no entry for: CUB-200
#: (SLIP's prompt, which the paper's zero-shot recipe follows).
EXTRA_TEMPLATES: Dict[str, List[str]] = {
    'cub200': ['a photo of a {c}, a type of bird.'],
}


def clip_benchmark_metadata_dir() -> str:
    """Folder of the installed clip-benchmark's shipped metadata files."""
    try:
        import clip_benchmark.datasets as cbd
    except ImportError as e:  # pragma: no cover - a dependency of the project
        raise ImportError('clip-benchmark is not installed: pip install '
                          'clip-benchmark==1.6.2 (its class names and '
                          'templates are read from the package)') from e
    return osp.dirname(cbd.__file__)


def _load_json(path: str) -> dict:
    if not osp.isfile(path):
        raise FileNotFoundError(f'metadata file not found: {path!r}')
    with open(path, encoding='utf-8') as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f'{path!r} is not valid JSON: {e}') from None
    if not isinstance(data, dict):
        raise ValueError(f'{path!r} must hold a JSON object '
                         '{dataset: [str, ...]}, got '
                         f'{type(data).__name__}')
    return data


def _check_list(value, path: str, key: str, what: str) -> List[str]:
    if isinstance(value, dict):
        raise ValueError(
            f'{path!r}[{key!r}] holds class-specific prompts (a dict); only '
            f'a list of {what} with a {{c}} placeholder is supported')
    if not isinstance(value, list) or not value or not all(
            isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f'{path!r}[{key!r}] must be a non-empty list of '
                         f'non-empty strings ({what})')
    return list(value)


def load_classnames(key: str,
                    file: Optional[str] = None,
                    language: str = 'en') -> Optional[List[str]]:
    """Class names of ``key`` from ``file`` (a JSON ``{key: [names]}``) or,
    by default, clip-benchmark's shipped ``<language>_classnames.json``.

    Returns ``None`` when the default file has no entry (clip-benchmark then
    takes the names from the data set itself, and so do our readers); raises
    ``KeyError`` when an explicitly given file lacks the key.
    """
    path = file or osp.join(clip_benchmark_metadata_dir(),
                            f'{language}_classnames.json')
    data = _load_json(path)
    if key not in data:
        if file is not None:
            raise KeyError(f'{path!r} has no class names for {key!r}; keys: '
                           f'{sorted(data)[:30]}')
        return None
    return _check_list(data[key], path, key, 'class names')


def load_templates(key: str,
                   file: Optional[str] = None,
                   language: str = 'en',
                   fallback: Optional[str] = 'imagenet1k') -> List[str]:
    """Prompt templates of ``key`` with a ``{}`` placeholder.

    From ``file`` (``{key: [templates with {c}]}``) or clip-benchmark's
    shipped ``<language>_zeroshot_classification_templates.json``; a key it
    lacks falls back to :data:`EXTRA_TEMPLATES`, then to ``fallback``
    (clip-benchmark's own rule: ImageNet's templates).
    """
    path = file or osp.join(
        clip_benchmark_metadata_dir(),
        f'{language}_zeroshot_classification_templates.json')
    data = _load_json(path)
    if key in data:
        templates = _check_list(data[key], path, key, 'templates')
    elif file is None and key in EXTRA_TEMPLATES:
        templates = EXTRA_TEMPLATES[key]
    elif fallback is not None and fallback in data:
        templates = _check_list(data[fallback], path, fallback, 'templates')
    else:
        raise KeyError(f'{path!r} has no templates for {key!r}'
                       + (f' nor {fallback!r}' if fallback else ''))
    out = []
    for t in templates:
        if '{c}' not in t and '{}' not in t:
            raise ValueError(f'template {t!r} of {key!r} in {path!r} has no '
                             '{c} placeholder for the class name')
        out.append(t.replace('{c}', '{}'))
    return out


def _builder_source() -> str:
    path = osp.join(clip_benchmark_metadata_dir(), 'builder.py')
    with open(path, encoding='utf-8') as f:
        return f.read()


def _literal_assignments(source: str, names: Sequence[str]) -> Dict[str, list]:
    """Values of ``name = [...]`` / ``{...}`` literal assignments anywhere in
    ``source`` (module level or inside functions)."""
    found = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and \
                isinstance(node.targets[0], ast.Name) and \
                node.targets[0].id in names:
            found[node.targets[0].id] = list(ast.literal_eval(node.value))
    return found


def imagenet_wnids() -> List[str]:
    """The 1000 ImageNet-1K WordNet ids in class-index order (clip-benchmark's
    ``all_imagenet_wordnet_ids``)."""
    from clip_benchmark.datasets.builder import all_imagenet_wordnet_ids
    return list(all_imagenet_wordnet_ids)


def imagenet_subset_wnids(name: str) -> List[str]:
    """The WordNet ids of the 200-class ImageNet-A / ImageNet-R subsets, in
    ImageNet class-index order, read from the installed clip-benchmark's
    ``datasets/builder.py``."""
    var = {'imagenet-a': 'imagenet_a_wnids', 'imagenet-r': 'imagenet_r_wnids'}
    if name not in var:
        raise KeyError(f'no 200-class subset known for {name!r}; expected one '
                       f'of {sorted(var)}')
    subset = set(_literal_assignments(_builder_source(), [var[name]])[var[name]])
    return [w for w in imagenet_wnids() if w in subset]
