"""The inpainting architectures by name: a config dataclass and the network built from it. Adding one is a network
file in `models/` and a line here; `compare` and the checkpoint code find it by this name."""

from __future__ import annotations

from typing import Any

from torch import nn

from medinpaint.errors import InputError
from medinpaint.models.autoencoder import AutoencoderConfig, PlainAutoencoder
from medinpaint.models.diffusion_inpainting import DiffusionInpaintingConfig, DiffusionInpaintingNet
from medinpaint.models.ffc import FFCConfig, FFCNet
from medinpaint.models.gated_conv import GatedConvConfig, GatedConvNet
from medinpaint.models.partial_conv import PartialConvConfig, PartialConvUNet
from medinpaint.models.unet import MaskAwareUNet, UNetConfig

ARCHITECTURES: dict[str, tuple[type, type[nn.Module]]] = {
    "unet": (UNetConfig, MaskAwareUNet),
    "autoencoder": (AutoencoderConfig, PlainAutoencoder),
    "partial-conv": (PartialConvConfig, PartialConvUNet),
    "gated-conv": (GatedConvConfig, GatedConvNet),
    "ffc": (FFCConfig, FFCNet),
    "diffusion": (DiffusionInpaintingConfig, DiffusionInpaintingNet),
}


def denoises(name: str) -> bool:
    """Whether an architecture is trained as a denoiser (its own objective, not the inpainting losses)."""
    return getattr(ARCHITECTURES[name][1], "denoising", False)


def checkpoint_kind(name: str) -> str:
    """The checkpoint kind of an architecture: `inpainting-unet` (the shipped one's), `inpainting-ffc`, ..."""
    return f"inpainting-{name}"


def architecture_of(kind: str) -> str:
    return kind.removeprefix("inpainting-")


def config_of(name: str, stored: Any) -> Any:
    """An architecture's config from a dataclass, a dict (JSON) or None (the defaults)."""
    check_architecture(name)
    config_type = ARCHITECTURES[name][0]
    if stored is None:
        return config_type()
    return config_type(**stored) if isinstance(stored, dict) else stored


def check_architecture(name: str) -> None:
    if name not in ARCHITECTURES:
        raise InputError(f"unknown architecture {name!r}: choose from {', '.join(ARCHITECTURES)}")


def build_architecture(name: str, **config: Any) -> nn.Module:
    """The network `name` with its default config, fields overridden by `config`."""
    check_architecture(name)
    config_type, network_type = ARCHITECTURES[name]
    return network_type(config_type(**config))
