"""The registry of synthesis families (diffusion, VAE, feature encoder): for each, its checkpoint kind, its
default network config by size, the preprocessing it expects, and how a checkpoint of it is loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from medinpaint.checkpoint import CheckpointMeta, Preprocessing, config_from, load_checkpoint, load_state, read_metadata
from medinpaint.errors import InputError
from medinpaint.models import ConditionalUNet, ConditionalVAE, DenoiserConfig, EncoderConfig, FeatureEncoder, VAEConfig

KINDS = {"diffusion": "synth-diffusion", "vae": "synth-vae", "encoder": "synth-encoder"}  # family -> checkpoint kind
SIZES = (64, 128, 256)
PAIR = ("ct", "tissue_level")  # a slice and its tissue map travel together as two channels
PREPROCESSING = {
    "diffusion": Preprocessing(value_range=(-1.0, 1.0), channels=PAIR, vertebra_encoding="class"),
    "vae": Preprocessing(value_range=(0.0, 1.0), channels=PAIR, vertebra_encoding="class"),
    "encoder": Preprocessing(value_range=(0.0, 1.0), channels=("ct",), vertebra_encoding="none"),
}

# Channel multipliers, one per resolution level, bottoming out at 8x8 for every size.
_MULTS = {
    "diffusion": {64: (1, 2, 2, 4), 128: (1, 1, 2, 2, 4), 256: (1, 1, 2, 2, 4, 4)},
    "vae": {64: (1, 2, 4, 4), 128: (1, 2, 4, 4, 4), 256: (1, 1, 2, 4, 4, 4)},
    "encoder": {64: (1, 2, 4, 4), 128: (1, 2, 4, 4, 4), 256: (1, 1, 2, 4, 4, 4)},
}
_BASE = {"diffusion": {64: 48, 128: 48, 256: 32}, "vae": {64: 32, 128: 32, 256: 32}, "encoder": {64: 32, 128: 32, 256: 32}}
_BUILD = {"diffusion": (ConditionalUNet, DenoiserConfig), "vae": (ConditionalVAE, VAEConfig), "encoder": (FeatureEncoder, EncoderConfig)}


def check_choice(family: str, size: int) -> None:
    if family not in KINDS:
        raise InputError(f"--model must be one of {', '.join(KINDS)}, got {family!r}")
    if size not in SIZES:
        raise InputError(f"--size must be one of {', '.join(map(str, SIZES))}, got {size}")


def network_config(family: str, size: int, base_channels: int | None = None, blocks: int | None = None) -> Any:
    """The default network config of `family` at `size`, with the width (and, for diffusion, depth) overridable."""
    check_choice(family, size)
    mults, base = _MULTS[family][size], _BASE[family][size] if base_channels is None else base_channels
    if base < 1 or (blocks is not None and blocks < 1):
        raise InputError("--base-channels and --blocks must be positive")
    if family == "diffusion":
        levels = len(mults)
        return DenoiserConfig(base_channels=base, channel_mults=mults, blocks_per_level=2 if blocks is None else blocks,
                              attention_levels=(levels - 2, levels - 1))
    if family == "vae":
        return VAEConfig(size=size, base_channels=base, channel_mults=mults, latent_dim=128 if size <= 64 else 256)
    return EncoderConfig(base_channels=base, channel_mults=mults)


def config_type(family: str) -> type:
    return _BUILD[family][1]


def build_network(family: str, config: dict | Any) -> nn.Module:
    """A fresh network of `family` from its config (dataclass or the dict stored in a checkpoint)."""
    cls, cfg_cls = _BUILD[family]
    return cls(cfg_cls(**config) if isinstance(config, dict) else config)


def checkpoint_family(path: Path) -> tuple[str, CheckpointMeta]:
    """Which synthesis family ('diffusion', 'vae', 'encoder') a checkpoint holds, and its metadata (read once);
    an InputError for any other kind."""
    meta = read_metadata(path)
    for family, k in KINDS.items():
        if k == meta.kind:
            return family, meta
    raise InputError(f"{path}: checkpoint of a {meta.kind!r} network, expected one of {', '.join(KINDS.values())}")


def load_network(path: Path, family: str) -> tuple[nn.Module, CheckpointMeta]:
    """(network in eval mode with the checkpoint's weights, metadata); the checkpoint must hold `family`."""
    state, meta = load_checkpoint(path, KINDS[family], PREPROCESSING[family])
    if meta.preprocessing.size is None:
        raise InputError(f"{path}: a synthesis checkpoint must record its size")
    network = build_network(family, config_from(meta, config_type(family), path))
    return load_state(network, state, path).eval(), meta
