"""Layer-wise learning-rate decay for detectors / segmentors with a ViT backbone.

BEiT / MAE / ViTDet fine-tuning: a parameter at depth ``d`` (0 = patch embedding
and positions, ``i + 1`` = block ``i``, ``L + 1`` = everything after the
backbone) trains with ``lr * decay_rate ** (L + 1 - d)``.

mmpretrain's :class:`LearningRateDecayOptimWrapperConstructor` implements this
but asks the *top-level* model for ``get_layer_depth`` (which mmpretrain's
classifiers have and mmdet's / mmseg's models do not); mmseg's constructor
accepts only backbones whose class name contains ``MAE`` or ``BEiT``. This
subclass asks ``model.backbone.get_layer_depth(name, 'backbone.')`` instead, and
merges the per-parameter groups into one per depth and weight decay
(:mod:`rils_mm.engine.optimizers.param_groups`; ``paramwise_cfg.per_param_groups=True``
keeps mmpretrain's one group per parameter, with its ``param_name``).
"""
from functools import partial

from mmpretrain.engine.optimizers import LearningRateDecayOptimWrapperConstructor
from mmpretrain.registry import OPTIM_WRAPPER_CONSTRUCTORS

from .param_groups import MergeParamGroupsMixin


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class BackboneLayerDecayOptimWrapperConstructor(MergeParamGroupsMixin,
                                                LearningRateDecayOptimWrapperConstructor):
    """:class:`LearningRateDecayOptimWrapperConstructor` for any model whose
    ``backbone`` has ``get_layer_depth`` (``paramwise_cfg.layer_decay_rate``,
    ``flat_decay_mult``, ``custom_keys`` ... as there). Use it from mmdet / mmseg
    configs as ``constructor='mmpretrain.BackboneLayerDecayOptimWrapperConstructor'``.
    Groups are merged unless ``paramwise_cfg.per_param_groups=True``.
    """

    def add_params(self, params, module, prefix='', get_layer_depth=None, **kwargs):
        if get_layer_depth is None and not hasattr(module, 'get_layer_depth'):
            backbone = getattr(module, 'backbone', None)
            if backbone is None or not hasattr(backbone, 'get_layer_depth'):
                raise TypeError(
                    f'{type(self).__name__}: {type(module).__name__} has no '
                    f'`backbone.get_layer_depth` (a ViT backbone is expected)')
            get_layer_depth = partial(backbone.get_layer_depth, prefix='backbone.')
        super().add_params(params, module, prefix=prefix,
                           get_layer_depth=get_layer_depth, **kwargs)
