"""Former home of the checkpoint key maps; they live in :mod:`rils_mm.utils.export`
(``backbone``, ``open_clip``, ``timm``, ``hf_clip``, ``files``). Kept so that
existing imports keep working."""
from .export.backbone import BACKBONE_PREFIX, extract_backbone
from .export.files import load_state_dict_file, save_state_dict_file
from .export.open_clip import (
    build_open_clip_model,
    from_open_clip,
    open_clip_model_cfg,
    to_open_clip,
)

__all__ = [
    'BACKBONE_PREFIX', 'extract_backbone', 'to_open_clip', 'from_open_clip',
    'open_clip_model_cfg', 'build_open_clip_model', 'load_state_dict_file',
    'save_state_dict_file'
]
