"""Checkpoints for other libraries: key maps and the files they are written to.

* :mod:`.backbone` - the vision encoder alone (mmpretrain / mmdet / mmseg);
* :mod:`.timm` - timm's ``VisionTransformer``, both ways;
* :mod:`.open_clip` - open_clip's ``CLIP``: state dict and ``open_clip_config.json``;
* :mod:`.hf_clip` - a transformers ``CLIPModel`` folder, both ways;
* :mod:`.files` - ``.safetensors`` / ``.pth`` in fp32 or bf16, with metadata.
"""
from .backbone import BACKBONE_PREFIX, extract_backbone
from .files import (
    DTYPES,
    checkpoint_info,
    load_state_dict_file,
    read_metadata,
    save_state_dict_file,
    sha256_file,
)
from .hf_clip import from_hf_clip, from_hf_clip_text, hf_clip_config, to_hf_clip, write_hf_clip_dir
from .open_clip import (
    build_open_clip_model,
    from_open_clip,
    open_clip_config,
    open_clip_model_cfg,
    to_open_clip,
    to_open_clip_state_dict,
    write_open_clip_dir,
)
from .timm import TIMM_ARCHS, from_timm, timm_model_name, to_timm

__all__ = [
    'BACKBONE_PREFIX', 'extract_backbone', 'DTYPES', 'checkpoint_info', 'load_state_dict_file',
    'read_metadata', 'save_state_dict_file', 'sha256_file', 'from_hf_clip', 'from_hf_clip_text',
    'hf_clip_config', 'to_hf_clip', 'write_hf_clip_dir', 'build_open_clip_model',
    'from_open_clip', 'open_clip_config', 'open_clip_model_cfg', 'to_open_clip',
    'to_open_clip_state_dict', 'write_open_clip_dir', 'TIMM_ARCHS', 'from_timm',
    'timm_model_name', 'to_timm'
]
