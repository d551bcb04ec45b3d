"""Gated-convolution network (Yu et al. 2019, DeepFill v2), its coarse stage: every layer learns a soft, per-pixel,
per-channel gate, out = ELU(conv_f(x)) * sigmoid(conv_g(x)), which generalises the hard mask update of partial
convolutions; a stack of dilated gated convolutions at the lowest resolution widens the context. No skip connections,
as in DeepFill's generator. The feature path is normalised (GroupNorm, as the common PyTorch ports of DeepFill v2
offer): without it the network died (constant zero output) within the warm-up at the shared learning rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from medinpaint.models.blocks import group_norm
from medinpaint.models.inpainting import EncoderDecoderNetwork, SideInputs


class GatedConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, dilation: int = 1, groups: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, 2 * cout, kernel, stride=stride, padding=dilation * (kernel // 2), dilation=dilation)
        self.norm = group_norm(cout, groups) if groups else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feature, gate = self.conv(x).chunk(2, dim=1)
        return F.elu(self.norm(feature)) * torch.sigmoid(gate)


@dataclass
class GatedConvConfig(SideInputs):
    base_channels: int = 32
    downsamplings: int = 2  # stride-2 gated convolutions before the dilated stack
    dilations: tuple[int, ...] = (2, 4, 8, 16)
    groups: int = 8  # GroupNorm groups of the feature path; 0 leaves it unnormalised

    def __post_init__(self) -> None:  # JSON gives lists back
        self.dilations = tuple(self.dilations)


class GatedConvNet(EncoderDecoderNetwork):
    def __init__(self, config: GatedConvConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or GatedConvConfig()
        c = cfg.base_channels
        width = c * 2 ** cfg.downsamplings
        self.stride = 2 ** cfg.downsamplings
        g = cfg.groups
        layers: list[nn.Module] = [GatedConv2d(cfg.in_channels, c, 5, groups=g)]
        for i in range(cfg.downsamplings):
            layers.append(GatedConv2d(c * 2**i, c * 2 ** (i + 1), 3, stride=2, groups=g))
        layers += [GatedConv2d(width, width, 3, dilation=d, groups=g) for d in cfg.dilations]
        self.encoder = nn.Sequential(*layers)
        self.decoder = nn.ModuleList(GatedConv2d(c * 2 ** (i + 1), c * 2**i, 3, groups=g) for i in reversed(range(cfg.downsamplings)))
        self.head = nn.Conv2d(c, 1, 3, padding=1)
