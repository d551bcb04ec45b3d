"""The feature network for fidelity and diversity figures, trained by this project on real CT slices.

No pretrained image network can be downloaded here, and an ImageNet one would not know anatomy anyway. So the
Fréchet distance and precision/recall are measured in the pooled features of a small CNN trained (on the
training patients only) to tell from the CT slice alone its vertebra level and its body and fat fractions:
features that must capture anatomy, position and tissue composition, which is what a synthetic slice should
get right. Networks only; the objective is in `objectives.py`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from medinpaint.data.slices import MAX_VERTEBRA
from medinpaint.models.unet import ResBlock


@dataclass
class EncoderConfig:
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 4, 4)  # each level halves the resolution; then global average pooling
    feature_dim: int = 128
    num_levels: int = MAX_VERTEBRA + 1
    groups: int = 8

    def __post_init__(self) -> None:
        self.channel_mults = tuple(self.channel_mults)

    def to_dict(self) -> dict:
        return asdict(self)


def downsampling_trunk(in_channels: int, widths: list[int], groups: int, after_last: bool) -> list[nn.Module]:
    """A stem conv, then per level a residual block and a stride-2 conv (none after the last level unless
    `after_last`): the convolutional half of this encoder and of the VAE's."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, padding=1)]
    for i, w in enumerate(widths):
        layers.append(ResBlock(widths[max(i - 1, 0)], w, groups))
        if after_last or i < len(widths) - 1:
            layers.append(nn.Conv2d(w, w, 3, stride=2, padding=1))
    return layers


class FeatureEncoder(nn.Module):
    def __init__(self, config: EncoderConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or EncoderConfig()
        widths = [cfg.base_channels * m for m in cfg.channel_mults]
        self.trunk = nn.Sequential(*downsampling_trunk(1, widths, cfg.groups, after_last=True), nn.GroupNorm(min(cfg.groups, widths[-1]), widths[-1]), nn.SiLU(),
                                   nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], cfg.feature_dim))
        self.level_head = nn.Linear(cfg.feature_dim, cfg.num_levels)
        self.tissue_head = nn.Linear(cfg.feature_dim, 2)

    def features(self, ct: torch.Tensor) -> torch.Tensor:
        """ct (B,1,H,W) in [0,1], any size -> (B, feature_dim)."""
        return self.trunk(ct)

    def forward(self, ct: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(vertebra-level logits (B, 25), predicted (body, fat) fractions (B, 2))."""
        f = F.silu(self.features(ct))
        return self.level_head(f), torch.sigmoid(self.tissue_head(f))
