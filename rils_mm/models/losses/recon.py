"""Masked reconstruction in language semantic space, RILS Eqs. 8-9."""
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.registry import MODELS

from ..utils import (
    all_reduce_sum,
    at_least_fp32,
    get_world_size,
    local_offset,
    mean_value_local_grad,
)


class PrototypeKLDivergence(torch.autograd.Function):
    """Summed ``KL(p || q)`` and ``CE(p, q)`` over rows, one chunk at a time (Eq. 9).

    For rows ``k`` of the (normalised) target ``f~``, prediction ``g~`` and
    the text prototypes ``z^T``::

        p_k = softmax(<f~_k, z^T> / tau_1)      (sg: no gradient at all)
        q_k = softmax(<g~_k, z^T> / tau_2)
        returns  sum_k KL(p_k || q_k)  and  sum_k -sum_l p_kl log q_kl

    The two differ by the target entropy ``sum_k H(p_k)``, a constant, so
    their gradients are the same: ``d/d logits_q = q - p``. Neither the forward
    nor the backward pass keeps more than one chunk of (rows x texts) logits:
    the backward pass recomputes ``p`` and ``q`` chunk by chunk from the saved
    (rows x D) inputs instead of storing every chunk's softmax, which autograd
    would (see the memory table in the README). Computed in the inputs' dtype;
    call it with fp32 inputs and autocast off.

    Args (of ``apply``):
        pred (Tensor): (K, D) ``g~``, normalised.
        target (Tensor): (K, D) ``f~``, normalised; never receives gradient.
        text (Tensor): (T, D) ``z^T``, normalised.
        tau1 (float), tau2 (float): the temperatures of Eq. 8.
        chunk_size (int): rows per chunk.
    """

    @staticmethod
    def forward(ctx, pred, target, text, tau1, tau2, chunk_size):
        kl = pred.new_zeros(())
        ce = pred.new_zeros(())
        text_t = text.t()
        for start in range(0, pred.shape[0], chunk_size):
            end = start + chunk_size
            log_p = F.log_softmax((target[start:end] @ text_t).div_(tau1), dim=-1)
            log_q = F.log_softmax((pred[start:end] @ text_t).div_(tau2), dim=-1)
            p = log_p.exp()
            neg_entropy = (p * log_p).sum()
            cross_entropy = -(p.mul_(log_q)).sum()
            ce += cross_entropy
            kl += cross_entropy + neg_entropy
            del log_p, log_q, p
        ctx.save_for_backward(pred, target, text)
        ctx.tau1, ctx.tau2, ctx.chunk_size = tau1, tau2, chunk_size
        return kl, ce

    @staticmethod
    def backward(ctx, grad_kl, grad_ce):
        pred, target, text = ctx.saved_tensors
        need_pred, _, need_text = ctx.needs_input_grad[:3]
        grad_pred = torch.zeros_like(pred) if need_pred else None
        grad_text = torch.zeros_like(text) if need_text else None
        if not (need_pred or need_text):
            return None, None, None, None, None, None
        scale = (grad_kl + grad_ce) / ctx.tau2  # d loss / d logits_q = (q - p) / tau_2
        text_t = text.t()
        with torch.autocast(pred.device.type, enabled=False):
            for start in range(0, pred.shape[0], ctx.chunk_size):
                end = start + ctx.chunk_size
                p = F.softmax((target[start:end] @ text_t).div_(ctx.tau1), dim=-1)
                q = F.softmax((pred[start:end] @ text_t).div_(ctx.tau2), dim=-1)
                d = q.sub_(p).mul_(scale)  # (rows, T)
                del p
                if need_pred:
                    grad_pred[start:end] = d @ text
                if need_text:
                    grad_text.addmm_(d.t(), pred[start:end])
                del d, q
        return grad_pred, None, grad_text, None, None, None


@MODELS.register_module()
class LanguageSpaceReconLoss(nn.Module):
    """KL divergence between text-prototype distributions (RILS Eqs. 7-9).

    For every masked patch ``k`` of every correctly matched image ``i``::

        f~ = ||theta(f)||, g~ = ||theta(g)||              (Eq. 7, theta applied by the head)
        p = softmax(<f~_i^k, z^T> / tau_1)     (target, intact view, sg[.])
        q = softmax(<g~_i^k, z^T> / tau_2)     (prediction, decoded masked view)
        L_recon = 1 / (|C| |M|) * sum_{i in C} sum_{k in M} KL(sg[p] || q)     (Eq. 9)

    where ``z^T`` are the texts of the global batch. The value is the KL
    divergence, as the paper states and the official code logs; its gradient
    is that of the cross-entropy ``-sum_l p_l log q_l`` (they differ by the
    constant entropy H(p)), which :meth:`forward` can also return for logging.

    Inputs are L2-normalised here; logits are computed in fp32 (float64 stays float64) with autocast
    off, only for the selected (aligned, masked) patches, by
    :class:`PrototypeKLDivergence`, which holds one chunk of ``chunk_size`` x
    ``T`` logits at a time in the forward and in the backward pass.

    The normaliser ``|C| |M|`` across ranks:

    * ``local_loss=True`` (default, official): each rank divides by its own
      ``|C_r| |M| + eps`` and DDP averages the ranks' losses.
    * ``local_loss=False``: the global ``|C| |M|`` (every rank divides its
      sum by the global count / world size, so DDP's average is Eq. 9 over the
      whole batch, the same as one process holding it).

    Both agree on one process (up to ``eps``). Across ranks the returned value
    is the mean over ranks (what DDP's average optimises) and each rank
    backpropagates its own share.

    Args:
        target_temperature (float): tau_1. Defaults to 0.04.
        pred_temperature (float): tau_2. Defaults to 0.1.
        loss_weight (float): lambda_2 of Eq. 10. Defaults to 0.5.
        chunk_size (int): rows of the logit matrix computed at once; the loss
            holds about 4 x ``chunk_size`` x T fp32 values at its peak (32 MiB
            per chunk at T = 4096 texts). Defaults to 2048.
        local_loss (bool): per-rank normaliser (see above). Defaults to True.
        eps (float): added to the per-rank normaliser, as in the official
            code. Defaults to 1e-6.
    """

    def __init__(self,
                 target_temperature: float = 0.04,
                 pred_temperature: float = 0.1,
                 loss_weight: float = 0.5,
                 chunk_size: int = 2048,
                 local_loss: bool = True,
                 eps: float = 1e-6) -> None:
        super().__init__()
        if chunk_size < 1:
            raise ValueError(f'LanguageSpaceReconLoss: chunk_size must be >= 1, '
                             f'got {chunk_size}')
        self.target_temperature = target_temperature
        self.pred_temperature = pred_temperature
        self.loss_weight = loss_weight
        self.chunk_size = chunk_size
        self.local_loss = local_loss
        self.eps = eps

    def forward(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        text: torch.Tensor,
        mask: torch.Tensor,
        aligned: torch.Tensor,
        avg_factor: Optional[float] = None,
        return_cross_entropy: bool = False
    ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        """Compute the weighted reconstruction loss.

        Args:
            pred (Tensor): (B, N, D) decoded patch embeddings ``theta(g)``.
            target (Tensor): (B, N, D) intact-view patch embeddings
                ``theta(f)``; no gradient flows into it.
            text (Tensor): (T, D) text embeddings ``z^T`` (the prototypes).
            mask (Tensor): (B, N), 1 (or True) marks the masked patches M.
            aligned (Tensor): (B,) bool, the images in the set C.
            avg_factor (float, optional): this rank's normaliser, replacing
                the one ``local_loss`` selects.
            return_cross_entropy (bool): also return the cross-entropy
                (weighted and normalised the same way, detached, mean over
                ranks) for logging.

        Returns:
            Tensor | tuple: scalar ``loss_weight * L_recon`` (the KL value);
            an exact 0 that keeps the graph when nothing is selected. With
            ``return_cross_entropy``, ``(loss, cross_entropy)``.
        """
        select = mask.bool() & aligned.bool()[:, None]  # (B, N): i in C, k in M
        if avg_factor is None:
            if self.local_loss:
                avg_factor = select.sum().item() + self.eps
            else:
                avg_factor = (all_reduce_sum(select.sum().float()) /
                              get_world_size()).item()
        avg_factor = avg_factor or 1.0  # nothing selected anywhere: the sums are 0
        with torch.autocast(pred.device.type, enabled=False):
            pred_sel = F.normalize(at_least_fp32(pred[select]), dim=-1)  # (K, D) g~
            target_sel = F.normalize(at_least_fp32(target[select].detach()), dim=-1)  # f~
            text = F.normalize(at_least_fp32(text), dim=-1)  # z^T
            kl, ce = PrototypeKLDivergence.apply(pred_sel, target_sel, text,
                                                 self.target_temperature,
                                                 self.pred_temperature, self.chunk_size)
        loss = self.loss_weight * kl / avg_factor
        ce = self.loss_weight * ce.detach() / avg_factor
        # report the mean over ranks, backpropagate this rank's share
        loss, ce = mean_value_local_grad(loss), mean_value_local_grad(ce)
        return (loss, ce) if return_cross_entropy else loss


def aligned_image_mask(image_embed: torch.Tensor,
                       all_text_embed: torch.Tensor) -> torch.Tensor:
    """The set C of Eq. 9 for this rank's images.

    An image is *correctly matched* when its most similar text in the global
    batch is its own caption (image-to-text arg-max), as in the official
    ``pred.eq(labels)``.

    Args:
        image_embed (Tensor): (B, D) this rank's image embeddings.
        all_text_embed (Tensor): (B_g, D) the global batch's text embeddings,
            in rank order (this rank's captions at ``rank * B``).

    Returns:
        Tensor: (B,) bool.
    """
    with torch.no_grad(), torch.autocast(image_embed.device.type, enabled=False):
        sim = at_least_fp32(image_embed) @ at_least_fp32(all_text_embed).t()
        own = local_offset(image_embed.shape[0]) + torch.arange(
            image_embed.shape[0], device=image_embed.device)
        return sim.argmax(dim=1) == own
