"""A toy data set and model for tests of the training machinery (loops, hooks,
checkpoints, optimiser wrappers) in an mmengine ``Runner``: milliseconds a step."""
import math
from typing import Iterable, Sequence

import torch
import torch.nn as nn
from mmengine.model import BaseModel
from torch.utils.data import Dataset

__all__ = ['ToyData', 'ToyModel', 'ImageToyModel']


class ToyData(Dataset):
    """``num_samples`` samples; sample ``i`` has ``inputs = (i, i, i)`` (float).

    Args:
        num_samples (int): Length. Defaults to 8.
        with_index (bool): Also give ``data_samples = i``, so that a hook can
            see which samples a batch holds (collate with ``pseudo_collate``).
            Defaults to False.
    """

    def __init__(self, num_samples: int = 8, with_index: bool = False) -> None:
        self.num_samples = num_samples
        self.with_index = with_index

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, i: int) -> dict:
        sample = dict(inputs=torch.full((3, ), float(i)))
        if self.with_index:
            sample['data_samples'] = i
        return sample


class ToyModel(BaseModel):
    """``y = linear(x)`` on the 3 numbers of a :class:`ToyData` sample, with two
    loss terms: ``loss_contra = mean(|y|)`` and ``loss_recon = mean(y^2)``.

    Args:
        noise (bool): Multiply ``y`` by ``torch.rand`` noise drawn from the
            global torch generator, as RILS draws its masks (so a resume that
            does not restore the generator trains differently). Defaults to
            False.
        nan_at_calls (Iterable[int]): Forward calls (0-based, i.e. the
            iterations of a run from scratch) whose ``loss_recon`` is NaN.
            Defaults to ().
    """

    def __init__(self, noise: bool = False, nan_at_calls: Iterable[int] = ()) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 1)
        self.noise = noise
        self.nan_at_calls = set(nan_at_calls)
        self.calls = 0

    def forward(self, inputs, data_samples=None, mode='loss'):
        x = torch.stack(inputs) if isinstance(inputs, list) else inputs
        y = self.linear(x)
        if self.noise:
            y = y * torch.rand(x.shape[0], 1)
        recon = y.pow(2).mean()
        if self.calls in self.nan_at_calls:
            recon = recon * float('nan')
        self.calls += 1
        return dict(loss_contra=y.abs().mean(), loss_recon=recon)


class ImageToyModel(BaseModel):
    """``y = linear(pixels / 255)`` of each image of a real data pipeline's batch (uint8
    images of ``image_shape``; another shape fails in the linear layer), ``loss =
    mean(y^2)``, so that the loss depends on every pixel of every sample.

    Args:
        image_shape (Sequence[int]): ``(C, H, W)`` of the pipeline's images. Defaults
            to ``(3, 8, 8)``.
        noise (bool): Multiply ``y`` by ``torch.rand`` noise from the training
            process's global generator (a resume that does not restore it differs).
            Defaults to False.

    Attributes:
        seen (list): The ``data_samples`` of each forward call, in order.
    """

    def __init__(self, image_shape: Sequence[int] = (3, 8, 8), noise: bool = False) -> None:
        super().__init__()
        self.linear = nn.Linear(math.prod(image_shape), 1)
        self.noise = noise
        self.seen = []

    def forward(self, inputs, data_samples=None, mode='loss'):
        x = torch.stack(list(inputs)) if isinstance(inputs, (list, tuple)) else inputs
        y = self.linear(x.float().flatten(1) / 255)
        if self.noise:
            y = y * torch.rand(x.shape[0], 1)
        self.seen.append(list(data_samples or []))
        return dict(loss=y.pow(2).mean())
