"""The image-text model <-> open_clip's ``CLIP`` (state dict and model config).

Two forms of the open_clip model:

* **timm vision tower** (:func:`open_clip_config` picks it when the encoder's
  architecture is a registered timm model, e.g. ``vit_base_patch16_224``):
  ``vision_cfg.timm_model_name``; timm's ViT always uses exact GELU, whatever
  ``quick_gelu`` says, so the text tower can keep QuickGELU: both towers are
  exact. The trunk's tensors are :func:`rils_mm.utils.export.timm.to_timm`'s.
* **open_clip's own VisionTransformer** (any other size): open_clip 3.3.0 has
  one ``quick_gelu`` flag for both towers (``act_kwargs`` only passes
  arguments to the one class), so it cannot build exact GELU in the vision
  tower next to QuickGELU in the text tower. The written config then follows
  the text tower and says in its ``rils_mm`` block that the vision activation
  differs; a model trained with ``CLIPTextEncoder(act_layer='GELU')`` is exact
  (``quick_gelu: false``). :func:`build_open_clip_model` builds the exact
  mixed model inside a process that imports rils_mm.

The native state-dict layout differs from ours in three places, each exact:

- the patch embedding has a bias in mmpretrain's ViT, not in open_clip
  (``conv1``): the bias is folded into the patch rows of the positional
  embedding (``conv(x) + b + pos = conv(x) + (pos + b)``);
- our q/v-only attention bias becomes ``in_proj_bias = [q_bias, 0, v_bias]``;
  a non-zero key bias coming back from open_clip is dropped, which is exact
  because it adds the same constant to every logit of a query's softmax row;
- theta and phi are ``nn.Linear`` (``y = W x``); open_clip keeps ``proj`` /
  ``text_projection`` as ``W^T`` (``y = x @ P``).
"""
import json
import os
import os.path as osp
import re
from collections import OrderedDict
from typing import Dict, Optional

import torch

from .files import save_state_dict_file
from .timm import timm_model_name, to_timm

__all__ = [
    'to_open_clip', 'from_open_clip', 'open_clip_model_cfg', 'build_open_clip_model',
    'open_clip_config', 'to_open_clip_state_dict', 'write_open_clip_dir',
    'OPEN_CLIP_CONFIG', 'OPEN_CLIP_WEIGHTS'
]

#: file names open_clip's ``local-dir:`` / ``hf-hub:`` loader looks for
OPEN_CLIP_CONFIG = 'open_clip_config.json'
OPEN_CLIP_WEIGHTS = 'open_clip_model.safetensors'
#: CLIP's image statistics (0-1 scale), as every method here normalises
_MEAN = (0.48145466, 0.4578275, 0.40821073)
_STD = (0.26862954, 0.26130258, 0.27577711)

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


def _text_is_quick_gelu(model) -> bool:
    from open_clip.transformer import QuickGELU
    block = model.text_encoder.transformer.transformer.resblocks[0]
    return isinstance(block.mlp.gelu, QuickGELU)


def _text_cfg(model) -> dict:
    text = model.text_encoder.transformer
    block = text.transformer.resblocks[0]
    return dict(
        context_length=text.context_length,
        vocab_size=text.token_embedding.num_embeddings, width=text.width,
        heads=text.heads, layers=len(text.transformer.resblocks),
        mlp_ratio=block.mlp.c_fc.out_features / text.width,
        norm_kwargs=dict(eps=text.ln_final.eps))


def open_clip_model_cfg(model) -> dict:
    """open_clip ``CLIP(**kwargs)`` arguments with open_clip's own vision
    tower, matching one of our image-text models (read off the built modules,
    so any config of RILSViT + CLIPTextEncoder + contrastive head maps).

    ``quick_gelu`` is set from the text tower; the vision tower of
    mmpretrain's ViT always uses exact GELU, which
    :func:`build_open_clip_model` restores if the two differ.
    """
    bb = model.backbone
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
    return dict(embed_dim=model.head.image_projection.out_features,
                vision_cfg=vision_cfg, text_cfg=_text_cfg(model),
                quick_gelu=_text_is_quick_gelu(model))


def build_open_clip_model(model):
    """An open_clip ``CLIP`` (own vision tower) with the architecture of our
    built ``model``, exact GELU in the vision tower."""
    import torch.nn as nn
    from open_clip.model import CLIP
    oc = CLIP(**open_clip_model_cfg(model))
    for block in oc.visual.transformer.resblocks:  # mmpretrain's ViT: exact GELU
        block.mlp.gelu = nn.GELU()
    return oc


def _timm_name(model) -> Optional[str]:
    bb = model.backbone
    if abs(bb.ln1.eps - 1e-6) > 1e-12 or getattr(bb, 'dense', False):
        return None
    sd = {k: v for k, v in bb.state_dict().items()}
    return timm_model_name(sd, bb.layers[0].attn.num_heads)


def open_clip_config(model, tower: str = 'auto') -> dict:
    """The ``open_clip_config.json`` for our built image-text ``model``:
    ``model_cfg`` (the schema of open_clip's ``model_configs/*.json``),
    ``preprocess_cfg``, and a ``rils_mm`` block saying whether open_clip
    reproduces the model exactly and why.

    ``tower``: ``'timm'`` (a timm trunk; needs a registered timm architecture),
    ``'native'`` (open_clip's own ViT) or ``'auto'`` (timm where it exists).
    """
    name = _timm_name(model)
    if tower == 'timm' and name is None:
        raise ValueError('the vision encoder is no registered timm architecture '
                         '(see rils_mm.utils.export.timm.TIMM_ARCHS); use tower="native"')
    quick = _text_is_quick_gelu(model)
    text_act = 'QuickGELU' if quick else 'GELU'
    if tower != 'native' and name is not None:
        image_size = model.backbone.patch_resolution[0] * \
            model.backbone.patch_embed.projection.kernel_size[0]
        vision_cfg = dict(timm_model_name=name, timm_model_pretrained=False,
                          timm_pool='avg', timm_proj='linear', timm_proj_bias=False,
                          image_size=image_size)
        model_cfg = dict(embed_dim=model.head.image_projection.out_features,
                         quick_gelu=quick, vision_cfg=vision_cfg, text_cfg=_text_cfg(model))
        exact, note = True, (
            f'vision tower: timm {name} (exact GELU, as RILSViT); text tower: {text_act} '
            f'(quick_gelu={str(quick).lower()}); timm ignores quick_gelu, so both match')
    else:
        model_cfg = open_clip_model_cfg(model)
        exact = not quick
        note = ('both towers exact GELU (quick_gelu=false)' if exact else
                'open_clip 3.3.0 has one quick_gelu flag for both towers: this config '
                'builds QuickGELU in the vision tower too, where RILSViT uses exact GELU, '
                'so image embeddings differ. Exact: rils_mm.utils.export.open_clip.'
                'build_open_clip_model, a timm-sized encoder (timm tower), or a text '
                "tower trained with act_layer='GELU'")
    size = model_cfg['vision_cfg']['image_size']
    return dict(
        model_cfg=model_cfg,
        preprocess_cfg=dict(size=size, mean=list(_MEAN), std=list(_STD),
                            interpolation='bicubic', resize_mode='shortest'),
        rils_mm=dict(exact=exact, vision_activation='GELU', text_activation=text_act,
                     vision_tower='timm' if 'timm_model_name' in model_cfg['vision_cfg']
                     else 'open_clip', note=note))


def to_open_clip_state_dict(sd: Dict[str, torch.Tensor], config: dict
                            ) -> Dict[str, torch.Tensor]:
    """Our image-text state dict -> the open_clip model ``config`` describes
    (timm trunk or open_clip's own vision tower)."""
    if 'timm_model_name' not in config['model_cfg']['vision_cfg']:
        return to_open_clip(sd)
    out = to_open_clip(sd)
    out = OrderedDict((k, v) for k, v in out.items() if not k.startswith('visual.'))
    backbone = OrderedDict((k[len('backbone.'):], v) for k, v in sd.items()
                           if k.startswith('backbone.'))
    visual = OrderedDict(('visual.trunk.' + k, v) for k, v in to_timm(backbone).items())
    visual['visual.head.proj.weight'] = sd['head.image_projection.weight']
    visual.update(out)
    return visual


def write_open_clip_dir(sd: Dict[str, torch.Tensor], model, out_dir: str,
                        tower: str = 'auto', dtype: str = 'fp32',
                        meta: Optional[dict] = None) -> dict:
    """Write ``out_dir/open_clip_config.json`` and
    ``out_dir/open_clip_model.safetensors``, which
    ``open_clip.create_model('local-dir:' + out_dir)`` loads strictly in a
    process that never imports rils_mm. Returns the config."""
    config = open_clip_config(model, tower)
    os.makedirs(out_dir, exist_ok=True)
    with open(osp.join(out_dir, OPEN_CLIP_CONFIG), 'w', encoding='utf-8') as f:
        json.dump(config, f, indent=2)
    save_state_dict_file(to_open_clip_state_dict(sd, config),
                         osp.join(out_dir, OPEN_CLIP_WEIGHTS),
                         meta=dict(meta or {}, layout='open_clip'), dtype=dtype)
    return config
