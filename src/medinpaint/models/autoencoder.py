"""Plain convolutional autoencoder: the course baseline the U-Net is compared with. The same residual blocks and
widths as the U-Net, but no skip connections: everything the decoder knows has passed the bottleneck.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from medinpaint.models.blocks import ResBlock, group_norm
from medinpaint.models.inpainting import EncoderDecoderNetwork, SideInputs


@dataclass
class AutoencoderConfig(SideInputs):
    base_channels: int = 32
    depth: int = 4  # resolution levels; the input is padded to a multiple of 2 ** (depth - 1)
    blocks_per_level: int = 1
    groups: int = 8


class PlainAutoencoder(EncoderDecoderNetwork):
    def __init__(self, config: AutoencoderConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or AutoencoderConfig()
        widths = [cfg.base_channels * 2**i for i in range(cfg.depth)]
        self.stride = 2 ** (cfg.depth - 1)
        layers: list[nn.Module] = [nn.Conv2d(cfg.in_channels, widths[0], 3, padding=1)]
        for i, w in enumerate(widths):
            layers += [ResBlock(w, w, cfg.groups) for _ in range(cfg.blocks_per_level)]
            if i < cfg.depth - 1:
                layers.append(nn.Conv2d(w, widths[i + 1], 3, stride=2, padding=1))
        self.encoder = nn.Sequential(*layers)
        self.decoder = nn.ModuleList(
            nn.Sequential(nn.Conv2d(widths[i + 1], widths[i], 3, padding=1), *[ResBlock(widths[i], widths[i], cfg.groups) for _ in range(cfg.blocks_per_level)])
            for i in reversed(range(cfg.depth - 1)))
        self.head = nn.Sequential(group_norm(widths[0], cfg.groups), nn.SiLU(), nn.Conv2d(widths[0], 1, 3, padding=1))
