"""The vision encoder (RILS / CLIP / MAE) <-> timm's ``VisionTransformer``.

Both are pre-norm ViTs with a class token, positions for the class token and
the patches in one ``(1, 1 + N, C)`` table, exact GELU, LayerNorm eps 1e-6 and
the final norm on every token (the encoder output ``f``, Eq. 1). The map is
one name per tensor, except the attention bias:

- ours (``RILSViT``, ``qv_bias=True``): ``q_bias`` and ``v_bias``, no key bias;
  timm: one ``qkv.bias`` -> ``[q_bias, 0, v_bias]``;
- back from timm the key third is dropped, which is exact: a key bias adds
  ``q . b_k``, the same value, to every logit of a query's softmax row.

timm builds the matching model as
``timm.create_model('vit_base_patch16_224', num_classes=0, global_pool='avg',
fc_norm=False)``: ``forward_features`` = all tokens of ``f``; ``forward`` =
the mean of the patch tokens, the vector theta projects (Eq. 4).
"""
import re
from collections import OrderedDict
from typing import Dict, Optional

import torch

__all__ = ['to_timm', 'from_timm', 'timm_arch', 'TIMM_ARCHS', 'timm_model_name']

_TOP = [
    ('cls_token', 'cls_token'), ('pos_embed', 'pos_embed'),
    ('patch_embed.projection.weight', 'patch_embed.proj.weight'),
    ('patch_embed.projection.bias', 'patch_embed.proj.bias'),
    ('ln1.weight', 'norm.weight'), ('ln1.bias', 'norm.bias'),
]
_BLOCK = [
    ('ln1.weight', 'norm1.weight'), ('ln1.bias', 'norm1.bias'),
    ('attn.qkv.weight', 'attn.qkv.weight'),
    ('attn.proj.weight', 'attn.proj.weight'), ('attn.proj.bias', 'attn.proj.bias'),
    ('ln2.weight', 'norm2.weight'), ('ln2.bias', 'norm2.bias'),
    ('ffn.layers.0.0.weight', 'mlp.fc1.weight'), ('ffn.layers.0.0.bias', 'mlp.fc1.bias'),
    ('ffn.layers.1.weight', 'mlp.fc2.weight'), ('ffn.layers.1.bias', 'mlp.fc2.bias'),
]
#: timm's classifier and pooled-norm tensors: not part of the encoder
_TIMM_HEAD = ('head.', 'fc_norm.', 'head_drop.')

#: registered timm names -> (width, depth, heads, mlp width, patch, image size);
#: all: class token, qkv bias, no pre-norm, LayerNorm eps 1e-6, exact GELU
TIMM_ARCHS = {
    'vit_base_patch16_224': (768, 12, 12, 3072, 16, 224),
    'vit_large_patch16_224': (1024, 24, 16, 4096, 16, 224),
    'vit_small_patch16_224': (384, 12, 6, 1536, 16, 224),
    'vit_tiny_patch16_224': (192, 12, 3, 768, 16, 224),
    'vit_base_patch32_224': (768, 12, 12, 3072, 32, 224),
    'test_vit': (64, 6, 2, 192, 16, 224),
}


def _depth(sd: Dict[str, torch.Tensor], prefix: str) -> int:
    ids = {int(m.group(1)) for k in sd
           for m in [re.match(re.escape(prefix) + r'(\d+)\.', k)] if m}
    return max(ids) + 1 if ids else 0


def _require(sd, keys, what):
    missing = [k for k in keys if k not in sd]
    if missing:
        raise KeyError(f'not {what}: missing {missing[:6]}'
                       f'{" ..." if len(missing) > 6 else ""}')


def to_timm(sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """An encoder state dict (keys as inside ``RILSViT`` / ``MAEViT``, e.g.
    from :func:`extract_backbone`) -> timm ``VisionTransformer``'s."""
    _require(sd, [a for a, _ in _TOP], 'a ViT encoder state dict (RILSViT / MAEViT keys)')
    out = OrderedDict((b, sd[a]) for a, b in _TOP)
    depth = _depth(sd, 'layers.')
    used = {a for a, _ in _TOP}
    for i in range(depth):
        src, dst = f'layers.{i}.', f'blocks.{i}.'
        _require(sd, [src + a for a, _ in _BLOCK], f'a complete block {i}')
        for a, b in _BLOCK:
            out[dst + b] = sd[src + a]
        used.update(src + a for a, _ in _BLOCK)
        if src + 'attn.qkv.q_bias' in sd:
            q, v = sd[src + 'attn.qkv.q_bias'], sd[src + 'attn.qkv.v_bias']
            out[dst + 'attn.qkv.bias'] = torch.cat((q, torch.zeros_like(q), v))
            used.update({src + 'attn.qkv.q_bias', src + 'attn.qkv.v_bias'})
        else:
            _require(sd, [src + 'attn.qkv.bias'], f'block {i} with a q/v or qkv bias')
            out[dst + 'attn.qkv.bias'] = sd[src + 'attn.qkv.bias']
            used.add(src + 'attn.qkv.bias')
    left = sorted(set(sd) - used)
    if left:
        raise KeyError(f'encoder tensors timm\'s VisionTransformer has no place for: '
                       f'{left[:6]} (a dense / windowed fine-tuned backbone, or not a '
                       'plain ViT encoder?)')
    return out


def from_timm(sd: Dict[str, torch.Tensor], qv_bias: bool = True
              ) -> Dict[str, torch.Tensor]:
    """timm ``VisionTransformer``'s state dict -> ours (``RILSViT`` keys; with
    ``qv_bias=False`` the fused ``qkv.bias`` of ``MAEViT``). The classifier
    (``head.*``) is left out; a pooled norm (``fc_norm``, timm's avg-pool
    models) has no place in our encoder and is refused."""
    if 'fc_norm.weight' in sd and 'norm.weight' not in sd:
        raise KeyError('timm checkpoint normalises after pooling (fc_norm, no norm): '
                       'our encoder normalises every token before pooling; not '
                       'convertible')
    _require(sd, [b for _, b in _TOP], 'a timm VisionTransformer state dict with a '
             'class token and a final norm')
    out = OrderedDict((a, sd[b]) for a, b in _TOP)
    used = {b for _, b in _TOP}
    for i in range(_depth(sd, 'blocks.')):
        src, dst = f'blocks.{i}.', f'layers.{i}.'
        _require(sd, [src + b for _, b in _BLOCK] + [src + 'attn.qkv.bias'],
                 f'a timm block {i} with a qkv bias')
        for a, b in _BLOCK:
            out[dst + a] = sd[src + b]
        bias = sd[src + 'attn.qkv.bias']
        if qv_bias:  # the key bias cancels in softmax(q k^T): dropping it is exact
            q, _, v = bias.chunk(3)
            out[dst + 'attn.qkv.q_bias'], out[dst + 'attn.qkv.v_bias'] = q, v
        else:
            out[dst + 'attn.qkv.bias'] = bias
        used.update(src + b for _, b in _BLOCK)
        used.add(src + 'attn.qkv.bias')
    left = sorted(k for k in set(sd) - used if not k.startswith(_TIMM_HEAD))
    if left:
        raise KeyError(f'timm tensors our encoder has no place for: {left[:6]} '
                       '(layer scale, register tokens, q/k norm or a pre-norm are not '
                       'part of RILSViT)')
    return out


def timm_arch(sd: Dict[str, torch.Tensor], num_heads: int) -> tuple:
    """(width, depth, heads, mlp width, patch, image size) of our encoder's
    state dict (square images)."""
    w = sd['patch_embed.projection.weight']
    n = sd['pos_embed'].shape[1] - 1
    side = int(round(n ** 0.5))
    return (w.shape[0], _depth(sd, 'layers.'), num_heads,
            sd['layers.0.ffn.layers.0.0.weight'].shape[0], w.shape[-1], side * w.shape[-1])


def timm_model_name(sd: Dict[str, torch.Tensor], num_heads: int) -> Optional[str]:
    """The registered timm model with exactly this encoder's architecture,
    or None."""
    arch = timm_arch(sd, num_heads)
    for name, a in TIMM_ARCHS.items():
        if a == arch:
            return name
    return None
