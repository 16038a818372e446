from .rils_vit import QVBiasLinear, RILSViT

__all__ = ['RILSViT', 'QVBiasLinear']


def _register_downstream() -> None:
    """Register the one ViT class for mmdet and mmseg configs as well."""
    try:
        from mmdet.registry import MODELS as MMDET_MODELS
    except ImportError:  # mmdet is optional
        MMDET_MODELS = None
    try:
        from mmseg.registry import MODELS as MMSEG_MODELS
    except ImportError:  # mmseg is optional
        MMSEG_MODELS = None
    for registry in (MMDET_MODELS, MMSEG_MODELS):
        if registry is not None and registry.get('RILSViT') is not RILSViT:
            registry.register_module('RILSViT', module=RILSViT, force=True)


_register_downstream()
