"""Tiny model configs and batches for tests and benchmarks (like ``mmdet.testing``)."""
import copy
import socket
from typing import Optional

import torch


def tiny_rils_cfg(img_size: int = 32, patch_size: int = 8, width: int = 64,
                  text_width: int = 64, depth: int = 2, context_length: int = 16,
                  vocab_size: int = 49408, **head_overrides) -> dict:
    """A RILS model config small enough to run in milliseconds on a CPU."""
    num_patches = (img_size // patch_size)**2
    head = dict(
        type='RILSHead', vision_dims=width, text_dims=text_width, embed_dims=32,
        contrastive_loss=dict(type='ImageTextContrastiveLoss'),
        recon_loss=dict(type='LanguageSpaceReconLoss'))  # the paper's tau_1, tau_2, lambda_2
    head.update(copy.deepcopy(head_overrides))
    return dict(
        type='RILS',
        backbone=dict(
            type='RILSViT',
            arch=dict(embed_dims=width, num_layers=depth, num_heads=4,
                      feedforward_channels=2 * width),
            img_size=img_size, patch_size=patch_size, mask_ratio=0.75),
        neck=dict(type='RILSDecoder', num_patches=num_patches, embed_dim=width,
                  decoder_depth=1, decoder_num_heads=4),
        text_encoder=dict(type='CLIPTextEncoder', context_length=context_length,
                          vocab_size=vocab_size, width=text_width, heads=4,
                          layers=depth),
        head=head)


def fake_batch(batch_size: int, img_size: int = 32, context_length: int = 16,
               num_patches: Optional[int] = None, vocab_size: int = 49408,
               seed: int = 0):
    """Random images (B,3,H,W), token ids (B,L) with an EOT token, and masking noise."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(batch_size, 3, img_size, img_size, generator=g)
    tokens = torch.randint(1, vocab_size - 2, (batch_size, context_length), generator=g)
    lengths = torch.randint(3, context_length, (batch_size, ), generator=g)
    tokens[:, 0] = vocab_size - 2  # start of text
    for i, n in enumerate(lengths.tolist()):
        tokens[i, n] = vocab_size - 1  # end of text (the arg-max token)
        tokens[i, n + 1:] = 0
    num_patches = num_patches or (img_size // 8)**2
    noise = torch.rand(batch_size, num_patches, generator=g)
    return images, tokens, noise


def shrink_toy_model(model) -> None:
    """Shrink the toy config's model (``configs/rils/rils_vittiny_toy.py``) in
    place to 32 px, patch 8, 2 blocks of width 64: a CPU step in tens of ms."""
    model.backbone.update(
        arch=dict(embed_dims=64, num_layers=2, num_heads=4, feedforward_channels=128),
        img_size=32, patch_size=8)
    model.neck.update(num_patches=16, embed_dim=64)
    model.text_encoder.update(width=64, layers=2)
    model.head.update(vision_dims=64, text_dims=64, embed_dims=64)


def free_port() -> int:
    """A local TCP port nobody listens on now, for a test's process group (a fixed
    one collides with parallel runs)."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]
