"""A small conditional VAE of lesion masks: a lesion-centred patch of the mask, given the anatomy around it.

Networks only (the training task and the sampler are in `medinpaint.lesions.learned`). The latent is one vector per
lesion, its shape; the anatomy (one-hot class maps) enters the encoder with the mask, and the decoder at every scale
(a strided conv encoder of its own), so a decoded shape can follow the tissue it sits in. Three stride-2 levels:
the patch side must be a multiple of 8.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from medinpaint.errors import InputError
from medinpaint.models.blocks import ResBlock, downsampling_trunk, group_norm

LEVELS = 3  # stride-2 steps from the patch down to the bottleneck


@dataclass
class MaskVAEConfig:
    patch: int = 32  # side of the square lesion-centred patch, a multiple of 8
    anatomy_classes: int = 3  # anatomy class ids 0 .. anatomy_classes - 1 (0: outside the body)
    base_channels: int = 16
    latent: int = 8
    groups: int = 8

    def __post_init__(self) -> None:
        if self.patch < 8 or self.patch % 2**LEVELS:
            raise InputError(f"the mask patch must be a positive multiple of {2**LEVELS}, got {self.patch}")

    @property
    def widths(self) -> list[int]:
        """Channels at the patch, 1/2, 1/4 and 1/8 (the bottleneck) of its side."""
        c = self.base_channels
        return [c, 2 * c, 4 * c, 4 * c]

    @property
    def bottleneck(self) -> int:
        return self.patch // 2**LEVELS

    def to_dict(self) -> dict:
        return asdict(self)


class MaskVAE(nn.Module):
    def __init__(self, config: MaskVAEConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or MaskVAEConfig()
        w, g, flat = cfg.widths, cfg.groups, cfg.widths[-1] * cfg.bottleneck**2
        self.encoder = nn.Sequential(*downsampling_trunk(1 + cfg.anatomy_classes, w[:LEVELS], g, after_last=True),
                                     group_norm(w[-1], g), nn.SiLU(), nn.Flatten(), nn.Linear(flat, 2 * cfg.latent))
        self.anatomy_trunk = nn.Sequential(*downsampling_trunk(cfg.anatomy_classes, w[:LEVELS], g, after_last=True))
        self.from_latent = nn.Linear(cfg.latent, flat)
        self.levels = nn.ModuleList(ResBlock(w[min(i + 1, LEVELS)] + w[i], w[i], g) for i in range(LEVELS + 1))
        self.up = nn.ModuleList(nn.Sequential(nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(w[i], w[i], 3, padding=1))
                                for i in range(1, LEVELS + 1))
        self.head = nn.Sequential(group_norm(w[0], g), nn.SiLU(), nn.Conv2d(w[0], 1, 3, padding=1))

    def anatomy_features(self, anatomy: torch.Tensor) -> list[torch.Tensor]:
        """The anatomy's features at the patch, 1/2, 1/4 and 1/8 of its side: each residual block's output (before
        its level's stride-2 conv), then the trunk's."""
        feats, h = [], anatomy
        for layer in self.anatomy_trunk:
            h = layer(h)
            if isinstance(layer, ResBlock):
                feats.append(h)
        return feats + [h]

    def encode(self, mask: torch.Tensor, anatomy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mask (B,1,P,P) in [0,1], anatomy one-hot (B,A,P,P) -> (mean, log-variance) of q(z | mask, anatomy)."""
        mean, logvar = self.encoder(torch.cat([mask, anatomy], dim=1)).chunk(2, dim=1)
        return mean, logvar.clamp(-30, 20)

    def decode(self, z: torch.Tensor, anatomy: torch.Tensor) -> torch.Tensor:
        """z (B, latent), anatomy one-hot (B,A,P,P) -> mask logits (B,1,P,P)."""
        feats, s = self.anatomy_features(anatomy), self.config.bottleneck
        h = self.from_latent(z).view(len(z), -1, s, s)
        for i in reversed(range(LEVELS + 1)):
            h = self.levels[i](torch.cat([h, feats[i]], dim=1))
            if i > 0:
                h = self.up[i - 1](h)
        return self.head(h)

    def forward(self, mask: torch.Tensor, anatomy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits of the reconstruction through a reparameterised draw of z, with the posterior's mean and log-variance."""
        mean, logvar = self.encode(mask, anatomy)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
        return self.decode(z, anatomy), mean, logvar


def one_hot(anatomy: torch.Tensor, classes: int) -> torch.Tensor:
    """Class ids (B,P,P) -> float one-hot maps (B,classes,P,P), the network's anatomy input."""
    return F.one_hot(anatomy.long(), classes).permute(0, 3, 1, 2).float()
