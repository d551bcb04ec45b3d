"""Partial-convolution U-Net (Liu et al. 2018, "Image inpainting for irregular holes using partial convolutions").

A partial convolution sees only the known pixels of its window and rescales by how many there were:
    out = W . (x * valid) * (window size / known count) + b   where the window holds a known pixel, else 0,
and the pixel becomes known for the next layer (the mask shrinks layer by layer). Written after NVIDIA's
`PartialConv2d` (multi-channel masks: the count runs over channels too), with the mask update done without gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from medinpaint.models.blocks import group_norm
from medinpaint.models.inpainting import InpaintingNetwork, SideInputs


class PartialConv2d(nn.Conv2d):
    """`forward(x, valid) -> (out, new_valid)`; `valid` is (B, 1, H, W) or (B, C_in, H, W), 1 where known."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 - nn.Conv2d's own arguments
        super().__init__(*args, **kwargs)
        self.register_buffer("window_ones", torch.ones(1, 1, *self.kernel_size), persistent=False)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        with torch.no_grad():  # known values in each window, over the mask's channels too
            count = F.conv2d(valid.sum(1, keepdim=True), self.window_ones, stride=self.stride, padding=self.padding,
                             dilation=self.dilation)
            window = float(valid.shape[1] * self.window_ones.numel())
            new_valid = (count > 0).to(x.dtype)
            ratio = window / count.clamp(min=1.0) * new_valid
        raw = F.conv2d(x * valid, self.weight, None, self.stride, self.padding, self.dilation)
        out = raw * ratio
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1) * new_valid
        return out, new_valid


@dataclass
class PartialConvConfig(SideInputs):
    base_channels: int = 32
    depth: int = 4  # resolution levels; the input is padded to a multiple of 2 ** (depth - 1)
    groups: int = 8  # GroupNorm after every partial convolution but the first (the paper's BatchNorm, batch-free)


class PartialConvUNet(InpaintingNetwork):
    """Encoder of stride-2 partial convolutions, decoder of nearest upsampling, skip concatenation (features and
    masks) and partial convolutions, as in the paper (smaller: 3x3 kernels, `depth` levels). The partial
    convolutions see the slice, whose known pixels are the mask that shrinks layer by layer. The side inputs (mask,
    tissue, vertebra), which the paper has not and which are known everywhere, enter through ordinary convolutions:
    added to the first layer's output and beside the last layer's features. Counting them as known pixels of the
    partial convolution would make every window known after the first layer (the mask would never shrink: a plain
    convolutional U-Net). Without the normalisation the known-count rescaling (up to the window's size) blows
    activations up and the sigmoid output saturates at zero within the warm-up, at the learning rate every
    architecture shares."""

    def __init__(self, config: PartialConvConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or PartialConvConfig()
        widths = [cfg.base_channels * 2 ** min(i, 3) for i in range(cfg.depth)]
        self.stride = 2 ** (cfg.depth - 1)
        self.stem = PartialConv2d(1, widths[0], 3, padding=1)
        self.stem_side = nn.Conv2d(cfg.in_channels - 1, widths[0], 3, padding=1, bias=False)
        self.down = nn.ModuleList(PartialConv2d(widths[i], widths[i + 1], 3, stride=2, padding=1) for i in range(cfg.depth - 1))
        self.up = nn.ModuleList(PartialConv2d(widths[i + 1] + widths[i], widths[i], 3, padding=1)
                                for i in reversed(range(cfg.depth - 1)))
        self.down_norms = nn.ModuleList(group_norm(widths[i + 1], cfg.groups) for i in range(cfg.depth - 1))
        self.up_norms = nn.ModuleList(group_norm(widths[i], cfg.groups) for i in reversed(range(cfg.depth - 1)))
        self.head = nn.Conv2d(widths[0] + cfg.in_channels - 1, 1, 3, padding=1)

    def body(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        side = x[:, 1:]
        h, m = self.stem(x[:, :1], 1 - mask)
        h = F.leaky_relu(h + self.stem_side(side), 0.2)
        skips = []
        for conv, norm in zip(self.down, self.down_norms):
            skips.append((h, m))
            h, m = conv(h, m)
            h = F.leaky_relu(norm(h), 0.2)
        for conv, norm in zip(self.up, self.up_norms):
            skip_h, skip_m = skips.pop()
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            m = F.interpolate(m, scale_factor=2.0, mode="nearest")
            both = torch.cat([m.expand(-1, h.shape[1], -1, -1), skip_m.expand(-1, skip_h.shape[1], -1, -1)], dim=1)
            h, m = conv(torch.cat([h, skip_h], dim=1), both)
            h = F.leaky_relu(norm(h), 0.2)
        return self.head(torch.cat([h, side], dim=1))
