"""Checkpoint key maps: our models <-> backbone-only and open_clip layouts.

Used by ``tools/model_converters/``. Three conversions:

* :func:`extract_backbone` - a pretraining checkpoint of any method of the
  project (``backbone.*`` keys, plus decoder / text tower / heads) -> the
  vision encoder's tensors alone, with their names inside the backbone module,
  the form mmpretrain / mmdet / mmseg ``init_cfg=dict(type='Pretrained',
  checkpoint=...)`` loads.
* :func:`to_open_clip` / :func:`from_open_clip` - the image-text model
  (V-Enc + theta, L-Enc + phi, logit scale) <-> open_clip's ``CLIP``
  state-dict layout. The two parameterisations differ in three places, each
  converted exactly:

  - the patch embedding has a bias in mmpretrain's ViT, not in open_clip
    (``conv1``): the bias is folded into the patch rows of the positional
    embedding (``conv(x) + b + pos = conv(x) + (pos + b)``);
  - our q/v-only attention bias becomes ``in_proj_bias = [q_bias, 0,
    v_bias]``; a non-zero key bias coming back from open_clip is dropped,
    which is exact because it adds the same constant to every logit of a
    query's softmax row;
  - theta and phi are ``nn.Linear`` (``y = W x``); open_clip keeps
    ``proj`` / ``text_projection`` as ``W^T`` (``y = x @ P``).
"""
import re
from collections import OrderedDict
from typing import Dict, Optional

import torch

__all__ = [
    'extract_backbone', 'to_open_clip', 'from_open_clip',
    'open_clip_model_cfg', 'build_open_clip_model', 'load_state_dict_file',
    'save_state_dict_file'
]

BACKBONE_PREFIX = 'backbone.'


def load_state_dict_file(path: str) -> Dict[str, torch.Tensor]:
    """The state dict stored in ``path``: a ``.safetensors`` file, or a
    torch checkpoint (``state_dict`` / ``model`` / ``module`` entry, or a bare
    state dict), loaded with ``weights_only=True``."""
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        return OrderedDict(load_file(path))
    ckpt = torch.load(path, map_location='cpu', weights_only=True)
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


def save_state_dict_file(state_dict: Dict[str, torch.Tensor], path: str,
                         meta: Optional[dict] = None) -> None:
    """Write ``state_dict`` as ``.safetensors`` (by extension) or as a torch
    checkpoint ``{'state_dict': ..., 'meta': ...}`` (``.pth``)."""
    sd = OrderedDict((k, v.detach().cpu().contiguous())
                     for k, v in state_dict.items())
    if path.endswith('.safetensors'):
        from safetensors.torch import save_file
        save_file(sd, path, metadata={k: str(v)
                                      for k, v in (meta or {}).items()})
    else:
        torch.save(dict(state_dict=sd, meta=dict(meta or {})), path)


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


# ours (inside a transformer block) <-> open_clip's ResidualAttentionBlock
_BLOCK_MAP = [
    ('ln1.weight', 'ln_1.weight'), ('ln1.bias', 'ln_1.bias'),
    ('attn.qkv.weight', 'attn.in_proj_weight'),
    ('attn.proj.weight', 'attn.out_proj.weight'),
    ('attn.proj.bias', 'attn.out_proj.bias'),
    ('ln2.weight', 'ln_2.weight'), ('ln2.bias', 'ln_2.bias'),
    ('ffn.layers.0.0.weight', 'mlp.c_fc.weight'),
    ('ffn.layers.0.0.bias', 'mlp.c_fc.bias'),
    ('ffn.layers.1.weight', 'mlp.c_proj.weight'),
    ('ffn.layers.1.bias', 'mlp.c_proj.bias'),
]
_TEXT_PREFIX = 'text_encoder.transformer.'


def _num_layers(sd, pattern: str) -> int:
    ids = {int(m.group(1)) for k in sd for m in [re.match(pattern, k)] if m}
    return max(ids) + 1 if ids else 0


def to_open_clip(sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Our image-text model's state dict -> open_clip ``CLIP``'s."""
    need = ['backbone.cls_token', 'backbone.pos_embed',
            'backbone.patch_embed.projection.weight', 'backbone.ln1.weight',
            'head.image_projection.weight', 'head.text_projection.weight',
            'head.logit_scale']
    missing = [k for k in need if k not in sd]
    if missing:
        raise KeyError(f'not an image-text checkpoint of this project: '
                       f'missing {missing}')
    out = OrderedDict()
    pos = sd['backbone.pos_embed'][0].clone()
    bias = sd.get('backbone.patch_embed.projection.bias')
    if bias is not None:
        pos[1:] += bias  # fold the patch-embedding bias into the positions
    out['visual.class_embedding'] = sd['backbone.cls_token'].reshape(-1)
    out['visual.positional_embedding'] = pos
    out['visual.conv1.weight'] = sd['backbone.patch_embed.projection.weight']
    for i in range(_num_layers(sd, r'backbone\.layers\.(\d+)\.')):
        src, dst = f'backbone.layers.{i}.', f'visual.transformer.resblocks.{i}.'
        for a, b in _BLOCK_MAP:
            out[dst + b] = sd[src + a]
        if src + 'attn.qkv.q_bias' in sd:
            q, v = sd[src + 'attn.qkv.q_bias'], sd[src + 'attn.qkv.v_bias']
            out[dst + 'attn.in_proj_bias'] = torch.cat(
                (q, torch.zeros_like(q), v))
        else:
            out[dst + 'attn.in_proj_bias'] = sd[src + 'attn.qkv.bias']
    out['visual.ln_post.weight'] = sd['backbone.ln1.weight']
    out['visual.ln_post.bias'] = sd['backbone.ln1.bias']
    out['visual.proj'] = sd['head.image_projection.weight'].t().contiguous()
    for k, v in sd.items():
        if k.startswith(_TEXT_PREFIX) and not k.endswith('attn_mask'):
            out[k[len(_TEXT_PREFIX):]] = v
    out['text_projection'] = sd['head.text_projection.weight'].t().contiguous()
    out['logit_scale'] = sd['head.logit_scale'].reshape(())
    return out


def from_open_clip(sd: Dict[str, torch.Tensor],
                   qv_bias: bool = True) -> Dict[str, torch.Tensor]:
    """open_clip ``CLIP``'s state dict -> ours (``backbone``, ``head``,
    ``text_encoder`` tensors; decoder weights are not part of open_clip).

    The patch-embedding bias is set to zero (open_clip has none)."""
    if 'visual.conv1.weight' not in sd or 'text_projection' not in sd:
        raise KeyError('not an open_clip CLIP state dict (needs visual.conv1'
                       '.weight and text_projection)')
    out = OrderedDict()
    width = sd['visual.class_embedding'].shape[0]
    out['backbone.cls_token'] = sd['visual.class_embedding'].reshape(
        1, 1, width)
    out['backbone.pos_embed'] = sd['visual.positional_embedding'][None]
    out['backbone.patch_embed.projection.weight'] = sd['visual.conv1.weight']
    out['backbone.patch_embed.projection.bias'] = torch.zeros(width)
    for i in range(_num_layers(sd, r'visual\.transformer\.resblocks\.(\d+)\.')):
        src, dst = f'visual.transformer.resblocks.{i}.', f'backbone.layers.{i}.'
        for a, b in _BLOCK_MAP:
            out[dst + a] = sd[src + b]
        q, _, v = sd[src + 'attn.in_proj_bias'].chunk(3)
        if qv_bias:
            # the key bias cancels in softmax(q k^T): dropping it is exact
            out[dst + 'attn.qkv.q_bias'] = q
            out[dst + 'attn.qkv.v_bias'] = v
        else:
            out[dst + 'attn.qkv.bias'] = sd[src + 'attn.in_proj_bias']
    out['backbone.ln1.weight'] = sd['visual.ln_post.weight']
    out['backbone.ln1.bias'] = sd['visual.ln_post.bias']
    out['head.image_projection.weight'] = sd['visual.proj'].t().contiguous()
    out['head.text_projection.weight'] = sd['text_projection'].t().contiguous()
    out['head.logit_scale'] = sd['logit_scale'].reshape(())
    for k, v in sd.items():
        if k.startswith(('token_embedding.', 'positional_embedding',
                         'transformer.', 'ln_final.')):
            out[_TEXT_PREFIX + k] = v
    return out


def open_clip_model_cfg(model) -> dict:
    """open_clip ``CLIP(**kwargs)`` arguments matching one of our image-text
    models (read off the built modules, so any config of RILSViT +
    CLIPTextEncoder + contrastive head maps).

    ``quick_gelu`` is set from the text tower; the vision tower of
    mmpretrain's ViT always uses exact GELU, which
    :func:`build_open_clip_model` restores if the two differ.
    """
    bb, text = model.backbone, model.text_encoder.transformer
    layer = bb.layers[0]
    width = bb.embed_dims
    patch = bb.patch_embed.projection.kernel_size[0]
    vision_cfg = dict(
        layers=len(bb.layers), width=width,
        head_width=width // layer.attn.num_heads,
        mlp_ratio=layer.ffn.layers[0][0].out_features / width,
        patch_size=patch, image_size=bb.patch_resolution[0] * patch,
        no_ln_pre=True, pool_type='avg', final_ln_after_pool=False,
        norm_kwargs=dict(eps=bb.ln1.eps))
    block = text.transformer.resblocks[0]
    twidth = text.width
    text_cfg = dict(
        context_length=text.context_length,
        vocab_size=text.token_embedding.num_embeddings, width=twidth,
        heads=text.heads, layers=len(text.transformer.resblocks),
        mlp_ratio=block.mlp.c_fc.out_features / twidth,
        norm_kwargs=dict(eps=text.ln_final.eps))
    from open_clip.transformer import QuickGELU
    quick = isinstance(block.mlp.gelu, QuickGELU)
    return dict(embed_dim=model.head.image_projection.out_features,
                vision_cfg=vision_cfg, text_cfg=text_cfg, quick_gelu=quick)


def build_open_clip_model(model):
    """An open_clip ``CLIP`` with the architecture of our built ``model``."""
    import torch.nn as nn
    from open_clip.model import CLIP
    oc = CLIP(**open_clip_model_cfg(model))
    for block in oc.visual.transformer.resblocks:  # mmpretrain's ViT: exact GELU
        block.mlp.gelu = nn.GELU()
    return oc
