"""The paper configs say what Sec. 3.3 says, inherit instead of copying, and their data
pipeline runs on real WebDataset shards."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

import rils_mm  # noqa: F401
from rils_mm.testing import generate_toy_corpus

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def cfg_of(name):
    return Config.fromfile(osp.join(ROOT, 'configs', 'rils', name))


def test_headline_config_is_section_3_3():
    cfg = cfg_of('rils_vitb16_l20m.py')
    opt = cfg.optim_wrapper
    assert opt.type == 'FiniteStepAmpOptimWrapper'  # AMP, non-finite steps skipped
    assert opt.optimizer == dict(type='AdamW', lr=5e-4, weight_decay=0.5, betas=(0.9, 0.98),
                                 eps=1e-8, fused=True)  # fused: same update, faster step
    assert cfg.train_dataloader.batch_size == 128  # x 32 GPUs = 4096
    assert cfg.auto_scale_lr.base_batch_size == 4096
    assert cfg.train_cfg.max_epochs == 25
    warmup, cosine = cfg.param_scheduler
    assert warmup.type == 'LinearLR' and (warmup.begin, warmup.end) == (0, 1)
    assert warmup.start_factor * 5e-4 == pytest.approx(1e-6)
    assert cosine.type == 'CosineAnnealingLR' and (cosine.begin, cosine.end) == (1, 25)
    assert cosine.eta_min == 1e-5
    assert warmup.convert_to_iter_based and cosine.convert_to_iter_based  # per iteration
    assert cfg.model.backbone.mask_ratio == 0.75
    assert cfg.model.backbone.arch == 'b' and cfg.model.backbone.patch_size == 16
    assert cfg.model.neck.decoder_depth == 1 and cfg.model.neck.decoder_num_heads == 12
    te = cfg.model.text_encoder
    assert (te.layers, te.width, te.heads, te.context_length, te.vocab_size) == (12, 512, 8, 77,
                                                                                 49408)
    assert cfg.model.head.embed_dims == 512
    crop = cfg.train_dataloader.dataset.pipeline[0]
    assert crop.type == 'RandomResizedCrop' and crop.crop_ratio_range == (0.5, 1.0)
    hooks = {h.type for h in cfg.custom_hooks}
    assert {'LogitScaleClampHook', 'DataSkipCounterHook', 'RNGStateHook'} <= hooks


def test_data_size_variants_only_change_the_data():
    base = cfg_of('rils_vitb16_l20m.py')
    for name, shards, n in [('rils_vitb16_l10m.py', '{00000..00999}', 10_000_000),
                            ('rils_vitb16_l50m.py', '{00000..04999}', 50_000_000)]:
        cfg = cfg_of(name)
        assert cfg.train_dataloader.dataset.urls.endswith(shards + '.tar')
        assert cfg.train_dataloader.dataset.num_samples == n
        assert cfg.model == base.model and cfg.optim_wrapper == base.optim_wrapper
    large = cfg_of('rils_vitl16_l20m.py').model
    assert large.backbone.arch == 'l' and large.text_encoder.width == 768
    assert large.head.embed_dims == 768 and large.neck.embed_dim == 1024


def slip_decays(name, p):
    """SLIP's main.py rule (the recipe of the paper and the official code): no weight decay
    for parameters with fewer than 2 dimensions or with 'bias', 'ln' or 'bn' in the name."""
    return not (p.ndim < 2 or 'bias' in name or 'ln' in name or 'bn' in name)


# What decays in the ViT-B/16 paper model (layer indices written N): tokens, embeddings and
# the projections theta, phi included.
PAPER_DECAY = {
    'backbone.cls_token', 'backbone.patch_embed.projection.weight',
    'backbone.layers.N.attn.qkv.weight', 'backbone.layers.N.attn.proj.weight',
    'backbone.layers.N.ffn.layers.N.0.weight', 'backbone.layers.N.ffn.layers.N.weight',
    'neck.mask_token', 'neck.decoder_embed.weight', 'neck.decoder_pred.weight',
    'neck.decoder_blocks.N.attn.qkv.weight', 'neck.decoder_blocks.N.attn.proj.weight',
    'neck.decoder_blocks.N.ffn.layers.N.0.weight', 'neck.decoder_blocks.N.ffn.layers.N.weight',
    'text_encoder.transformer.token_embedding.weight',
    'text_encoder.transformer.positional_embedding',
    'text_encoder.transformer.transformer.resblocks.N.attn.in_proj_weight',
    'text_encoder.transformer.transformer.resblocks.N.attn.out_proj.weight',
    'text_encoder.transformer.transformer.resblocks.N.mlp.c_fc.weight',
    'text_encoder.transformer.transformer.resblocks.N.mlp.c_proj.weight',
    'head.image_projection.weight', 'head.text_projection.weight',
}
# What does not: biases (q/v biases too), LayerNorms, the logit scale log(1 / sigma).
PAPER_NO_DECAY = {
    'backbone.patch_embed.projection.bias', 'backbone.layers.N.ln1.weight',
    'backbone.layers.N.ln1.bias', 'backbone.layers.N.attn.qkv.q_bias',
    'backbone.layers.N.attn.qkv.v_bias', 'backbone.layers.N.attn.proj.bias',
    'backbone.layers.N.ln2.weight', 'backbone.layers.N.ln2.bias',
    'backbone.layers.N.ffn.layers.N.0.bias', 'backbone.layers.N.ffn.layers.N.bias',
    'backbone.ln1.weight', 'backbone.ln1.bias',
    'neck.decoder_embed.bias', 'neck.decoder_pred.bias', 'neck.ln1.weight', 'neck.ln1.bias',
    'neck.decoder_blocks.N.ln1.weight', 'neck.decoder_blocks.N.ln1.bias',
    'neck.decoder_blocks.N.attn.qkv.bias', 'neck.decoder_blocks.N.attn.proj.bias',
    'neck.decoder_blocks.N.ln2.weight', 'neck.decoder_blocks.N.ln2.bias',
    'neck.decoder_blocks.N.ffn.layers.N.0.bias', 'neck.decoder_blocks.N.ffn.layers.N.bias',
    'text_encoder.transformer.transformer.resblocks.N.ln_1.weight',
    'text_encoder.transformer.transformer.resblocks.N.ln_1.bias',
    'text_encoder.transformer.transformer.resblocks.N.attn.in_proj_bias',
    'text_encoder.transformer.transformer.resblocks.N.attn.out_proj.bias',
    'text_encoder.transformer.transformer.resblocks.N.ln_2.weight',
    'text_encoder.transformer.transformer.resblocks.N.ln_2.bias',
    'text_encoder.transformer.transformer.resblocks.N.mlp.c_fc.bias',
    'text_encoder.transformer.transformer.resblocks.N.mlp.c_proj.bias',
    'text_encoder.transformer.ln_final.weight', 'text_encoder.transformer.ln_final.bias',
    'head.logit_scale',
}


@pytest.mark.slow
def test_weight_decay_groups_are_slips():
    """Build the paper model and the paper config's optimizer; every trainable parameter
    decays (wd 0.5) exactly when SLIP's rule says so, and the lists above are complete."""
    import re

    from mmengine.optim import build_optim_wrapper
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    cfg = cfg_of('rils_vitb16_l20m.py')
    model = MODELS.build(cfg.model)
    opt_cfg = cfg.optim_wrapper
    opt_cfg.type = 'OptimWrapper'  # AMP needs a GPU; the parameter groups are the same
    opt_cfg.pop('loss_scale')
    wrapper = build_optim_wrapper(model, opt_cfg)
    decay = {id(p): g['weight_decay'] for g in wrapper.optimizer.param_groups
             for p in g['params']}
    decayed, not_decayed = set(), set()
    for name, p in model.named_parameters():
        if not p.requires_grad:  # the fixed sin-cos position tables
            assert id(p) not in decay and name.endswith('pos_embed'), name
            continue
        assert decay[id(p)] == (0.5 if slip_decays(name, p) else 0.0), name
        (decayed if decay[id(p)] else not_decayed).add(re.sub(r'\.\d+\.', '.N.', name))
    assert decayed == PAPER_DECAY
    assert not_decayed == PAPER_NO_DECAY


@pytest.mark.slow
def test_headline_pipeline_reads_laion_layout_shards(tmp_path):
    """The paper config's train_dataloader on real img2dataset-layout shards."""
    corpus = generate_toy_corpus(str(tmp_path), num_train=48, num_val=16, image_size=48,
                                 seed=1, shard_size=16)
    cfg = cfg_of('rils_vitb16_l20m.py')
    loader = cfg.train_dataloader
    loader.update(batch_size=4, num_workers=0, persistent_workers=False, pin_memory=False)
    loader.dataset.update(urls=corpus['shard_pattern'], num_samples=48, batch_size=4)
    init_default_scope('mmpretrain')
    dataloader = Runner.build_dataloader(loader)
    assert len(dataloader) == 12
    batch = next(iter(dataloader))
    assert len(batch['inputs']) == 4
    assert all(img.shape == (3, 224, 224) and img.dtype == torch.uint8
               for img in batch['inputs'])
    tokens = [ds.text_tokens for ds in batch['data_samples']]
    assert all(t.shape == (77, ) and t[0] == 49406 for t in tokens)
    assert len(glob.glob(osp.join(tmp_path, 'shards', '*.tar'))) == 3
