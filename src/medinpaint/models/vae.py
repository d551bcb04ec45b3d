"""A conditional convolutional VAE: the baseline the diffusion model must beat.

Networks only (the L1 + beta*KL objective is in `medinpaint.synthesis.objectives`). The latent is one vector per slice, so a
sample is a draw from N(0, I) decoded in one pass; the vertebra class is added to the hidden layer of both the
encoder and the decoder (class `num_classes - 1` = unknown).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from medinpaint.models.blocks import ResBlock, downsampling_trunk, group_norm
from medinpaint.models.denoiser import NUM_CLASSES


@dataclass
class VAEConfig:
    size: int = 64  # slice side; the flattened bottleneck is (size / 2**(levels-1))**2 pixels
    channels: int = 2
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 4, 4)
    latent_dim: int = 128
    num_classes: int = NUM_CLASSES
    groups: int = 8

    def __post_init__(self) -> None:
        self.channel_mults = tuple(self.channel_mults)

    @property
    def bottleneck(self) -> int:
        return self.size // 2 ** (len(self.channel_mults) - 1)

    def to_dict(self) -> dict:
        return asdict(self)


class ConditionalVAE(nn.Module):
    def __init__(self, config: VAEConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or VAEConfig()
        widths = [cfg.base_channels * m for m in cfg.channel_mults]
        flat, hidden, g = widths[-1] * cfg.bottleneck**2, 2 * cfg.latent_dim, cfg.groups
        enc = downsampling_trunk(cfg.channels, widths, g, after_last=False)
        self.encoder = nn.Sequential(*enc, group_norm(widths[-1], g), nn.SiLU(), nn.Flatten())
        self.enc_hidden = nn.Linear(flat, hidden)
        self.enc_class = nn.Embedding(cfg.num_classes, hidden)
        self.to_moments = nn.Linear(hidden, 2 * cfg.latent_dim)
        self.dec_hidden = nn.Linear(cfg.latent_dim, hidden)
        self.dec_class = nn.Embedding(cfg.num_classes, hidden)
        self.from_hidden = nn.Linear(hidden, flat)
        dec: list[nn.Module] = []
        for i in reversed(range(len(widths))):
            dec.append(ResBlock(widths[min(i + 1, len(widths) - 1)], widths[i], g))
            if i > 0:
                dec += [nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(widths[i], widths[i], 3, padding=1)]
        self.decoder = nn.Sequential(*dec, group_norm(widths[0], g), nn.SiLU(),
                                     nn.Conv2d(widths[0], cfg.channels, 3, padding=1))
        self._top = widths[-1]

    def encode(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B,C,H,W) in [0,1], labels (B,) -> (mean, log-variance) of q(z | x, class), each (B, latent_dim)."""
        h = F.silu(self.enc_hidden(self.encoder(x)) + self.enc_class(labels))
        mean, logvar = self.to_moments(h).chunk(2, dim=1)
        return mean, logvar.clamp(-30, 20)

    def decode(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """z (B, latent_dim), labels (B,) -> slices (B,C,H,W) in [0,1]."""
        h = F.silu(self.dec_hidden(z) + self.dec_class(labels))
        s = self.config.bottleneck
        h = self.from_hidden(h).view(len(z), self._top, s, s)
        return torch.sigmoid(self.decoder(h))

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction through a reparameterised draw of z, with the posterior's mean and log-variance."""
        mean, logvar = self.encode(x, labels)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
        return self.decode(z, labels), mean, logvar
