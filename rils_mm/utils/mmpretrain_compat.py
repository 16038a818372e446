"""Keep ``import rils_mm`` working when transformers 5.x is installed.

mmpretrain 1.2 imports its multimodal models (BLIP, BLIP-2, OFA, LLaVA, ...) from
``mmpretrain.models`` and ``mmpretrain.datasets`` whenever transformers >= 4.28 and
pycocotools are installed (``mmpretrain.utils.dependency.WITH_MULTIMODAL``). Their code
uses transformers 4.x APIs that 5.x removed, so with transformers 5.x ``import
mmpretrain.models`` fails, and with it everything registered through mmpretrain's
registries. rils-mm needs none of those models (pretraining, zero-shot / retrieval /
linear-probe evaluation, detection and segmentation transfer): with transformers >= 5,
:func:`skip_multimodal_with_transformers5` makes mmpretrain take its own
"no multimodal dependencies" path, where each multimodal model name is a placeholder
that raises an error saying what to pin when built.

Called first thing by ``rils_mm/__init__.py``, before anything imports
``mmpretrain.models``.
"""
import sys
from importlib import metadata

__all__ = ['transformers_major', 'skip_multimodal_with_transformers5']

#: What the placeholder of a multimodal model says when it is built.
PIN_ADVICE = ('mmpretrain 1.2\'s multimodal models do not import with transformers {ver}; '
              'to use {name}, install transformers 4.x (pip install "transformers>=4.38,<5"). '
              'rils-mm\'s pretraining and evaluation do not need them.')


def transformers_major():
    """Major version of the installed transformers (None when absent), read from its
    metadata without importing it."""
    try:
        return int(metadata.version('transformers').split('.')[0])
    except (metadata.PackageNotFoundError, ValueError):
        return None


def skip_multimodal_with_transformers5() -> bool:
    """With transformers >= 5 and ``mmpretrain.models`` not imported yet, switch off
    mmpretrain's multimodal imports (see the module docstring). Returns whether it
    did."""
    major = transformers_major()
    if major is None or major < 5:
        return False
    if 'mmpretrain.models' in sys.modules or 'mmpretrain.datasets' in sys.modules:
        return False  # too late: whoever imported them first met the error already
    from mmpretrain.utils import dependency
    version = metadata.version('transformers')

    def register_multimodal_placeholder(names, registry):
        for name in names:

            def ask_pin(*args, _name=name, **kwargs):
                raise ImportError(PIN_ADVICE.format(ver=version, name=_name))

            registry.register_module(name=name, module=ask_pin)

    dependency.WITH_MULTIMODAL = False
    dependency.register_multimodal_placeholder = register_multimodal_placeholder
    return True
