"""SimCLR's NT-Xent loss as SLIP computes it (the SSL term of SLIP)."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.registry import MODELS

from ..utils import at_least_fp32, gather_features, local_offset


@MODELS.register_module()
class SimCLRLoss(nn.Module):
    """NT-Xent over two augmented views, SLIP's formulation.

    For this rank's normalised embeddings ``a_i``, ``b_i`` of the two views
    and the global batch's ``a_j``, ``b_j`` (gathered with gradient)::

        l_ab[i, j] = <a_i, b_j> / tau        l_aa[i, j] = <a_i, a_j> / tau
        l_aa[i, i] = -inf  (a sample is not its own negative)
        L_a = CE([l_ab | l_aa], i)           L_b = CE([l_ba | l_bb], i)
        L_ssl = (L_a + L_b) / 2

    The mean over this rank's rows, averaged over ranks by DDP, is the loss
    of one process holding the global batch (SLIP ``losses.SIMCLRLoss``).

    Args:
        temperature (float): tau. Defaults to 0.1 (SLIP).
        loss_weight (float): the SSL scale. Defaults to 1.0 (SLIP).
    """

    def __init__(self, temperature: float = 0.1, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.temperature = temperature
        self.loss_weight = loss_weight

    def forward(self, embed_a: torch.Tensor, embed_b: torch.Tensor) -> torch.Tensor:
        """``loss_weight * L_ssl`` from the (B, D) embeddings of the two views."""
        q_a = F.normalize(at_least_fp32(embed_a), dim=-1)
        q_b = F.normalize(at_least_fp32(embed_b), dim=-1)
        k_a, k_b = gather_features(q_a), gather_features(q_b)
        labels = local_offset(q_a.shape[0]) + torch.arange(
            q_a.shape[0], device=q_a.device)
        self_mask = F.one_hot(labels, k_a.shape[0]).bool()
        logits_aa = (q_a @ k_a.t() / self.temperature).masked_fill(
            self_mask, float('-inf'))
        logits_bb = (q_b @ k_b.t() / self.temperature).masked_fill(
            self_mask, float('-inf'))
        logits_ab = q_a @ k_b.t() / self.temperature
        logits_ba = q_b @ k_a.t() / self.temperature
        loss_a = F.cross_entropy(torch.cat([logits_ab, logits_aa], 1), labels)
        loss_b = F.cross_entropy(torch.cat([logits_ba, logits_bb], 1), labels)
        return self.loss_weight * (loss_a + loss_b) / 2
