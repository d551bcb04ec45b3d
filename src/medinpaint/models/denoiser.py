"""A conditional U-Net denoiser: noisy 2-channel slice + diffusion time + vertebra class -> v-prediction.

Networks only: the noise schedule and the samplers live in `medinpaint.synthesis.diffusion`, so either can change alone.
Time and class embeddings are summed and enter every residual block as a per-channel scale and shift (FiLM,
as in improved DDPM); the last class (`num_classes - 1`) is the null class, used for classifier-free
dropout in training and for unconditional or guided sampling.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from medinpaint.constants import VERTEBRA_LEVELS
from medinpaint.models.blocks import ResBlock, SelfAttention, group_norm

NUM_CLASSES = VERTEBRA_LEVELS + 1  # vertebra levels 0..24, then the null class
NULL_CLASS = NUM_CLASSES - 1


@dataclass
class DenoiserConfig:
    channels: int = 2  # CT and tissue level
    base_channels: int = 64
    channel_mults: tuple[int, ...] = (1, 2, 2, 4)  # one resolution level each; input side divisible by 2**(levels-1)
    blocks_per_level: int = 2
    attention_levels: tuple[int, ...] = (2, 3)  # levels (0 = full resolution) with self-attention
    num_classes: int = NUM_CLASSES
    groups: int = 8
    cond_channels: int = 0  # channels given beside the noisy sample (an inpainting network's masked slice and maps)

    def __post_init__(self) -> None:
        self.channel_mults = tuple(self.channel_mults)  # JSON metadata gives lists back
        self.attention_levels = tuple(self.attention_levels)

    def to_dict(self) -> dict:
        return asdict(self)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of t in [0, 1] (scaled to 0..1000, the range the frequencies were made for)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = 1000.0 * t.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class Level(nn.Module):
    """The residual blocks (and optional attention) of one resolution level."""

    def __init__(self, cin: int, cout: int, n_blocks: int, emb_dim: int, groups: int, attention: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(ResBlock(cin if i == 0 else cout, cout, groups, emb_dim, zero_init=True) for i in range(n_blocks))
        self.attention = SelfAttention(cout, groups) if attention else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, emb)
        return self.attention(x)


class ConditionalUNet(nn.Module):
    def __init__(self, config: DenoiserConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or DenoiserConfig()
        widths = [cfg.base_channels * m for m in cfg.channel_mults]
        emb_dim = 4 * cfg.base_channels
        self.time_mlp = nn.Sequential(nn.Linear(cfg.base_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_emb = nn.Embedding(cfg.num_classes, emb_dim)
        self.stem = nn.Conv2d(cfg.channels + cfg.cond_channels, widths[0], 3, padding=1)
        n, g, attn = cfg.blocks_per_level, cfg.groups, set(cfg.attention_levels)
        self.down = nn.ModuleList(Level(widths[max(i - 1, 0)], w, n, emb_dim, g, i in attn) for i, w in enumerate(widths))
        self.downsample = nn.ModuleList(nn.Conv2d(w, w, 3, stride=2, padding=1) for w in widths[:-1])
        self.mid = Level(widths[-1], widths[-1], 2, emb_dim, g, attention=True)
        self.upsample = nn.ModuleList(nn.Conv2d(widths[i + 1], widths[i], 3, padding=1) for i in reversed(range(len(widths) - 1)))
        self.up = nn.ModuleList(Level(2 * widths[i], widths[i], n, emb_dim, g, i in attn) for i in reversed(range(len(widths) - 1)))
        self.head = nn.Sequential(group_norm(widths[0], g), nn.SiLU(), nn.Conv2d(widths[0], cfg.channels, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """x (B,C,H,W) noisy slices, t (B,) diffusion time in [0,1], labels (B,) class ids, `cond` (B,cond_channels,H,W)
        when the config has them -> v (B,C,H,W)."""
        emb = self.time_mlp(timestep_embedding(t, self.config.base_channels).to(x.dtype)) + self.class_emb(labels)
        h = self.stem(x if cond is None else torch.cat([x, cond], dim=1))
        skips = []
        for i, level in enumerate(self.down):
            h = level(h, emb)
            if i < len(self.downsample):
                skips.append(h)
                h = self.downsample[i](h)
        h = self.mid(h, emb)
        for upsample, level in zip(self.upsample, self.up):
            h = upsample(F.interpolate(h, scale_factor=2.0, mode="nearest"))
            h = level(torch.cat([h, skips.pop()], dim=1), emb)
        return self.head(h)
