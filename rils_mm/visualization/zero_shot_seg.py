"""Segment an image by a list of words, side by side for several checkpoints.

Each checkpoint's :class:`~rils_mm.models.segmentors.ZeroShotSegmentor` scores
every patch's ``||theta(f^k)||`` against the words' prompt embeddings (Eq. 8
without the softmax); the picture shows, per checkpoint, the winning word of
every pixel (left blank where its probability is below a threshold) and, per
word, where it wins.
"""
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

__all__ = ['segment_words', 'draw_word_segmentation']


@torch.no_grad()
def segment_words(seg, image_bgr: np.ndarray) -> torch.Tensor:
    """(K, H, W) word probabilities of a ZeroShotSegmentor for one (H, W, 3)
    uint8 BGR image (as mmseg loads it), at the image's size."""
    inputs = torch.from_numpy(np.ascontiguousarray(image_bgr)).permute(2, 0, 1)
    batch = seg.data_preprocessor(dict(inputs=[inputs]), False)['inputs']
    return seg.predict(batch)[0].seg_logits.data.cpu()


def draw_word_segmentation(image_rgb: np.ndarray,
                           words: Sequence[str],
                           results: List[Tuple[str, torch.Tensor]],
                           out_file: str,
                           threshold: float = 0.0,
                           panel_px: int = 256,
                           title: Optional[str] = None) -> str:
    """Write a PNG: the image, then one panel per ``(name, probs)`` result
    with every pixel coloured by its most probable word (probability below
    ``threshold``: the image shows through), a legend and the share of the
    image the four largest words take. The PNG is ``(1 + len(results)) *
    panel_px`` wide and ``panel_px + 74 + 14 * legend rows`` high."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    words = list(words)
    colours = plt.get_cmap('tab10' if len(words) <= 10 else 'tab20')(
        np.arange(len(words)))[:, :3]
    img = image_rgb.astype(np.float32) / 255.0
    ncols = 1 + len(results)
    legend_cols = max(1, min(len(words), 2 * ncols - 1))
    rows = -(-len(words) // legend_cols)
    dpi, strip, foot = 100, 34 + 14 * rows, 40
    height = panel_px + strip + foot
    fig = plt.figure(figsize=(ncols * panel_px / dpi, height / dpi), dpi=dpi)
    for col in range(ncols):
        ax = fig.add_axes([col / ncols + 0.005, foot / height, 1 / ncols - 0.01,
                           (panel_px - 10) / height])
        ax.set_xticks([])
        ax.set_yticks([])
        if col == 0:
            ax.imshow(img)
            ax.set_title('image', fontsize=9)
            continue
        name, probs = results[col - 1]
        probs = probs.float().numpy()
        win = probs.argmax(0)
        keep = (probs.max(0) >= threshold)[..., None]
        overlay = np.where(keep, 0.35 * img + 0.65 * colours[win], img)
        ax.imshow(np.clip(overlay, 0, 1))
        share = [100.0 * float(((win == k) & keep[..., 0]).mean()) for k in range(len(words))]
        top = sorted(range(len(words)), key=lambda k: -share[k])[:4]
        ax.set_title(name, fontsize=9)
        ax.set_xlabel('\n'.join(', '.join(f'{words[k]} {share[k]:.0f}%' for k in pair)
                                for pair in (top[:2], top[2:])), fontsize=7)
    handles = [Patch(color=colours[i], label=w) for i, w in enumerate(words)]
    fig.legend(handles=handles, loc='upper left', fontsize=8, frameon=False,
               ncol=legend_cols, bbox_to_anchor=(0.0, 1.0), handlelength=1.0)
    if title:
        fig.text(0.005, 14 / height, title, fontsize=8, ha='left', va='center')
    fig.savefig(out_file, dpi=dpi)
    plt.close(fig)
    return out_file
