"""Load the vision encoder of a RILS pre-training checkpoint into a dense RILSViT.

The pre-training checkpoint holds the whole RILS model: ``backbone.*`` (V-Enc,
Eq. 1), ``neck.*`` (V-Dec, Eq. 3), ``text_encoder.*`` (L-Enc, Eq. 2) and
``head.*`` (theta, phi and the logit scale 1/sigma). Fine-tuning keeps the
encoder only. A backbone-only checkpoint (bare ``patch_embed.*``, ``layers.*``
keys, e.g. from a model converter) is accepted as well.

Rules (issue 11):

- position embeddings are resized to the backbone's grid (mmpretrain's
  ``VisionTransformer`` load hook, bicubic);
- decoder / text / projection parts are dropped and listed;
- an encoder key the model expects but the checkpoint lacks is an error, unless
  the dense backbone adds it (the relative position tables ``rel_pos_h/w``,
  zero-initialised as in ViTDet);
- checkpoint encoder keys the model does not use (e.g. the final norm when
  ``final_norm=False``) are listed as not loaded;
- a shape mismatch other than the position embedding is an error.
"""
from collections import defaultdict
from typing import Dict, List

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.runner.checkpoint import _load_checkpoint

__all__ = ['load_encoder_checkpoint', 'ADDED_BY_DENSE_BACKBONE']

#: Parameter-name suffixes a dense RILSViT adds to the pre-trained encoder.
ADDED_BY_DENSE_BACKBONE = ('.attn.rel_pos_h', '.attn.rel_pos_w')

_PARTS = {
    'neck': 'decoder (V-Dec)',
    'text_encoder': 'text encoder (L-Enc)',
    'head': 'projections theta/phi, logit scale',
}


def _state_dict_of(ckpt, source: str) -> Dict[str, torch.Tensor]:
    if not isinstance(ckpt, dict):
        raise TypeError(f'{source}: expected a checkpoint dict, got {type(ckpt).__name__}')
    for key in ('state_dict', 'model'):
        if key in ckpt and isinstance(ckpt[key], dict):
            return ckpt[key]
    if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return ckpt
    raise KeyError(f'{source}: no "state_dict" (or "model") entry with tensors; '
                   f'top-level keys are {sorted(ckpt)[:10]}')


def load_encoder_checkpoint(model: nn.Module,
                            checkpoint: str,
                            prefix: str = 'backbone.',
                            map_location: str = 'cpu',
                            logger: str = 'current') -> dict:
    """Load ``checkpoint``'s encoder into ``model`` (a RILSViT) and print a report.

    Args:
        model (nn.Module): the backbone.
        checkpoint (str): path or URL of the checkpoint.
        prefix (str): prefix of the encoder keys in a full RILS checkpoint.
        map_location (str): passed to the loader. Defaults to ``'cpu'``.
        logger (str): mmengine logger for the report. Defaults to ``'current'``.

    Returns:
        dict: ``loaded`` (model keys set from the checkpoint), ``resized``
        (loaded after resizing), ``initialised`` (model keys the dense backbone
        adds, left at their initialisation), ``unused`` (checkpoint encoder keys
        the model has no place for) and ``dropped`` (part -> number of tensors).

    Raises:
        KeyError: an encoder key is missing from the checkpoint.
        ValueError: a tensor has the wrong shape (other than ``pos_embed``).
    """
    state = _state_dict_of(_load_checkpoint(checkpoint, map_location=map_location),
                           checkpoint)
    dropped: Dict[str, int] = defaultdict(int)
    if prefix and any(k.startswith(prefix) for k in state):
        encoder = {}
        for k, v in state.items():
            if k.startswith(prefix):
                encoder[k[len(prefix):]] = v
            else:
                part = k.split('.', 1)[0]
                dropped[_PARTS.get(part, part)] += 1
    else:
        encoder = dict(state)

    expected = model.state_dict()
    # a fused ``qkv.bias`` (MAEViT, timm) fills ``q_bias`` / ``v_bias`` of
    # QVBiasLinear (its load hook drops the k third, which cancels in the softmax)
    fused = {k for k in encoder if k.endswith('.qkv.bias') and k not in expected
             and k[:-len('bias')] + 'q_bias' in expected}
    provided = set(encoder) | {k[:-len('bias')] + b for k in fused for b in ('q_bias', 'v_bias')}
    missing = [k for k in expected if k not in provided]
    # mmpretrain's ViT adds a LayerNorm after average pooling (out_type='avg_featmap',
    # linear probing / fine-tuning): a downstream parameter, never pre-trained
    pooled_norm = ({'ln2.weight', 'ln2.bias'}
                   if getattr(model, 'out_type', None) == 'avg_featmap' else set())
    added = [k for k in missing if k.endswith(ADDED_BY_DENSE_BACKBONE) or k in pooled_norm]
    absent = [k for k in missing if k not in added]
    if absent:
        raise KeyError(
            f'{checkpoint}: {len(absent)} encoder key(s) of {type(model).__name__} are '
            f'missing from the checkpoint: {absent[:8]}{" ..." if len(absent) > 8 else ""}'
            f' (expected a RILS pre-training checkpoint with "{prefix}"-prefixed encoder '
            f'keys, or a backbone-only one with the same architecture)')
    unused = sorted(k for k in encoder if k not in expected and k not in fused)
    resized: List[str] = []
    for k, v in encoder.items():
        if k in expected and tuple(v.shape) != tuple(expected[k].shape):
            if k == 'pos_embed':
                resized.append(k)
                continue
            raise ValueError(f'{checkpoint}: "{prefix}{k}" has shape {tuple(v.shape)}, '
                             f'the model expects {tuple(expected[k].shape)}')
    to_load = {k: v for k, v in encoder.items() if k in expected or k in fused}
    # mmpretrain's VisionTransformer pre-hook resizes pos_embed in to_load
    model.load_state_dict(to_load, strict=False)

    loaded = sorted(k for k in expected if k in provided)
    lines = [f'Loaded encoder of {checkpoint} into {type(model).__name__}:',
             f'  loaded: {len(loaded)} tensors'
             + (f' (resized: {", ".join(resized)})' if resized else '')]
    if fused:
        lines.append(f'  {len(fused)} fused qkv.bias split into q_bias / v_bias (k bias dropped)')
    if added:
        lines.append(f'  not in the checkpoint, left initialised (added by the dense '
                     f'backbone): {len(added)} tensors, e.g. {added[0]}')
    if unused:
        lines.append(f'  in the checkpoint, not loaded (unused by this backbone): '
                     f'{", ".join(unused)}')
    for part, n in sorted(dropped.items()):
        lines.append(f'  dropped: {part}: {n} tensors')
    print_log('\n'.join(lines), logger=logger)
    return dict(loaded=loaded, resized=resized, initialised=added, unused=unused,
                dropped=dict(dropped))
