"""Training losses of the inpainting family, on the network's composite output (known pixels already the truth):
L1 or MSE over the missing pixels, SSIM over the image, Zhao et al.'s mix (0.84 SSIM + 0.16 L1), and L1 plus a
feature (perceptual) distance in the feature maps of the encoder this project trains on CT
(`synth train --model encoder`), since no ImageNet network may be downloaded and none would know anatomy.

The SSIM is differentiable torch code with the window of `metrics.ssim` (Gaussian, sigma 1.5, 11x11, K1 0.01,
K2 0.03, the border the window leaves out ignored), so the loss optimises the metric the reports show;
`tests/test_losses.py` holds the two equal.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from medinpaint.errors import InputError
from medinpaint.models.blocks import ResBlock

LOSSES = ("l1", "mse", "ssim", "l1+ssim", "l1+perceptual")
SSIM_SHARE = 0.84  # Zhao et al. 2017, "Loss functions for image restoration with neural networks"
PERCEPTUAL_NEEDS_ENCODER = "--loss l1+perceptual needs an encoder: --perceptual-encoder PATH (synth train --model encoder)"
SSIM_WINDOW = 11  # pixels: the SSIM's Gaussian window (sigma 1.5), which must fit inside an image
PERCEPTUAL_WEIGHT = 0.1  # the feature distance's weight beside L1 (LaMa weighs its perceptual loss at 0.1 too)


class PerceptualFeatures:
    """The frozen encoder's feature map at the end of each of its resolution levels (after each residual block)."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        self.layers = []
        for layer in encoder.trunk:
            if isinstance(layer, torch.nn.AdaptiveAvgPool2d):
                break
            self.layers.append(layer.eval().requires_grad_(False))

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        for layer in self.layers:
            x = layer(x)
            if isinstance(layer, ResBlock):
                maps.append(x)
        return maps


def perceptual_distance(features: PerceptualFeatures, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over levels of the L1 distance between the feature maps of `pred` and `target`."""
    with torch.no_grad():
        wanted = features(target)
    return torch.stack([(a - b).abs().mean() for a, b in zip(features(pred), wanted)]).mean()


@functools.lru_cache(maxsize=4)
def _gaussian_window(sigma: float, radius: int) -> torch.Tensor:
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).float()[None, None]


def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM of (B, 1, H, W) images over the pixels the whole window covers (H, W > 10)."""
    window = _gaussian_window(sigma, int(3.5 * sigma + 0.5)).to(pred.device, pred.dtype)
    blur = lambda a: F.conv2d(a, window)  # noqa: E731  valid: only where the window lies inside the image
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = blur(pred), blur(target)
    vx, vy, cxy = blur(pred * pred) - mx * mx, blur(target * target) - my * my, blur(pred * target) - mx * my
    return (((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))).mean()


def inpainting_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, kind: str,
                    features: PerceptualFeatures | None = None) -> torch.Tensor:
    """`kind` of LOSSES between the filled `pred` and `target` ((B, 1, H, W) in [0, 1]); `mask` 1 = missing;
    `features` the encoder the perceptual loss measures with."""
    if kind in ("l1", "mse"):
        diff = (pred - target).abs() if kind == "l1" else (pred - target) ** 2
        return (diff * mask).sum() / mask.sum().clamp(min=1)
    if kind == "ssim":
        return 1 - ssim(pred, target)
    if kind == "l1+ssim":
        return SSIM_SHARE * (1 - ssim(pred, target)) + (1 - SSIM_SHARE) * inpainting_loss(pred, target, mask, "l1")
    if kind == "l1+perceptual":
        if features is None:
            raise InputError(PERCEPTUAL_NEEDS_ENCODER)
        return inpainting_loss(pred, target, mask, "l1") + PERCEPTUAL_WEIGHT * perceptual_distance(features, pred, target)
    raise InputError(f"--loss must be one of {', '.join(LOSSES)}, got {kind!r}")
