"""A pretraining checkpoint -> the vision encoder alone (mmpretrain / mmdet / mmseg).

The output holds the encoder's tensors named as inside the backbone module,
the form ``init_cfg=dict(type='Pretrained', checkpoint=...)`` loads without a
prefix (``.safetensors`` too: the project's mmengine file loader reads it).
"""
from collections import OrderedDict
from typing import Dict

import torch

__all__ = ['BACKBONE_PREFIX', 'extract_backbone']

BACKBONE_PREFIX = 'backbone.'


def extract_backbone(state_dict: Dict[str, torch.Tensor],
                     prefix: str = BACKBONE_PREFIX
                     ) -> Dict[str, torch.Tensor]:
    """The tensors under ``prefix`` with the prefix removed (the keys of the
    backbone module itself). Raises ``KeyError`` when there are none."""
    out = OrderedDict((k[len(prefix):], v) for k, v in state_dict.items()
                      if k.startswith(prefix))
    if not out:
        roots = sorted({k.split('.')[0] for k in state_dict})
        raise KeyError(f'no {prefix!r} tensors in the checkpoint (top-level '
                       f'names: {roots}); is it a pretraining checkpoint of '
                       'this project?')
    return out
