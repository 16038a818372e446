"""Patch-text maps: RILS's language-space view of an image, made visible.

For every patch ``k`` of an image, RILS turns the patch feature into a
probability distribution over texts (paper Eq. 8)::

    p^k = softmax(<f~^k, z^T> / tau_1)   f~^k = ||theta(f^k)||   intact view (target)
    q^k = softmax(<g~^k, z^T> / tau_2)   g~^k = ||theta(g^k)||   decoded masked view

with ``z^T = ||phi(h)||`` the text embeddings (Eq. 4). In training the texts are
the batch's captions; here they are phrases the user chooses, so the maps show
which phrase each patch "means" to the trained theta and text encoder.
"""
from typing import Dict, List, Optional, Sequence

import numpy as np
import open_clip
import torch
import torch.nn.functional as F

__all__ = ['patch_text_probs', 'draw_patch_text']


@torch.no_grad()
def patch_text_probs(model,
                     inputs: torch.Tensor,
                     phrases: Sequence[str],
                     mask_noise: Optional[torch.Tensor] = None,
                     seed: int = 0) -> Dict[str, torch.Tensor]:
    """Eq. 8 for one image and a list of phrases.

    Args:
        model (RILS): a trained model (``backbone``, ``neck``, ``head``,
            ``text_encoder``).
        inputs (Tensor): (1, 3, H, W) image, already normalised by the
            model's data preprocessor.
        phrases (Sequence[str]): the texts ``z^T`` are computed from.
        mask_noise (Tensor, optional): (1, N) noise fixing the random mask
            (the smallest ``(1 - mask_ratio) N`` values stay visible).
            Defaults to noise drawn with ``seed``.
        seed (int): seed of the default mask noise.

    Returns:
        dict: ``p`` (N, T) target distributions of the intact view with
        ``tau_1``; ``q`` (N, T) predictions of the decoded masked view with
        ``tau_2``; ``mask`` (N,) 1 for masked patches; ``grid`` (h, w) patch
        grid; ``tau1``, ``tau2``.
    """
    if len(phrases) < 2:
        raise ValueError(f'give at least two phrases to compare, got {list(phrases)}')
    if inputs.dim() != 4 or inputs.shape[0] != 1:
        raise ValueError(f'inputs must be one image (1, 3, H, W), got {tuple(inputs.shape)}')
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        inputs = inputs.to(device)
        context = model.text_encoder.context_length
        tokens = open_clip.tokenize(list(phrases), context_length=context).to(device)
        z_text = model.encode_text(tokens).float()  # (T, D), Eq. 4

        f = model.backbone.forward_intact(inputs)[:, 1:]  # (1, N, C), Eq. 1
        num_patches = f.shape[1]
        if mask_noise is None:
            gen = torch.Generator().manual_seed(seed)
            mask_noise = torch.rand(1, num_patches, generator=gen)
        latent, mask, ids_restore = model.backbone(
            inputs, mask=True, noise=mask_noise.to(device))  # Eq. 1, masked view
        g = model.neck(latent, ids_restore)  # (1, N, C), Eq. 3

        theta = model.head.image_projection
        tau1 = model.head.recon_loss.target_temperature
        tau2 = model.head.recon_loss.pred_temperature
        f_t = F.normalize(theta(f).float(), dim=-1)[0]  # (N, D), Eq. 7
        g_t = F.normalize(theta(g).float(), dim=-1)[0]
        p = F.softmax(f_t @ z_text.t() / tau1, dim=-1)  # Eq. 8, target
        q = F.softmax(g_t @ z_text.t() / tau2, dim=-1)  # Eq. 8, prediction
    finally:
        model.train(was_training)
    side = int(round(num_patches**0.5))
    h, w = inputs.shape[-2:]
    patch = h // side
    grid = (h // patch, w // patch)
    if grid[0] * grid[1] != num_patches:
        raise ValueError(f'{num_patches} patches do not tile a {h}x{w} image')
    return dict(p=p.cpu(), q=q.cpu(), mask=mask[0].float().cpu(), grid=grid,
                tau1=tau1, tau2=tau2)


def _upsample(values: np.ndarray, grid, size) -> np.ndarray:
    """(N,) or (N, 3) per-patch values -> (H, W[, 3]) by nearest neighbour."""
    gh, gw = grid
    arr = values.reshape(gh, gw, *values.shape[1:])
    ry, rx = size[0] // gh, size[1] // gw
    return np.repeat(np.repeat(arr, ry, axis=0), rx, axis=1)


def draw_patch_text(image: np.ndarray,
                    phrases: Sequence[str],
                    result: Dict[str, torch.Tensor],
                    out_file: str,
                    panel_px: int = 192,
                    title: Optional[str] = None) -> str:
    """Render a :func:`patch_text_probs` result as a PNG.

    Top row: the image, the masked input the decoder started from, the phrase
    that wins each patch in the intact view (``argmax p``) and in the decoded
    view (``argmax q``, on the masked patches it reconstructs, outlined). Bottom row: one panel per
    phrase with ``p^k(phrase)`` as a coloured overlay (0 transparent ... 1
    opaque).

    The PNG is ``max(4, T) * panel_px`` wide and ``2 * panel_px + 44``
    high (T phrases).

    Args:
        image (ndarray): (H, W, 3) uint8 RGB, the image the model saw.
        phrases (Sequence[str]): the phrases of ``result``.
        result (dict): output of :func:`patch_text_probs`.
        out_file (str): PNG path.
        panel_px (int): side of one panel in pixels.
        title (str, optional): figure title.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    phrases = list(phrases)
    p, q = result['p'].numpy(), result['q'].numpy()
    mask = result['mask'].numpy().astype(bool)
    grid = result['grid']
    size = image.shape[:2]
    colours = plt.get_cmap('tab10' if len(phrases) <= 10 else 'tab20')(
        np.arange(len(phrases)))[:, :3]

    ncols = max(4, len(phrases))
    dpi = 100
    width_px, height_px = ncols * panel_px, 2 * panel_px + 44
    fig = plt.figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    top, bottom = 1 - 44 / height_px, 0.0
    row_h = (top - bottom) / 2

    def axis(row, col):
        ax = fig.add_axes([col / ncols + 0.005, top - (row + 1) * row_h + 0.02,
                           1 / ncols - 0.01, row_h - 0.11])
        ax.set_xticks([])
        ax.set_yticks([])
        return ax

    img = image.astype(np.float32) / 255.0
    ax = axis(0, 0)
    ax.imshow(img)
    ax.set_title('image', fontsize=9)

    masked = img.copy()
    grey = _upsample(mask.astype(np.float32), grid, size)[..., None]
    masked = masked * (1 - grey) + 0.5 * grey
    ax = axis(0, 1)
    ax.imshow(masked)
    ax.set_title(f'masked input ({int(mask.sum())}/{mask.size})', fontsize=9)

    ph, pw = size[0] // grid[0], size[1] // grid[1]
    # intact view: every patch; decoded view: the masked patches M it reconstructs
    views = ((2, p, 'argmax p, intact view\n(target, tau1={:g})'.format(result['tau1']),
              np.ones_like(mask)),
             (3, q, 'argmax q, decoded masked view\n(prediction on M, tau2={:g})'.format(
                 result['tau2']), mask))
    for col, probs, name, where in views:
        winner = colours[probs.argmax(1)] * where[:, None]
        keep = _upsample(where.astype(np.float32), grid, size)[..., None]
        ax = axis(0, col)
        ax.imshow(img * (1 - 0.65 * keep) + 0.65 * _upsample(winner, grid, size))
        ax.set_title(name, fontsize=8)
        if col == 3:
            for k in np.flatnonzero(mask):
                r, c = divmod(int(k), grid[1])
                ax.add_patch(Rectangle((c * pw - 0.5, r * ph - 0.5), pw, ph,
                                       fill=False, lw=0.4, ec='white'))

    handles = [Patch(color=colours[i], label=text) for i, text in enumerate(phrases)]
    fig.legend(handles=handles, loc='upper right', fontsize=8, ncol=min(len(phrases), 5),
               frameon=False, bbox_to_anchor=(1.0, 1.0), handlelength=1.0)

    for t, phrase in enumerate(phrases):
        ax = axis(1, t)
        heat = _upsample(p[:, t], grid, size)[..., None]
        overlay = (1 - 0.75 * heat) * img + 0.75 * heat * colours[t]
        ax.imshow(np.clip(overlay, 0, 1))
        ax.set_title(f'p("{phrase}")\n{int((p.argmax(1) == t).sum())} patches, '
                     f'max {p[:, t].max():.2f}', fontsize=8)
    if title:
        fig.text(0.01, 1 - 20 / height_px, title, fontsize=10, va='center')
    fig.savefig(out_file, dpi=dpi)
    plt.close(fig)
    return out_file


def winning_phrases(result: Dict[str, torch.Tensor], view: str = 'p') -> List[int]:
    """Index of the most probable phrase of every patch (``argmax`` of Eq. 8)."""
    return result[view].argmax(1).tolist()
