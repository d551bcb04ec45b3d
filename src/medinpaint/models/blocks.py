"""Building blocks shared by every network: one residual block, one self-attention, one downsampling trunk."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm that still works when a layer has fewer channels than `groups` (one channel a group), or a count
    `groups` does not divide (their greatest common divisor)."""
    return nn.GroupNorm(channels if channels <= groups else math.gcd(groups, channels), channels)


class ResBlock(nn.Module):
    """Pre-norm residual block. With `emb_dim`, an embedding (diffusion time, class) modulates the second norm
    as a per-channel scale and shift (FiLM, as in improved DDPM). `zero_init` makes the block start as the
    identity, which keeps deep denoisers stable early in training."""

    def __init__(self, cin: int, cout: int, groups: int, emb_dim: int | None = None, zero_init: bool = False,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.norm1 = group_norm(cin, groups)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        if emb_dim:
            self.emb = nn.Linear(emb_dim, 2 * cout)
        self.norm2 = group_norm(cout, groups)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        if zero_init:
            nn.init.zeros_(self.conv2.weight)
            nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm2(self.conv1(F.silu(self.norm1(x))))
        if emb is not None:
            scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
            h = h * (1 + scale) + shift
        return self.conv2(self.dropout(F.silu(h))) + self.skip(x)


class SelfAttention(nn.Module):
    """Multi-head self-attention over the pixels of a (low-resolution) feature map, with a residual; the output
    projection starts at zero, so adding attention to a network starts as the identity."""

    def __init__(self, channels: int, groups: int, head_channels: int = 32) -> None:
        super().__init__()
        self.heads = max(1, channels // head_channels)
        self.norm = group_norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)  # (b, heads, hw, c/heads)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


def downsampling_trunk(in_channels: int, widths: list[int], groups: int, after_last: bool) -> list[nn.Module]:
    """A stem conv, then per level a residual block and a stride-2 conv (none after the last level unless
    `after_last`): the convolutional half of the feature encoder and of the VAE."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, padding=1)]
    for i, w in enumerate(widths):
        layers.append(ResBlock(widths[max(i - 1, 0)], w, groups))
        if after_last or i < len(widths) - 1:
            layers.append(nn.Conv2d(w, w, 3, stride=2, padding=1))
    return layers
