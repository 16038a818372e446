"""One call per export target, as ``tools/model_converters/export_model.py`` runs them.

:func:`export_checkpoint` reads a checkpoint of this project (``.pth`` or
``.safetensors``), builds the model of its config (for the architecture only: the
tensors are the checkpoint's) and writes

* ``timm``: the vision encoder as a timm ``VisionTransformer`` state dict
  (:func:`~rils_mm.utils.export.timm.to_timm`), one file;
* ``backbone``: the vision encoder for mmpretrain / mmdet / mmseg
  (:func:`~rils_mm.utils.export.backbone.extract_backbone`), one file;
* ``open-clip``: a folder ``open_clip.create_model('local-dir:' + folder)`` loads
  (:func:`~rils_mm.utils.export.open_clip.write_open_clip_dir`);
* ``hf-clip``: a ``CLIPModel.from_pretrained`` folder
  (:func:`~rils_mm.utils.export.hf_clip.write_hf_clip_dir`);

in fp32 or bf16, with :func:`~rils_mm.utils.export.files.checkpoint_info`'s
metadata (source file and sha256, config name, method) in the header.
"""
import os.path as osp
from typing import Dict

from .backbone import extract_backbone
from .files import checkpoint_info, load_state_dict_file, save_state_dict_file
from .hf_clip import write_hf_clip_dir
from .open_clip import write_open_clip_dir
from .timm import timm_model_name, to_timm

__all__ = ['EXPORT_TARGETS', 'export_checkpoint']

#: targets -> whether ``dst`` is a folder
EXPORT_TARGETS = {'timm': False, 'backbone': False, 'open-clip': True, 'hf-clip': True}


def _build_model(config: str):
    from mmengine.config import Config
    from mmpretrain.registry import MODELS

    import rils_mm  # noqa: F401 (registers the modules)
    return MODELS.build(Config.fromfile(config).model).eval()


def export_checkpoint(target: str, config: str, src: str, dst: str,
                      dtype: str = 'fp32', tower: str = 'auto') -> Dict[str, str]:
    """Write checkpoint ``src`` (a model of ``config``) for ``target``.

    Args:
        target (str): One of :data:`EXPORT_TARGETS`.
        config (str): The model's config file.
        src (str): Checkpoint (``.pth`` written by the Runner, or ``.safetensors``).
        dst (str): Output file (``.safetensors`` or ``.pth``, by extension) for
            ``timm`` / ``backbone``, output folder for ``open-clip`` / ``hf-clip``.
        dtype (str): ``'fp32'`` or ``'bf16'``. Defaults to 'fp32'.
        tower (str): open_clip vision tower: ``'auto'``, ``'timm'`` or
            ``'native'`` (see :func:`~rils_mm.utils.export.open_clip.open_clip_config`).

    Returns:
        dict: The metadata written (``layout`` included).
    """
    if target not in EXPORT_TARGETS:
        raise ValueError(f'target must be one of {sorted(EXPORT_TARGETS)}, got {target!r}')
    if not EXPORT_TARGETS[target] and not dst.endswith(('.safetensors', '.pth')):
        raise ValueError(f'{target} writes one file: dst must end with .safetensors or '
                         f'.pth, got {dst!r}')
    meta = checkpoint_info(src, config)
    sd = load_state_dict_file(src)
    if target == 'backbone':
        meta['layout'] = 'backbone'
        save_state_dict_file(extract_backbone(sd), dst, meta=meta, dtype=dtype)
        return dict(meta, dtype=dtype)
    model = _build_model(config)
    if target == 'timm':
        backbone = extract_backbone(sd)
        heads = model.backbone.layers[0].attn.num_heads
        meta.update(layout='timm', timm_model=timm_model_name(backbone, heads) or 'custom')
        save_state_dict_file(to_timm(backbone), dst, meta=meta, dtype=dtype)
    elif target == 'open-clip':
        meta['layout'] = 'open_clip'
        write_open_clip_dir(sd, model, dst, tower=tower, dtype=dtype, meta=meta)
    else:
        meta['layout'] = 'hf_clip'
        write_hf_clip_dir(sd, model, dst, dtype=dtype, meta=meta)
    if EXPORT_TARGETS[target] and not osp.isdir(dst):
        raise RuntimeError(f'{target} export did not write the folder {dst!r}')
    return dict(meta, dtype=dtype)
