"""PatchGAN discriminator (Isola et al. 2017, pix2pix): a small fully convolutional critic whose every output
judges one patch of the slice as real or filled, conditioned on the mask (it sees where the hole was)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from medinpaint.models.blocks import group_norm


@dataclass
class PatchGANConfig:
    base_channels: int = 32
    layers: int = 3  # stride-2 layers, as pix2pix's 70x70 PatchGAN; with the 3x3 layers after them each score sees 54x54
    groups: int = 8

    def to_dict(self) -> dict:
        return asdict(self)


class PatchGAN(nn.Module):
    def __init__(self, config: PatchGANConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or PatchGANConfig()
        c = cfg.base_channels
        blocks: list[nn.Module] = [nn.Conv2d(2, c, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        for i in range(1, cfg.layers):
            cin, cout = c * 2 ** (i - 1), c * 2**i
            blocks += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), group_norm(cout, cfg.groups), nn.LeakyReLU(0.2)]
        width = c * 2 ** (cfg.layers - 1)
        blocks += [nn.Conv2d(width, width, 3, padding=1), group_norm(width, cfg.groups), nn.LeakyReLU(0.2),
                   nn.Conv2d(width, 1, 3, padding=1)]
        self.net = nn.Sequential(*blocks)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) slice in [0, 1] and its mask -> (B, 1, H / 2^layers, W / 2^layers) realness scores (3x3 convolutions after the strides, where pix2pix has 4x4)."""
        return self.net(torch.cat([image * 2 - 1, mask], dim=1))


def lsgan_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """Least-squares GAN (Mao et al. 2017): the generator wants its fills scored as real (1)."""
    return F.mse_loss(fake_scores, torch.ones_like(fake_scores))


def lsgan_critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.mse_loss(real_scores, torch.ones_like(real_scores)) + F.mse_loss(fake_scores, torch.zeros_like(fake_scores)))
