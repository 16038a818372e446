"""The image-text model <-> a local transformers ``CLIPModel`` folder.

The text tower maps one to one (open_clip's ``TextTransformer`` and
transformers' ``CLIPTextTransformer`` are the same network; ``hidden_act``
per tower, so QuickGELU in the text tower and exact GELU in the vision tower
are both kept). The vision tower does not: ``CLIPVisionTransformer`` always
applies a LayerNorm to the embeddings (``pre_layrnorm``) and pools the class
token, while RILSViT (Eq. 1) has no pre-norm and theta reads the mean of the
normalised patch tokens (Eq. 4). The export writes the *same function* in
CLIPModel's layout, with ``E`` extra channels (a multiple of the heads, at
least 4) and one extra encoder layer:

1. **Scale instead of pre-norm.** Every LayerNorm of the vision tower gets
   ``eps' = LAMBDA**2 * eps * C / (C + E)``. On the embeddings (O(1) values)
   that eps dominates the variance, so ``pre_layrnorm`` is linear to within
   ``var / (2 eps') < 1e-8`` and scales them by ``LAMBDA``; the residual stream
   then runs at scale ``LAMBDA``, where the same eps is exactly ours (every
   write to the stream is multiplied by ``LAMBDA``). The stream is kept
   mean-free over the channels (each write's rows are centred, which a
   LayerNorm cannot see), so the ``E`` zero channels change nothing but the
   channel count, absorbed in the LayerNorm weights.
2. **Mean pooling in the class token.** The extra last layer's first
   LayerNorm is our final norm; its attention gives every query uniform
   weights over the patch tokens: the class token carries a tiny marker
   (``MU`` in one channel, ``-MU`` in another, a second-order change to its
   LayerNorms) whose key makes the class token's logit ``<= -300``. Its values
   are the normalised patches times ``BETA``, so the class token becomes
   ``BETA * mean_k f^k`` plus its own residual (``1e-7`` of it), plus one
   channel keeping the stream mean-free; ``post_layernorm`` and
   ``visual_projection = theta`` follow. ``get_image_features`` is then ``z^I``
   times a positive factor per image: normalised embeddings and logits equal.

Run it in fp32 or bf16: the constants do not fit in fp16.
"""
import json
import math
import os
import os.path as osp
import re
from collections import OrderedDict
from typing import Dict, Optional

import torch

from .files import save_state_dict_file

__all__ = ['to_hf_clip', 'from_hf_clip', 'from_hf_clip_text', 'hf_clip_config',
           'write_hf_clip_dir', 'write_clip_tokenizer', 'HF_MARK']

#: key of the config.json entry that describes the construction (used by the import)
HF_MARK = 'rils_mm'
LAMBDA = 1e7   # residual-stream scale of the vision tower
BETA = 1e7 * LAMBDA  # weight of the pooled patch mean against the class token's residual
MU = 1e-4      # class-token marker (our units)
Q_LOGIT = 3e8  # query bias * attention scale: the class token's logit is -Q_LOGIT * key

_V, _T = 'vision_model.', 'text_model.'
_BLOCK_OC = [  # open_clip ResidualAttentionBlock -> CLIPEncoderLayer (text tower)
    ('ln_1', 'layer_norm1'), ('ln_2', 'layer_norm2'),
    ('mlp.c_fc', 'mlp.fc1'), ('mlp.c_proj', 'mlp.fc2'), ('attn.out_proj', 'self_attn.out_proj'),
]


def _depth(sd, pattern):
    ids = {int(m.group(1)) for k in sd for m in [re.match(pattern, k)] if m}
    return max(ids) + 1 if ids else 0


def _extra(heads: int) -> int:
    return heads * math.ceil(4 / heads)


def _center(t: torch.Tensor) -> torch.Tensor:
    """Rows (dim 0) minus their mean: a write to the stream a LayerNorm cannot see."""
    return t - t.mean(0, keepdim=True)


def _arch(sd, vision_heads):
    C = sd['backbone.cls_token'].shape[-1]
    E = _extra(vision_heads)
    return C, E, C + E, C // vision_heads, (C + E) // vision_heads


def _vision_to_hf(sd, heads: int, eps: float) -> Dict[str, torch.Tensor]:
    f64 = {k: v.double() for k, v in sd.items() if k.startswith(('backbone.', 'head.'))}
    C, E, D, d, d2 = _arch(sd, heads)
    idx = torch.tensor([h * d2 + j for h in range(heads) for j in range(d)])
    e0, m1, m3 = C, C + 1, C + 2  # compensation, +marker, -marker (E >= 4: spare zeros)
    lam, s = LAMBDA, math.sqrt(C / D)
    eps2 = lam ** 2 * eps * C / D
    out = OrderedDict()
    conv = f64['backbone.patch_embed.projection.weight']
    w = torch.zeros((D, ) + conv.shape[1:], dtype=torch.float64)
    w[:C] = _center(conv)
    out[_V + 'embeddings.patch_embedding.weight'] = w
    pos = f64['backbone.pos_embed'][0].clone()
    pos[1:] += f64.get('backbone.patch_embed.projection.bias', torch.zeros(C, dtype=torch.float64))
    P = torch.zeros(pos.shape[0], D, dtype=torch.float64)
    P[:, :C] = _center(pos.t()).t()
    P[0, m1], P[0, m3] = MU, -MU  # the class token's marker
    out[_V + 'embeddings.position_embedding.weight'] = P
    cls = torch.zeros(D, dtype=torch.float64)
    cls[:C] = _center(f64['backbone.cls_token'].reshape(C, 1))[:, 0]
    out[_V + 'embeddings.class_embedding'] = cls
    pre = torch.zeros(D, dtype=torch.float64)
    pre[:C] = pre[m1] = pre[m3] = lam * math.sqrt(eps2)
    out[_V + 'pre_layrnorm.weight'], out[_V + 'pre_layrnorm.bias'] = pre, torch.zeros(D)

    def norm(name, wt, bs):
        a, b = torch.zeros(D, dtype=torch.float64), torch.zeros(D, dtype=torch.float64)
        a[:C], b[:C] = wt * s, bs
        out[name + '.weight'], out[name + '.bias'] = a, b
        return a, b

    def heads_in(name, W, b, scale=1.0):
        Wn, bn = torch.zeros(D, D, dtype=torch.float64), torch.zeros(D, dtype=torch.float64)
        Wn[idx, :C] = W * scale
        bn[idx] = b * scale
        out[name + '.weight'], out[name + '.bias'] = Wn, bn

    alpha = math.sqrt(d2 / d)  # transformers scales q by d2**-0.5, ours by d**-0.5
    L = _depth(sd, r'backbone\.layers\.(\d+)\.')
    inter = f64['backbone.layers.0.ffn.layers.0.0.weight'].shape[0]
    for i in range(L):
        src, dst = f'backbone.layers.{i}.', f'{_V}encoder.layers.{i}.'
        norm(dst + 'layer_norm1', f64[src + 'ln1.weight'], f64[src + 'ln1.bias'])
        norm(dst + 'layer_norm2', f64[src + 'ln2.weight'], f64[src + 'ln2.bias'])
        Wq, Wk, Wv = f64[src + 'attn.qkv.weight'].chunk(3)
        if src + 'attn.qkv.q_bias' in f64:
            bq, bv = f64[src + 'attn.qkv.q_bias'], f64[src + 'attn.qkv.v_bias']
            bk = torch.zeros_like(bq)
        else:
            bq, bk, bv = f64[src + 'attn.qkv.bias'].chunk(3)
        heads_in(dst + 'self_attn.q_proj', Wq, bq, alpha)
        heads_in(dst + 'self_attn.k_proj', Wk, bk)
        heads_in(dst + 'self_attn.v_proj', Wv, bv)
        Wo = torch.zeros(D, D, dtype=torch.float64)
        Wo[:C, idx] = lam * _center(f64[src + 'attn.proj.weight'])
        bo = torch.zeros(D, dtype=torch.float64)
        bo[:C] = lam * _center(f64[src + 'attn.proj.bias'][:, None])[:, 0]
        out[dst + 'self_attn.out_proj.weight'], out[dst + 'self_attn.out_proj.bias'] = Wo, bo
        W1 = torch.zeros(inter, D, dtype=torch.float64)
        W1[:, :C] = f64[src + 'ffn.layers.0.0.weight']
        out[dst + 'mlp.fc1.weight'] = W1
        out[dst + 'mlp.fc1.bias'] = f64[src + 'ffn.layers.0.0.bias']
        W2 = torch.zeros(D, inter, dtype=torch.float64)
        W2[:C] = lam * _center(f64[src + 'ffn.layers.1.weight'])
        b2 = torch.zeros(D, dtype=torch.float64)
        b2[:C] = lam * _center(f64[src + 'ffn.layers.1.bias'][:, None])[:, 0]
        out[dst + 'mlp.fc2.weight'], out[dst + 'mlp.fc2.bias'] = W2, b2
    # the pooling layer: uniform attention over the patches, values = final norm
    dst = f'{_V}encoder.layers.{L}.'
    a, _ = norm(dst + 'layer_norm1', f64['backbone.ln1.weight'], f64['backbone.ln1.bias'])
    a[m1] = a[m3] = 1.0
    one = torch.ones(C, dtype=torch.float64)
    norm(dst + 'layer_norm2', one, 0 * one)
    Wq, bq = torch.zeros(D, D, dtype=torch.float64), torch.zeros(D, dtype=torch.float64)
    Wk, bk = torch.zeros(D, D, dtype=torch.float64), torch.zeros(D, dtype=torch.float64)
    for h in range(heads):
        bq[h * d2 + d] = -Q_LOGIT * math.sqrt(d2)
        # the marker pair: +-MU on the class token, on a patch two equal roundings that cancel
        Wk[h * d2 + d, m1], Wk[h * d2 + d, m3] = 1.0, -1.0
    out[dst + 'self_attn.q_proj.weight'], out[dst + 'self_attn.q_proj.bias'] = Wq, bq
    out[dst + 'self_attn.k_proj.weight'], out[dst + 'self_attn.k_proj.bias'] = Wk, bk
    heads_in(dst + 'self_attn.v_proj', torch.eye(C, dtype=torch.float64),
             torch.zeros(C, dtype=torch.float64), BETA)
    Wo = torch.zeros(D, D, dtype=torch.float64)
    Wo[torch.arange(C), idx] = 1.0
    Wo[e0, idx] = -1.0  # keeps the class token mean-free for post_layernorm
    out[dst + 'self_attn.out_proj.weight'] = Wo
    out[dst + 'self_attn.out_proj.bias'] = torch.zeros(D)
    out[dst + 'mlp.fc1.weight'] = torch.zeros(inter, D)
    out[dst + 'mlp.fc1.bias'] = torch.zeros(inter)
    out[dst + 'mlp.fc2.weight'], out[dst + 'mlp.fc2.bias'] = torch.zeros(D, inter), torch.zeros(D)
    post = torch.zeros(D)
    post[:C] = 1.0
    out[_V + 'post_layernorm.weight'], out[_V + 'post_layernorm.bias'] = post, torch.zeros(D)
    proj = torch.zeros(f64['head.image_projection.weight'].shape[0], D, dtype=torch.float64)
    proj[:, :C] = f64['head.image_projection.weight']
    out['visual_projection.weight'] = proj
    return OrderedDict((k, v.float()) for k, v in out.items())


def _text_to_hf(sd) -> Dict[str, torch.Tensor]:
    p = 'text_encoder.transformer.'
    out = OrderedDict()
    out[_T + 'embeddings.token_embedding.weight'] = sd[p + 'token_embedding.weight']
    out[_T + 'embeddings.position_embedding.weight'] = sd[p + 'positional_embedding']
    for i in range(_depth(sd, re.escape(p) + r'transformer\.resblocks\.(\d+)\.')):
        src, dst = f'{p}transformer.resblocks.{i}.', f'{_T}encoder.layers.{i}.'
        for a, b in _BLOCK_OC:
            for t in ('weight', 'bias'):
                out[f'{dst}{b}.{t}'] = sd[f'{src}{a}.{t}']
        for name, w, b in zip(('q', 'k', 'v'), sd[src + 'attn.in_proj_weight'].chunk(3),
                              sd[src + 'attn.in_proj_bias'].chunk(3)):
            out[f'{dst}self_attn.{name}_proj.weight'] = w
            out[f'{dst}self_attn.{name}_proj.bias'] = b
    out[_T + 'final_layer_norm.weight'] = sd[p + 'ln_final.weight']
    out[_T + 'final_layer_norm.bias'] = sd[p + 'ln_final.bias']
    out['text_projection.weight'] = sd['head.text_projection.weight']
    return out


def hf_clip_config(model) -> dict:
    """The ``CLIPConfig`` arguments for our built image-text ``model``."""
    bb, text = model.backbone, model.text_encoder.transformer
    H = bb.layers[0].attn.num_heads
    C = bb.embed_dims
    E = _extra(H)
    inter = bb.layers[0].ffn.layers[0][0].out_features
    patch = bb.patch_embed.projection.kernel_size[0]
    eps = bb.ln1.eps
    block = text.transformer.resblocks[0]
    vocab = text.token_embedding.num_embeddings
    text_act = 'quick_gelu' if model.text_encoder.act_layer == 'QuickGELU' else 'gelu'
    return dict(
        projection_dim=model.head.image_projection.out_features,
        logit_scale_init_value=math.log(1 / 0.07),
        text_config=dict(
            vocab_size=vocab, hidden_size=text.width,
            intermediate_size=block.mlp.c_fc.out_features,
            num_hidden_layers=len(text.transformer.resblocks),
            num_attention_heads=text.heads, max_position_embeddings=text.context_length,
            hidden_act=text_act, layer_norm_eps=text.ln_final.eps,
            bos_token_id=vocab - 2, eos_token_id=vocab - 1, pad_token_id=0),
        vision_config=dict(
            hidden_size=C + E, intermediate_size=inter,
            num_hidden_layers=len(bb.layers) + 1, num_attention_heads=H,
            image_size=bb.patch_resolution[0] * patch, patch_size=patch, num_channels=3,
            hidden_act='gelu', layer_norm_eps=LAMBDA ** 2 * eps * C / (C + E)),
        **{HF_MARK: dict(
            construction='mean-pooled RILSViT in CLIPVisionTransformer (see '
                         'rils_mm.utils.export.hf_clip)',
            vision_width=C, extra_channels=E, vision_layers=len(bb.layers),
            vision_eps=eps, stream_scale=LAMBDA, beta=BETA, marker=MU,
            text_activation=model.text_encoder.act_layer, vision_activation='GELU',
            precision='fp32 or bf16 (not fp16)')})


def to_hf_clip(sd: Dict[str, torch.Tensor], model) -> Dict[str, torch.Tensor]:
    """Our image-text state dict -> ``CLIPModel``'s (``model``: the built
    architecture, for the head count and LayerNorm eps)."""
    need = ['backbone.cls_token', 'head.image_projection.weight',
            'head.text_projection.weight', 'head.logit_scale',
            'text_encoder.transformer.token_embedding.weight']
    missing = [k for k in need if k not in sd]
    if missing:
        raise KeyError(f'not an image-text checkpoint of this project: missing {missing}')
    bb = model.backbone
    out = _vision_to_hf(sd, bb.layers[0].attn.num_heads, bb.ln1.eps)
    out.update(_text_to_hf(sd))
    # ours clamps 1/sigma at logit_scale_max where it is used; transformers does not
    cap = math.log(model.head.logit_scale_max)
    out['logit_scale'] = sd['head.logit_scale'].reshape(()).clamp(max=cap)
    return out


def _text_from_hf(sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    out = OrderedDict()
    p = 'text_encoder.transformer.'
    out[p + 'token_embedding.weight'] = sd[_T + 'embeddings.token_embedding.weight']
    out[p + 'positional_embedding'] = sd[_T + 'embeddings.position_embedding.weight']
    for i in range(_depth(sd, re.escape(_T) + r'encoder\.layers\.(\d+)\.')):
        src, dst = f'{_T}encoder.layers.{i}.', f'{p}transformer.resblocks.{i}.'
        for a, b in _BLOCK_OC:
            for t in ('weight', 'bias'):
                out[f'{dst}{a}.{t}'] = sd[f'{src}{b}.{t}']
        out[dst + 'attn.in_proj_weight'] = torch.cat(
            [sd[f'{src}self_attn.{n}_proj.weight'] for n in 'qkv'])
        out[dst + 'attn.in_proj_bias'] = torch.cat(
            [sd[f'{src}self_attn.{n}_proj.bias'] for n in 'qkv'])
    out[p + 'ln_final.weight'] = sd[_T + 'final_layer_norm.weight']
    out[p + 'ln_final.bias'] = sd[_T + 'final_layer_norm.bias']
    out['head.text_projection.weight'] = sd['text_projection.weight']
    out['head.logit_scale'] = sd['logit_scale'].reshape(())
    return out


def _vision_from_hf(sd, config: dict, qv_bias: bool) -> Dict[str, torch.Tensor]:
    mark, vc = config[HF_MARK], config['vision_config']
    C, E, L = mark['vision_width'], mark['extra_channels'], mark['vision_layers']
    H = vc['num_attention_heads']
    D, d = C + E, C // H
    d2 = D // H
    idx = torch.tensor([h * d2 + j for h in range(H) for j in range(d)])
    lam, s, alpha = mark['stream_scale'], math.sqrt(C / D), math.sqrt(d2 / d)
    g = {k: v.double() for k, v in sd.items() if k.startswith((_V, 'visual_projection'))}
    out = OrderedDict()
    out['backbone.cls_token'] = g[_V + 'embeddings.class_embedding'][:C].reshape(1, 1, C)
    out['backbone.pos_embed'] = g[_V + 'embeddings.position_embedding.weight'][None, :, :C]
    out['backbone.patch_embed.projection.weight'] = g[_V + 'embeddings.patch_embedding.weight'][:C]
    out['backbone.patch_embed.projection.bias'] = torch.zeros(C, dtype=torch.float64)
    for i in range(L):
        src, dst = f'{_V}encoder.layers.{i}.', f'backbone.layers.{i}.'
        for a, b in (('ln1', 'layer_norm1'), ('ln2', 'layer_norm2')):
            out[f'{dst}{a}.weight'] = g[f'{src}{b}.weight'][:C] / s
            out[f'{dst}{a}.bias'] = g[f'{src}{b}.bias'][:C]
        at = src + 'self_attn.'
        out[dst + 'attn.qkv.weight'] = torch.cat((
            g[at + 'q_proj.weight'][idx, :C] / alpha, g[at + 'k_proj.weight'][idx, :C],
            g[at + 'v_proj.weight'][idx, :C]))
        bq, bk, bv = (g[at + 'q_proj.bias'][idx] / alpha, g[at + 'k_proj.bias'][idx],
                      g[at + 'v_proj.bias'][idx])
        if qv_bias:  # the key bias cancels in the softmax
            out[dst + 'attn.qkv.q_bias'], out[dst + 'attn.qkv.v_bias'] = bq, bv
        else:
            out[dst + 'attn.qkv.bias'] = torch.cat((bq, bk, bv))
        out[dst + 'attn.proj.weight'] = g[at + 'out_proj.weight'][:C][:, idx] / lam
        out[dst + 'attn.proj.bias'] = g[at + 'out_proj.bias'][:C] / lam
        out[dst + 'ffn.layers.0.0.weight'] = g[src + 'mlp.fc1.weight'][:, :C]
        out[dst + 'ffn.layers.0.0.bias'] = g[src + 'mlp.fc1.bias']
        out[dst + 'ffn.layers.1.weight'] = g[src + 'mlp.fc2.weight'][:C] / lam
        out[dst + 'ffn.layers.1.bias'] = g[src + 'mlp.fc2.bias'][:C] / lam
    pool = f'{_V}encoder.layers.{L}.layer_norm1.'
    out['backbone.ln1.weight'] = g[pool + 'weight'][:C] / s
    out['backbone.ln1.bias'] = g[pool + 'bias'][:C]
    out['head.image_projection.weight'] = g['visual_projection.weight'][:, :C]
    return OrderedDict((k, v.float()) for k, v in out.items())


def from_hf_clip(sd: Dict[str, torch.Tensor], config: dict,
                 qv_bias: bool = True) -> Dict[str, torch.Tensor]:
    """A ``CLIPModel`` state dict (and its config.json as a dict) -> ours.

    The vision tower comes back only from a folder :func:`write_hf_clip_dir`
    wrote (``config[HF_MARK]``; the same function, not the same tensors: row
    means the export removed stay removed): a ``CLIPVisionTransformer`` with
    its pre-norm and class-token pooling is no RILSViT. The text tower, phi
    and the logit scale of any CLIPModel: :func:`from_hf_clip_text`."""
    if not config.get(HF_MARK):
        raise KeyError('the vision tower of this CLIPModel was not written by rils-mm '
                       f'(no "{HF_MARK}" entry in its config.json): its pre-norm and '
                       'class-token pooling have no RILSViT equivalent; the text tower, '
                       'phi and the logit scale convert with from_hf_clip_text')
    out = _text_from_hf(sd)
    out.update(_vision_from_hf(sd, config, qv_bias))
    return out


#: the text tower, phi and the logit scale of any CLIPModel
from_hf_clip_text = _text_from_hf


def write_clip_tokenizer(out_dir: str, context_length: int = 77) -> None:
    """transformers ``CLIPTokenizer`` files for open_clip's BPE (the same
    vocabulary, merges and special-token ids; padding with id 0, as
    ``open_clip.tokenize``)."""
    import gzip

    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    with gzip.open(default_bpe(), 'rt', encoding='utf-8') as f:
        lines = f.read().split('\n')
    merges = lines[1:49152 - 256 - 2 + 1]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + '</w>' for v in vocab]
    vocab += [''.join(m.split()) for m in merges]
    vocab += ['<|startoftext|>', '<|endoftext|>']
    os.makedirs(out_dir, exist_ok=True)
    with open(osp.join(out_dir, 'vocab.json'), 'w', encoding='utf-8') as f:
        json.dump({t: i for i, t in enumerate(vocab)}, f, ensure_ascii=False)
    with open(osp.join(out_dir, 'merges.txt'), 'w', encoding='utf-8') as f:
        f.write('#version: 0.2\n' + '\n'.join(merges) + '\n')
    special = dict(bos_token='<|startoftext|>', eos_token='<|endoftext|>',
                   unk_token='<|endoftext|>', pad_token='!')
    with open(osp.join(out_dir, 'special_tokens_map.json'), 'w', encoding='utf-8') as f:
        json.dump(special, f, indent=2)
    with open(osp.join(out_dir, 'tokenizer_config.json'), 'w', encoding='utf-8') as f:
        json.dump(dict(special, tokenizer_class='CLIPTokenizer',
                       model_max_length=context_length, do_lower_case=True), f, indent=2)


def write_hf_clip_dir(sd: Dict[str, torch.Tensor], model, out_dir: str,
                      dtype: str = 'fp32', meta: Optional[dict] = None) -> dict:
    """Write a folder ``CLIPModel.from_pretrained`` / ``CLIPProcessor`` load:
    ``config.json``, ``model.safetensors``, the tokenizer files and
    ``preprocessor_config.json``. Returns the config (a dict)."""
    from transformers import CLIPConfig
    args = hf_clip_config(model)
    config = CLIPConfig(**args)
    config.architectures = ['CLIPModel']
    os.makedirs(out_dir, exist_ok=True)
    config.save_pretrained(out_dir)
    save_state_dict_file(to_hf_clip(sd, model), osp.join(out_dir, 'model.safetensors'),
                         meta=dict(meta or {}, layout='hf_clip'), dtype=dtype)
    write_clip_tokenizer(out_dir, args['text_config']['max_position_embeddings'])
    size = args['vision_config']['image_size']
    with open(osp.join(out_dir, 'preprocessor_config.json'), 'w', encoding='utf-8') as f:
        json.dump(dict(image_processor_type='CLIPImageProcessor', do_resize=True,
                       size=dict(shortest_edge=size), resample=3, do_center_crop=True,
                       crop_size=dict(height=size, width=size), do_rescale=True,
                       rescale_factor=1 / 255, do_normalize=True, do_convert_rgb=True,
                       image_mean=[0.48145466, 0.4578275, 0.40821073],
                       image_std=[0.26862954, 0.26130258, 0.27577711]), f, indent=2)
    with open(osp.join(out_dir, 'config.json'), encoding='utf-8') as f:
        return json.load(f)
