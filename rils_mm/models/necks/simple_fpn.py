"""SimpleFPN: a feature pyramid from the single stride-16 map of a plain ViT.

ViTDet (Li et al., ECCV 2022, Sec. 3, Fig. 2c): the last block's map (stride 16)
is turned into strides 4, 8, 16, 32 by two 2x2 stride-2 deconvolutions (with a
LayerNorm and GELU between them), one deconvolution, identity, and a 2x2
max-pool; each level then gets a 1x1 conv and a 3x3 conv, both followed by a
LayerNorm over channels; a stride-64 level is a 1x1 max-pool (stride 2) of the
stride-32 output (Mask R-CNN's P6 for the RPN).

mmdetection keeps its ViTDet ``SimpleFPN`` in ``projects/`` (not in the
installed package), hence this small neck. It is registered in mmpretrain's
``MODELS`` next to :class:`RILSViT`: use ``type='mmpretrain.SimpleFPN'``.
"""
from typing import List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmpretrain.models.utils import build_norm_layer
from mmpretrain.registry import MODELS


@MODELS.register_module()
class SimpleFPN(BaseModule):
    """ViTDet's simple feature pyramid.

    Args:
        backbone_channel (int): channels of the backbone's stride-16 map.
        in_channels (Sequence[int]): channels after the rescaling step of the
            four levels (ViTDet: ``C/4, C/2, C, C``).
        out_channels (int): channels of every output level.
        num_outs (int): 4 (strides 4-32) or 5 (plus stride 64).
        norm_cfg (dict): norm after each conv; ``LN2d`` (LayerNorm over channels)
            as in ViTDet.
        init_cfg (dict, optional): see :class:`mmengine.model.BaseModule`.
    """

    def __init__(self,
                 backbone_channel: int,
                 in_channels: Sequence[int],
                 out_channels: int,
                 num_outs: int = 5,
                 norm_cfg: dict = dict(type='LN2d', eps=1e-6),
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        if len(in_channels) != 4:
            raise ValueError(f'SimpleFPN: in_channels needs 4 entries (strides 4, 8, '
                             f'16, 32), got {list(in_channels)}')
        if num_outs not in (4, 5):
            raise ValueError(f'SimpleFPN: num_outs must be 4 or 5, got {num_outs}')
        self.num_outs = num_outs
        c, c4, c8 = backbone_channel, in_channels[0], in_channels[1]
        self.fpn1 = nn.Sequential(  # stride 16 -> 4
            nn.ConvTranspose2d(c, c // 2, 2, 2), build_norm_layer(norm_cfg, c // 2),
            nn.GELU(), nn.ConvTranspose2d(c // 2, c4, 2, 2))
        self.fpn2 = nn.Sequential(nn.ConvTranspose2d(c, c8, 2, 2))  # 16 -> 8
        self.fpn3 = nn.Sequential(nn.Identity())  # 16
        self.fpn4 = nn.Sequential(nn.MaxPool2d(2, 2))  # 16 -> 32
        self.lateral_convs = nn.ModuleList()
        self.fpn_convs = nn.ModuleList()
        for ch in in_channels:
            self.lateral_convs.append(nn.Sequential(
                nn.Conv2d(ch, out_channels, 1, bias=False),
                build_norm_layer(norm_cfg, out_channels)))
            self.fpn_convs.append(nn.Sequential(
                nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
                build_norm_layer(norm_cfg, out_channels)))

    def forward(self, inputs: Tuple[torch.Tensor]) -> Tuple[torch.Tensor, ...]:
        """``inputs``: the backbone's outputs; the last one is the stride-16 map."""
        x = inputs[-1] if isinstance(inputs, (tuple, list)) else inputs
        feats: List[torch.Tensor] = [
            self.fpn1(x), self.fpn2(x), self.fpn3(x), self.fpn4(x)]
        outs = [fpn(lat(f)) for f, lat, fpn in zip(feats, self.lateral_convs,
                                                   self.fpn_convs)]
        if self.num_outs == 5:
            outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        return tuple(outs)
