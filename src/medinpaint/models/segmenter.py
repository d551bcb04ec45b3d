"""A segmentation U-Net: a CT slice -> per-pixel class logits (e.g. background / body / fat)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from medinpaint.models.unet import ResUNet


@dataclass
class SegmenterConfig:
    classes: int = 3
    in_channels: int = 1
    base_channels: int = 16
    depth: int = 4
    blocks_per_level: int = 1
    groups: int = 8
    attention: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


class SegmentationUNet(ResUNet):
    def __init__(self, config: SegmenterConfig | None = None) -> None:
        cfg = config or SegmenterConfig()
        super().__init__(cfg.in_channels, cfg.classes, cfg.base_channels, cfg.depth, cfg.blocks_per_level, cfg.groups, cfg.attention)
        self.config = cfg

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) in [0, 1], any size -> (B, classes, H, W) logits."""
        return self.body(image)
