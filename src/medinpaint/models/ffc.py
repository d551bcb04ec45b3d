"""Fourier-convolution network (Suvorov et al. 2022, LaMa), after LaMa's `ffc.py`: fast Fourier convolutions
(Chi et al. 2020) split the channels into a local part (ordinary 3x3 convolutions) and a global part whose spectral
transform sees the whole slice at once: a 1x1 convolution over the real and imaginary parts of the 2-D FFT. Large
holes need exactly that receptive field.

Differences from LaMa, for this project's small CPU batches: GroupNorm instead of BatchNorm, and no local Fourier
unit (LaMa's big-lama does not use it either).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from medinpaint.models.blocks import group_norm
from medinpaint.models.inpainting import EncoderDecoderNetwork, SideInputs


class FourierUnit(nn.Module):
    """x -> irfft2(act(norm(conv1x1([Re, Im] of rfft2(x))))), orthonormal FFT; `norm=False` leaves just the linear
    spectral map (for the tests' hand-computed values)."""

    def __init__(self, channels: int, groups: int = 8, norm: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2 * channels, 2 * channels, 1, bias=False)
        self.post = nn.Sequential(group_norm(2 * channels, groups), nn.ReLU()) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        spectrum = torch.fft.rfft2(x.float(), norm="ortho")
        y = torch.cat([spectrum.real, spectrum.imag], dim=1).to(x.dtype)
        y = self.post(self.conv(y)).float()
        return torch.fft.irfft2(torch.complex(y[:, :c], y[:, c:]), s=(h, w), norm="ortho").to(x.dtype)


class SpectralTransform(nn.Module):
    """LaMa's global branch: 1x1 conv (halving the channels), the Fourier unit with a residual, 1x1 conv out."""

    def __init__(self, cin: int, cout: int, groups: int) -> None:
        super().__init__()
        mid = max(1, cout // 2)
        self.reduce = nn.Sequential(nn.Conv2d(cin, mid, 1, bias=False), group_norm(mid, groups), nn.ReLU())
        self.fourier = FourierUnit(mid, groups)
        self.expand = nn.Conv2d(mid, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.reduce(x)
        return self.expand(h + self.fourier(h))


class FFC(nn.Module):
    """One fast Fourier convolution on a (local, global) pair: local<-local+global by 3x3 convolutions,
    global<-local by a 3x3 convolution plus global by the spectral transform; then norm and ReLU on each part."""

    def __init__(self, channels: int, global_ratio: float, groups: int) -> None:
        super().__init__()
        self.cg = int(round(channels * global_ratio))
        self.cl = channels - self.cg
        cl, cg = self.cl, self.cg
        self.l2l = nn.Conv2d(cl, cl, 3, padding=1, padding_mode="reflect")
        self.g2l = nn.Conv2d(cg, cl, 3, padding=1, padding_mode="reflect")
        self.l2g = nn.Conv2d(cl, cg, 3, padding=1, padding_mode="reflect")
        self.g2g = SpectralTransform(cg, cg, groups)
        self.post_l = nn.Sequential(group_norm(cl, groups), nn.ReLU())
        self.post_g = nn.Sequential(group_norm(cg, groups), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        local, glob = x[:, : self.cl], x[:, self.cl :]
        out_l = self.post_l(self.l2l(local) + self.g2l(glob))
        out_g = self.post_g(self.l2g(local) + self.g2g(glob))
        return torch.cat([out_l, out_g], dim=1)


class FFCResBlock(nn.Module):
    def __init__(self, channels: int, global_ratio: float, groups: int) -> None:
        super().__init__()
        self.ffc1, self.ffc2 = FFC(channels, global_ratio, groups), FFC(channels, global_ratio, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.ffc2(self.ffc1(x))


@dataclass
class FFCConfig(SideInputs):
    base_channels: int = 32
    downsamplings: int = 2
    blocks: int = 4  # FFC residual blocks at the lowest resolution (LaMa: 9 at 64 channels x 8)
    global_ratio: float = 0.75  # share of channels in the global (spectral) part, LaMa's 0.75
    groups: int = 8


class FFCNet(EncoderDecoderNetwork):
    """LaMa's generator, scaled down: 7x7 stem, stride-2 downsampling, FFC residual blocks, nearest upsampling."""

    def __init__(self, config: FFCConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or FFCConfig()
        c = cfg.base_channels
        width = c * 2**cfg.downsamplings
        self.stride = 2**cfg.downsamplings
        layers: list[nn.Module] = [nn.Conv2d(cfg.in_channels, c, 7, padding=3, padding_mode="reflect"), group_norm(c, cfg.groups), nn.ReLU()]
        for i in range(cfg.downsamplings):
            cin, cout = c * 2**i, c * 2 ** (i + 1)
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), group_norm(cout, cfg.groups), nn.ReLU()]
        layers += [FFCResBlock(width, cfg.global_ratio, cfg.groups) for _ in range(cfg.blocks)]
        self.encoder = nn.Sequential(*layers)
        self.decoder = nn.ModuleList(nn.Sequential(nn.Conv2d(c * 2 ** (i + 1), c * 2**i, 3, padding=1), group_norm(c * 2**i, cfg.groups), nn.ReLU())
                                     for i in reversed(range(cfg.downsamplings)))
        self.head = nn.Conv2d(c, 1, 7, padding=3, padding_mode="reflect")
