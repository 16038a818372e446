"""The paper's global batch on few devices: exact gradient caching.

RILS' two losses are batch-global: L_contra contrasts every image with the
global batch's texts (Eqs. 5-6) and L_recon's language space is spanned by the
global batch's text embeddings (Eq. 8; B_g = 4096 in the paper, 32 GPUs x 128).
Summing the gradients of small batches (mmengine's ``accumulative_counts``)
changes both. Gradient caching (GradCache, Gao et al., 2021; open_clip's
``--accum-freq``) computes what a larger batch would, with the activations of
one micro-batch at a time.

Every image-text method here splits its step into three parts
(:class:`~rils_mm.models.algorithms.ImageTextPretrainer`):

* ``embed(batch)``: per-sample representations (``z^I``, ``z^T`` of Eq. 4;
  SLIP's pooled views), plus tensors the third part reuses (``f``, Eq. 1);
* ``batch_losses(embeds, virtual_ranks)``: the losses that couple samples
  (L_contra, SLIP's SimCLR term), the set C and the prototypes of Eq. 8;
* ``micro_batch_losses(batch, aux, context, virtual_ranks)``: the losses of
  single samples (L_recon of Eq. 9 on the masked view and V-Dec; MAE's pixel
  loss).

A plain step is the three in a row. :class:`GradCache` runs a per-rank batch
of ``B = K * M`` as K micro-batches of M whose activations never coexist:

1. without gradient, ``embed`` every micro-batch; then ``batch_losses`` on
   the whole rank's embeddings (one cross-rank gather), and the gradient of
   those losses with respect to the embeddings and to the parameters they
   use directly (sigma, SLIP's MLP);
2. per micro-batch, ``embed`` again with gradient (the random state of step
   1 restored) and back-propagate ``<embedding, cached gradient>`` plus its
   ``micro_batch_losses``; the last micro-batch is returned to the optimiser
   wrapper instead (under DDP only its backward all-reduces: the earlier
   backward passes run inside the forward, where DDP does not synchronise),
   carrying the cached parameter gradients.

**Each micro-batch is one virtual rank**: ``virtual_ranks = K`` tells the
losses to behave as on ``K`` times as many ranks (official semantics: every
other slice of the gather, the own one included, is a constant; L_recon's
normaliser per micro-batch), so K micro-batches on W ranks compute the
gradient of ``W * K`` ranks of batch M (with the exact semantics,
``gather_with_grad=True``, that of one process holding the global batch).
"""
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional

import torch

from .dist import at_least_fp32, get_world_size

#: the optimiser wrapper whose ``optim_context`` is active (set by rils-mm's
#: wrappers and by ``ImageTextPretrainer.train_step``)
_ACTIVE_OPTIM_WRAPPER: ContextVar = ContextVar('rils_mm_active_optim_wrapper', default=None)


@contextmanager
def active_optim_wrapper(optim_wrapper) -> Iterator[None]:
    """Make ``optim_wrapper`` the one :class:`GradCache` back-propagates
    through (its loss scaler and gradient accumulation) inside the block."""
    token = _ACTIVE_OPTIM_WRAPPER.set(optim_wrapper)
    try:
        yield
    finally:
        _ACTIVE_OPTIM_WRAPPER.reset(token)


def _backward(loss: torch.Tensor) -> None:
    """``loss.backward()`` scaled as the active optimiser wrapper would scale
    it (``accumulative_counts``, fp16 loss scaler), without counting a step."""
    wrapper = _ACTIVE_OPTIM_WRAPPER.get()
    if wrapper is not None:
        loss = wrapper.scale_loss(loss)
        scaler = getattr(wrapper, 'loss_scaler', None)
        if scaler is not None:
            loss = scaler.scale(loss)
    elif get_world_size() > 1:
        raise RuntimeError(
            'grad_cache under DDP needs one of rils-mm\'s optimiser wrappers '
            '(FiniteStepOptimWrapper, FiniteStepAmpOptimWrapper, AutocastOptimWrapper): '
            'they tell the micro-batch backward passes the loss scale and the '
            'gradient accumulation; none is active')
    loss.backward()


@dataclass
class StepContext:
    """What ``batch_losses`` hands to ``micro_batch_losses``.

    Attributes:
        shared (dict): tensors of the whole step (e.g. the prototypes of Eq. 8).
        per_sample (dict): (B, ...) tensors, sliced per micro-batch (e.g. the
            membership of C).
    """

    shared: Dict[str, object] = field(default_factory=dict)
    per_sample: Dict[str, torch.Tensor] = field(default_factory=dict)

    def slice(self, index: slice) -> 'StepContext':
        """The context of the micro-batch ``index``."""
        return StepContext(dict(self.shared),
                           {k: v[index] for k, v in self.per_sample.items()})


class _RandomState:
    """The CPU and (where the batch is on one) CUDA generator states, so that
    a micro-batch's second forward draws the dropout / drop-path masks of its
    first (GradCache's ``RandContext``)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(device) if device.type == 'cuda' else None

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda, self.device)


class GradCache:
    """Exact gradient caching for an image-text pre-trainer (see the module).

    Args:
        micro_batch_size (int): M, the images of one micro-batch. The per-rank
            batch must be a multiple of it; a batch of at most M images takes
            today's step.
    """

    def __init__(self, micro_batch_size: int) -> None:
        if not isinstance(micro_batch_size, int) or isinstance(micro_batch_size, bool) \
                or micro_batch_size < 1:
            raise ValueError('grad_cache: micro_batch_size must be a positive int, got '
                             f'{micro_batch_size!r}')
        self.micro_batch_size = micro_batch_size

    def __repr__(self) -> str:
        return f'GradCache(micro_batch_size={self.micro_batch_size})'

    def num_micro_batches(self, batch_size: int) -> int:
        """K for a per-rank batch of ``batch_size`` images."""
        if batch_size <= self.micro_batch_size:
            return 1
        if batch_size % self.micro_batch_size:
            raise ValueError(
                f'grad_cache: the per-rank batch of {batch_size} images is not a multiple '
                f'of micro_batch_size={self.micro_batch_size}; every micro-batch is one '
                'virtual rank and must be as large as the others (set the batch size to '
                'K * micro_batch_size, and drop_last=True in the train loader)')
        return batch_size // self.micro_batch_size

    def __call__(self, model, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """The losses of ``batch`` (every value (B, ...)) for ``model``; their
        backward adds the gradient of the whole batch.

        The returned entries hold the losses' values (the whole batch's, as
        a plain step would log them); one carries the gradient that is still
        to be back-propagated (the last micro-batch's and the cached parameter
        gradients), the others are detached.
        """
        batch_size = len(next(iter(batch.values())))
        num = self.num_micro_batches(batch_size)
        if num == 1 or not torch.is_grad_enabled():
            # one micro-batch is today's step, bit for bit (the two passes would
            # sum the same gradients in another order); a validation loss has no
            # gradient to cache
            return plain_step(model, batch, num)
        slices = [slice(k * self.micro_batch_size, (k + 1) * self.micro_batch_size)
                  for k in range(num)]
        micro = [{name: value[index] for name, value in batch.items()} for index in slices]
        device = next(iter(batch.values())).device

        # 1. embeddings of every micro-batch, without gradient; the coupled losses
        states: List[_RandomState] = []
        parts: List[Dict[str, torch.Tensor]] = []
        with torch.no_grad():
            for micro_batch in micro:
                states.append(_RandomState(device))
                parts.append(model.embed(micro_batch)[0])
        leaves = {name: torch.cat([p[name] for p in parts]).detach().requires_grad_()
                  for name in parts[0]}
        del parts
        losses, context = model.batch_losses(leaves, virtual_ranks=num)
        params = [p for p in model.parameters() if p.requires_grad]
        names = list(leaves)
        grads = torch.autograd.grad(model.parse_losses(losses)[0],
                                    [leaves[n] for n in names] + params, allow_unused=True)
        embed_grads = {n: g for n, g in zip(names, grads) if g is not None}
        param_grads = [(p, g) for p, g in zip(params, grads[len(names):]) if g is not None]
        logged = {k: v.detach() for k, v in losses.items()}
        del leaves, grads, losses

        # 2. per micro-batch: the embeddings again, with gradient, and the local losses
        for k, (micro_batch, index) in enumerate(zip(micro, slices)):
            states[k].restore()
            embeds, aux = model.embed(micro_batch)
            surrogate = sum((at_least_fp32(embeds[n]) * at_least_fp32(embed_grads[n][index])).sum()
                            for n in embeds if n in embed_grads)
            local = model.micro_batch_losses(micro_batch, aux, context.slice(index),
                                             virtual_ranks=num)
            for name, value in local.items():
                logged[name] = logged[name] + value.detach() if name in logged \
                    else value.detach()
            surrogate = surrogate + model.parse_losses(local)[0]
            if k < num - 1:
                _backward(surrogate)
        # the last micro-batch's backward is the optimiser wrapper's, with the
        # cached parameter gradients
        surrogate = surrogate + sum((p * g).sum() for p, g in param_grads)
        return _carry(logged, surrogate)


def plain_step(model, batch: Dict[str, torch.Tensor],
               virtual_ranks: int = 1) -> Dict[str, torch.Tensor]:
    """Today's step: ``embed``, ``batch_losses`` and ``micro_batch_losses`` of
    the whole batch in a row (what :class:`GradCache` computes in pieces)."""
    embeds, aux = model.embed(batch)
    losses, context = model.batch_losses(embeds, virtual_ranks=virtual_ranks)
    losses.update(model.micro_batch_losses(batch, aux, context, virtual_ranks=virtual_ranks))
    return losses


def _carry(logged: Dict[str, torch.Tensor],
           surrogate: torch.Tensor) -> Dict[str, torch.Tensor]:
    """``logged`` with the gradient of ``surrogate`` attached to its first
    loss entry, the values unchanged (the gradient, not the value, is what
    the surrogate is for)."""
    name: Optional[str] = next((k for k in logged if 'loss' in k), None)
    if name is None:
        logged['loss_grad_cache'] = surrogate - surrogate.detach()
    else:
        logged[name] = logged[name] + (surrogate - surrogate.detach()).to(logged[name].dtype)
    return logged
