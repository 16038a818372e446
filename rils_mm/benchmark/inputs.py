"""Synthetic training batches: images, CLIP-style captions, masking noise."""
import math


def caption_lengths(batch_size: int, context_length: int = 77, seed: int = 0):
    """Token positions of the end-of-text token for ``batch_size`` synthetic
    LAION-like captions.

    An assumption, not a measurement (no LAION captions are on this machine):
    LAION alt-texts are short (median ~10 words); the number of CLIP BPE tokens
    between start and end of text is modelled as log-normal with median 13 and
    sigma 0.65 (mean ~16, 99th percentile ~59), rounded, at least 1, and
    truncated at the context like ``TokenizeText`` (EOT in the last position).
    """
    import torch
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch_size, generator=g)
    n = torch.exp(math.log(13.) + 0.65 * z).round().long().clamp(min=1)
    return (n + 1).clamp(max=context_length - 1)  # SOT + n tokens, EOT index


def synthetic_batch(batch_size: int, img_size: int, context_length: int, num_patches: int,
                    captions: str = 'laion', seed: int = 0, vocab_size: int = 49408):
    """Images (B, 3, H, W), CLIP-style token ids (B, L) and masking noise (B, N).

    ``captions``: ``'laion'`` (lengths from :func:`caption_lengths`) or ``'full'`` (every
    caption fills the context).
    """
    import torch
    if captions not in ('laion', 'full'):
        raise ValueError(f"captions must be 'laion' or 'full', got {captions!r}")
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(batch_size, 3, img_size, img_size, generator=g)
    if captions == 'full':
        eot = torch.full((batch_size, ), context_length - 1)
    else:
        eot = caption_lengths(batch_size, context_length, seed)
    tokens = torch.randint(1, vocab_size - 2, (batch_size, context_length),
                           generator=g)
    tokens[:, 0] = vocab_size - 2
    pos = torch.arange(context_length)
    tokens[pos[None] > eot[:, None]] = 0
    tokens[torch.arange(batch_size), eot] = vocab_size - 1
    noise = torch.rand(batch_size, num_patches, generator=g)
    return images, tokens, noise
