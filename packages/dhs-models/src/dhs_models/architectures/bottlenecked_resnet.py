"""A compact pre-activation bottleneck ResNet in the style of Lanusse et al. 2018 (CMU DeepLens).

CMU DeepLens showed that a deep but narrow residual network trained from scratch matches much
larger networks on ground-based lens finding; the published Paper IV replication has 194,433
parameters. This network keeps that budget:

* stem: 3x3 convolution, 3 -> ``base_ch`` channels, stride 1 (a 64-101 px stamp keeps its
  resolution; arcs are only a few pixels wide);
* four stages of widths ``base_ch * (1, 2, 4, 8)``, each opening with a stride-2 unit (except the
  first) and containing ``blocks`` pre-activation bottleneck units (He et al. 2016, "Identity
  mappings"): BN-ReLU-1x1 (width/4) - BN-ReLU-3x3 - BN-ReLU-1x1 (width), added to an identity
  shortcut, or a strided 1x1 projection when the shape changes;
* a final BN-ReLU, global average pooling, one logit.

With ``base_ch = 27`` and ``blocks = (5, 5, 4, 2)`` (16 units, 49 weight layers) the count is
194,340, within 0.05 % of the published 194,433.
"""

from __future__ import annotations

import torch
from torch import nn

from dhs_models.architectures.base import LensClassifier
from dhs_models.architectures.configs import BottleneckedResNetConfig


class PreActBottleneck(nn.Module):
    """BN-ReLU-conv1x1 -> BN-ReLU-conv3x3 -> BN-ReLU-conv1x1, plus a shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        mid = max(c_out // 4, 1)
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, mid, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, c_out, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.project = (
            nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False) if (stride != 1 or c_in != c_out) else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu(self.bn1(x))
        # with a projection the shortcut also sees the pre-activated input (He et al. 2016, fig. 4e)
        shortcut = self.project(pre) if self.project is not None else x
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        return out + shortcut


class BottleneckedResNetBackbone(nn.Module):
    def __init__(self, base_ch: int, blocks: tuple[int, ...]) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, base_ch, 3, padding=1, bias=False)
        units: list[nn.Module] = []
        c_in = base_ch
        for stage, n_units in enumerate(blocks):
            c_out = base_ch * 2**stage
            for i in range(n_units):
                units.append(PreActBottleneck(c_in, c_out, stride=2 if (i == 0 and stage > 0) else 1))
                c_in = c_out
        self.units = nn.Sequential(*units)
        self.final = nn.Sequential(nn.BatchNorm2d(c_in), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_channels = c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.final(self.units(self.stem(x)))), 1)


def build_bottlenecked_resnet(config: BottleneckedResNetConfig) -> LensClassifier:
    """Compact pre-activation bottleneck ResNet (Lanusse et al. 2018 style), one logit out."""
    backbone = BottleneckedResNetBackbone(config.base_ch, config.blocks)
    return LensClassifier(
        backbone, backbone.out_channels, head_dropout=config.head_dropout, metadata=config.metadata
    )
