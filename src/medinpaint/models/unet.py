"""A mask-aware U-Net: corrupted slice + mask (+ tissue one-hot, + vertebra level) -> filled slice.

Side inputs are optional at call time: a missing tissue map is an all-zero one-hot and a missing vertebra level
is a zero plane, which the training loop also shows the network now and then, so one model serves both.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from medinpaint.models.blocks import ResBlock, SelfAttention, group_norm
from medinpaint.models.inpainting import SideInputs, assemble_inputs


@dataclass
class UNetConfig(SideInputs):
    base_channels: int = 32
    depth: int = 4  # resolution levels; the input is padded to a multiple of 2 ** (depth - 1)
    blocks_per_level: int = 2
    groups: int = 8
    attention: bool = False  # self-attention at the lowest resolution: context across the whole slice
    dropout: float = 0.0  # inside every residual block, between its two convolutions


class ResUNet(nn.Module):
    """The residual U-Net body the inpainting and segmentation networks share: a stem, `depth` levels of residual
    blocks joined by stride-2 convolutions and skip connections, optional self-attention at the lowest
    resolution, and a head. Inputs of any size are padded (replicate) to the stride and cropped back."""

    def __init__(self, in_channels: int, out_channels: int, base_channels: int, depth: int, blocks_per_level: int,
                 groups: int, attention: bool, dropout: float = 0.0) -> None:
        super().__init__()
        widths = [base_channels * 2**i for i in range(depth)]
        self.stride = 2 ** (depth - 1)
        self.stem = nn.Conv2d(in_channels, widths[0], 3, padding=1)
        self.down_blocks = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for i, w in enumerate(widths):
            self.down_blocks.append(nn.Sequential(*[ResBlock(w, w, groups, dropout=dropout) for _ in range(blocks_per_level)]))
            if i < depth - 1:
                self.downsample.append(nn.Conv2d(w, widths[i + 1], 3, stride=2, padding=1))
        self.bottleneck = SelfAttention(widths[-1], groups) if attention else nn.Identity()
        self.upsample = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for i in reversed(range(depth - 1)):
            self.upsample.append(nn.Conv2d(widths[i + 1], widths[i], 3, padding=1))
            blocks = [ResBlock(2 * widths[i], widths[i], groups, dropout=dropout)]
            blocks += [ResBlock(widths[i], widths[i], groups, dropout=dropout) for _ in range(blocks_per_level - 1)]
            self.up_blocks.append(nn.Sequential(*blocks))
        self.head = nn.Sequential(group_norm(widths[0], groups), nn.SiLU(), nn.Conv2d(widths[0], out_channels, 3, padding=1))

    def body(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) -> (B, out_channels, H, W) head output, for any H and W."""
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.stride, (-w) % self.stride
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        x = self.stem(x)
        skips = []
        for i, block in enumerate(self.down_blocks):
            x = block(x)
            if i < len(self.downsample):
                skips.append(x)
                x = self.downsample[i](x)
        x = self.bottleneck(x)
        for up, block in zip(self.upsample, self.up_blocks):
            x = up(F.interpolate(x, scale_factor=2.0, mode="nearest"))
            x = block(torch.cat([x, skips.pop()], dim=1))
        return self.head(x)[..., :h, :w]


class MaskAwareUNet(ResUNet):
    def __init__(self, config: UNetConfig | None = None) -> None:
        cfg = config or UNetConfig()
        super().__init__(cfg.in_channels, 1, cfg.base_channels, cfg.depth, cfg.blocks_per_level, cfg.groups, cfg.attention,
                         cfg.dropout)
        self.config = cfg

    def assemble_inputs(
        self,
        image: torch.Tensor,
        mask: torch.Tensor,
        tissue: torch.Tensor | None = None,
        vertebrae: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return assemble_inputs(self.config, image, mask, tissue, vertebrae)

    def forward(
        self,
        image: torch.Tensor,
        mask: torch.Tensor,
        tissue: torch.Tensor | None = None,
        vertebrae: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Filled image in [0,1]; known pixels are passed through unchanged."""
        pred = torch.sigmoid(self.body(self.assemble_inputs(image, mask, tissue, vertebrae)))
        return image * (1 - mask) + pred * mask
