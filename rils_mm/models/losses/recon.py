"""Masked reconstruction in language semantic space, RILS Eqs. 8-9."""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.registry import MODELS

from ..utils import all_reduce_sum, get_world_size, local_offset, mean_value_local_grad


@MODELS.register_module()
class LanguageSpaceReconLoss(nn.Module):
    """Cross-entropy between text-prototype distributions (RILS Eqs. 8-9).

    For every masked patch ``k`` of every correctly matched image ``i``::

        p = softmax(<f~_i^k, z^T> / tau_1)     (target, intact view, sg[.])
        q = softmax(<g~_i^k, z^T> / tau_2)     (prediction, decoded masked view)
        L_recon = 1 / (|C| |M|) * sum_{i in C} sum_{k in M} -sg[p] . log q

    where ``z^T`` are the texts of the (global) batch. Inputs are
    L2-normalised here (Eq. 7); logits are computed in fp32 and only for the
    selected (aligned, masked) patches, in chunks of ``chunk_size`` rows to
    bound memory at paper scale (128 x 147 x 4096 logits per GPU).

    Args:
        target_temperature (float): tau_1. Defaults to 0.04.
        pred_temperature (float): tau_2. Defaults to 0.1.
        loss_weight (float): lambda_2 of Eq. 10. Defaults to 0.5.
        chunk_size (int): rows of the logit matrix computed at once.
            Defaults to 8192.
    """

    def __init__(self,
                 target_temperature: float = 0.04,
                 pred_temperature: float = 0.1,
                 loss_weight: float = 0.5,
                 chunk_size: int = 8192) -> None:
        super().__init__()
        self.target_temperature = target_temperature
        self.pred_temperature = pred_temperature
        self.loss_weight = loss_weight
        self.chunk_size = chunk_size

    def forward(self,
                pred: torch.Tensor,
                target: torch.Tensor,
                text: torch.Tensor,
                mask: torch.Tensor,
                aligned: torch.Tensor,
                avg_factor: Optional[float] = None) -> torch.Tensor:
        """Compute the weighted reconstruction loss.

        Args:
            pred (Tensor): (B, N, D) decoded patch embeddings (before norm).
            target (Tensor): (B, N, D) intact-view patch embeddings; no
                gradient flows into it.
            text (Tensor): (T, D) text embeddings (the prototypes).
            mask (Tensor): (B, N), 1 (or True) marks masked patches.
            aligned (Tensor): (B,) bool, the images in the set C.
            avg_factor (float, optional): this rank's normaliser. Defaults
                to the *global* ``|C| |M|`` divided by the world size, so that
                the mean over ranks (DDP's gradient average) is Eq. 9 over the
                global batch; on one process that is simply ``|C| |M|``.

        Returns:
            Tensor: scalar ``loss_weight * L_recon``; an exact 0 that keeps the
            graph when nothing is selected. Across ranks its value is the
            global one while its gradient is this rank's share.
        """
        select = mask.bool() & aligned.bool()[:, None]  # (B, N)
        pred_sel = pred[select]  # (K, D)
        if avg_factor is None:
            num_selected = all_reduce_sum(select.sum().float())  # |C| |M|
            avg_factor = (num_selected / get_world_size()).item()
        if pred_sel.shape[0] == 0 or avg_factor == 0:
            # still joins the collective below, which the other ranks run
            return mean_value_local_grad(pred.sum() * 0.0)
        target_sel = F.normalize(target[select].detach().float(), dim=-1)
        pred_sel = F.normalize(pred_sel.float(), dim=-1)
        text = F.normalize(text.float(), dim=-1)

        total = pred_sel.new_zeros(())
        for start in range(0, pred_sel.shape[0], self.chunk_size):
            end = start + self.chunk_size
            with torch.no_grad():
                p = F.softmax(
                    target_sel[start:end] @ text.t() / self.target_temperature,
                    dim=-1)
            log_q = F.log_softmax(
                pred_sel[start:end] @ text.t() / self.pred_temperature, dim=-1)
            total = total - (p * log_q).sum()
        return mean_value_local_grad(self.loss_weight * total / avg_factor)


def aligned_image_mask(image_embed: torch.Tensor,
                       all_text_embed: torch.Tensor) -> torch.Tensor:
    """The set C of Eq. 9 for this rank's images.

    An image is *correctly matched* when its most similar text in the global
    batch is its own caption (image-to-text arg-max).

    Args:
        image_embed (Tensor): (B, D) this rank's image embeddings.
        all_text_embed (Tensor): (B_g, D) the global batch's text embeddings,
            in rank order (this rank's captions at ``rank * B``).

    Returns:
        Tensor: (B,) bool.
    """
    with torch.no_grad():
        sim = image_embed.float() @ all_text_embed.float().t()
        own = local_offset(image_embed.shape[0]) + torch.arange(
            image_embed.shape[0], device=image_embed.device)
        return sim.argmax(dim=1) == own
