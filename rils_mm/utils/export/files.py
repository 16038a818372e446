"""Reading and writing the state dicts that leave the project.

Every checkpoint written for another library is a ``.safetensors`` file (or a
torch ``.pth`` where an mmengine-only reader wants one), in fp32 or bf16 by
choice, with the metadata a loader needs: the config name, the method, the
layout (``rils_mm``, ``backbone``, ``timm``, ``open_clip``, ``hf_clip``) and the
sha256 of the source checkpoint.
"""
import hashlib
import os.path as osp
import re
from collections import OrderedDict
from typing import Dict, Optional

import torch

__all__ = [
    'DTYPES', 'load_state_dict_file', 'save_state_dict_file', 'read_metadata',
    'sha256_file', 'checkpoint_info'
]

#: ``--dtype`` names -> torch dtypes of the written floating-point tensors.
DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16}

_STAMP = re.compile(r'_\d{8}_\d{6}$')  # mmengine's experiment_name suffix


def _torch_load(path: str):
    from ..checkpoint import load_from_local  # weights_only=True, allow-listed types
    return load_from_local(path, map_location='cpu')


def load_state_dict_file(path: str) -> Dict[str, torch.Tensor]:
    """The state dict stored in ``path``: a ``.safetensors`` file, or a torch
    checkpoint (``state_dict`` / ``model`` / ``module`` entry, or a bare state
    dict), loaded with ``weights_only=True``."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path!r}: no such checkpoint file')
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        return OrderedDict(load_file(path))
    ckpt = _torch_load(path)
    if not isinstance(ckpt, dict):
        raise ValueError(f'{path!r}: expected a dict checkpoint, got '
                         f'{type(ckpt).__name__}')
    for key in ('state_dict', 'model', 'module'):
        if isinstance(ckpt.get(key), dict):
            ckpt = ckpt[key]
            break
    bad = [k for k, v in ckpt.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f'{path!r}: entries {bad[:5]} are not tensors; '
                         'expected a state dict')
    return OrderedDict(ckpt)


def _cast(v: torch.Tensor, dtype: Optional[torch.dtype]) -> torch.Tensor:
    v = v.detach().cpu()
    if dtype is not None and v.is_floating_point():
        v = v.to(dtype)
    return v.contiguous()


def save_state_dict_file(state_dict: Dict[str, torch.Tensor], path: str,
                         meta: Optional[dict] = None,
                         dtype: str = 'fp32') -> None:
    """Write ``state_dict`` as ``.safetensors`` (by extension) or as a torch
    checkpoint ``{'state_dict': ..., 'meta': ...}`` (``.pth``).

    Floating-point tensors are written as ``dtype`` (``'fp32'`` or
    ``'bf16'``; integer buffers keep theirs). ``meta`` (str -> str) goes into
    the safetensors header together with ``format=pt`` (which transformers
    requires) and ``dtype``; tensors that share memory are written as copies.
    """
    if dtype not in DTYPES:
        raise ValueError(f'dtype must be one of {sorted(DTYPES)}, got {dtype!r}')
    sd = OrderedDict((k, _cast(v, DTYPES[dtype]).clone())
                     for k, v in state_dict.items())
    info = dict(meta or {}, dtype=dtype)
    if path.endswith('.safetensors'):
        from safetensors.torch import save_file
        header = {'format': 'pt'}
        header.update({str(k): str(v) for k, v in info.items()})
        save_file(sd, path, metadata=header)
    else:
        torch.save(dict(state_dict=sd, meta=info), path)


def read_metadata(path: str) -> Dict[str, str]:
    """The metadata written by :func:`save_state_dict_file` (either format)."""
    if path.endswith('.safetensors'):
        from safetensors import safe_open
        with safe_open(path, framework='pt') as f:
            return dict(f.metadata() or {})
    ckpt = _torch_load(path)
    return {k: str(v) for k, v in (ckpt.get('meta') or {}).items()
            if isinstance(v, (str, int, float))}


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            h.update(block)
    return h.hexdigest()


def checkpoint_info(path: str, config: Optional[str] = None) -> Dict[str, str]:
    """What an export records about its source: ``source`` (file name),
    ``source_sha256``, ``config`` (the config's name) and ``method`` (the
    model's registry type, e.g. ``RILS``).

    ``config`` (a config file path) wins; otherwise both are read from the
    ``meta`` mmengine's Runner writes (``experiment_name``, ``cfg``), and are
    ``'unknown'`` where the checkpoint has neither.
    """
    info = dict(source=osp.basename(path), source_sha256=sha256_file(path),
                config='unknown', method='unknown')
    cfg_text = None
    if config is not None:
        info['config'] = osp.splitext(osp.basename(config))[0]
        with open(config, encoding='utf-8') as f:
            cfg_text = f.read()
    elif not path.endswith('.safetensors'):
        meta = _torch_load(path).get('meta') or {}
        if meta.get('experiment_name'):
            info['config'] = _STAMP.sub('', str(meta['experiment_name']))
        cfg_text = meta.get('cfg')
    if cfg_text:
        try:
            from mmengine.config import Config
            cfg = Config.fromstring(cfg_text, '.py') if config is None else \
                Config.fromfile(config)
            info['method'] = str(cfg.model.get('type', 'unknown'))
        except Exception:  # a config that does not parse here: keep 'unknown'
            pass
    return info
