"""What every inpainting architecture shares, so that a comparison between them compares only the architecture:
the same inputs (the slice zeroed under the mask, the mask, the tissue one-hot, the vertebra plane), the same padding
of any size to the network's stride, and the same output (a sigmoid, with known pixels passed through unchanged).

An architecture is a config dataclass (with the `SideInputs` fields) and a module subclassing `InpaintingNetwork`
that defines `stride` and `body(x, mask)`, registered in `models/architectures.py`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from medinpaint.constants import MAX_VERTEBRA


@dataclass
class SideInputs:
    """The inputs beside the slice and mask; every inpainting config carries these fields."""

    tissue_classes: int = 3  # 0 disables the tissue input
    use_vertebrae: bool = True
    max_vertebra: int = MAX_VERTEBRA

    @property
    def in_channels(self) -> int:
        return 2 + self.tissue_classes + int(self.use_vertebrae)

    def to_dict(self) -> dict:
        return asdict(self)


def assemble_inputs(cfg: SideInputs, image: torch.Tensor, mask: torch.Tensor, tissue: torch.Tensor | None = None,
                    vertebrae: torch.Tensor | None = None) -> torch.Tensor:
    """(B,1,H,W) image in [0,1] zeroed under the mask, (B,1,H,W) mask, (B,H,W) tissue class ids (0 background,
    1 body, 2 fat; -1 unknown), (B,) vertebra levels (-1 unknown) -> the network's input channels. A missing tissue
    map is an all-zero one-hot and a missing level a zero plane, exactly as -1 values are."""
    parts = [image * (1 - mask), mask]
    b, _, h, w = image.shape
    if cfg.tissue_classes:
        if tissue is None:
            parts.append(image.new_zeros(b, cfg.tissue_classes, h, w))
        else:
            onehot = F.one_hot(tissue.long().clamp(min=0), cfg.tissue_classes).permute(0, 3, 1, 2)
            parts.append(onehot.to(image.dtype) * (tissue >= 0).unsqueeze(1).to(image.dtype))
    if cfg.use_vertebrae:
        level = image.new_zeros(b) if vertebrae is None else (vertebrae.to(image.dtype) + 1) / (cfg.max_vertebra + 1)
        parts.append(level.view(b, 1, 1, 1).expand(b, 1, h, w))
    return torch.cat(parts, dim=1)


def pad_to(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Replicate-pad height and width up to a multiple of `stride` (the caller crops back)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % stride, (-w) % stride
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


class InpaintingNetwork(nn.Module):
    """Base of the inpainting architectures: subclasses set `config` and `stride` and define `body`."""

    config: SideInputs
    stride: int
    denoising = False  # True: trained through `forward(..., training_noise=gen)`, which returns its own loss
    onnx_exportable = True  # False: inference stays in PyTorch (a sampling loop is not one graph)

    def body(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) assembled input and (B, 1, H, W) mask, H and W multiples of `stride` ->
        (B, 1, H, W) logits of the filled slice."""
        raise NotImplementedError

    def forward(self, image: torch.Tensor, mask: torch.Tensor, tissue: torch.Tensor | None = None,
                vertebrae: torch.Tensor | None = None) -> torch.Tensor:
        """Filled image in [0,1]; known pixels are passed through unchanged."""
        h, w = image.shape[-2:]
        x = pad_to(assemble_inputs(self.config, image, mask, tissue, vertebrae), self.stride)
        pred = torch.sigmoid(self.body(x, pad_to(mask, self.stride))[..., :h, :w])
        return image * (1 - mask) + pred * mask


class EncoderDecoderNetwork(InpaintingNetwork):
    """The shape of the networks without skip connections: an encoder down to the lowest resolution, decoder layers
    each after a 2x nearest upsampling, and a head. Subclasses build `encoder`, `decoder` and `head`."""

    encoder: nn.Module
    decoder: nn.ModuleList
    head: nn.Module

    def body(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.encoder(x)
        for layer in self.decoder:
            h = layer(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.head(h)
