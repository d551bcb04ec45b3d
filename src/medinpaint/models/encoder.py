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

from medinpaint.constants import VERTEBRA_LEVELS
from medinpaint.models.blocks import downsampling_trunk, group_norm


@dataclass
class EncoderConfig:
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 4, 4)  # each level halves the resolution; then global average pooling
    feature_dim: int = 128
    num_levels: int = VERTEBRA_LEVELS
    groups: int = 8

    def __post_init__(self) -> None:
        self.channel_mults = tuple(self.channel_mults)

    def to_dict(self) -> dict:
        return asdict(self)


class FeatureEncoder(nn.Module):
    def __init__(self, config: EncoderConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or EncoderConfig()
        widths = [cfg.base_channels * m for m in cfg.channel_mults]
        self.trunk = nn.Sequential(*downsampling_trunk(1, widths, cfg.groups, after_last=True), group_norm(widths[-1], cfg.groups), nn.SiLU(),
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
