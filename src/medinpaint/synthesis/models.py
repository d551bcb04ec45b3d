"""The three synthesis model kinds: their default sizes, how each is built, and how it is named in checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from medinpaint.checkpoint import load_weights, read_metadata
from medinpaint.errors import InputError
from medinpaint.synthesis.denoiser import ConditionalUNet, DenoiserConfig
from medinpaint.synthesis.encoder import EncoderConfig, FeatureEncoder
from medinpaint.synthesis.vae import ConditionalVAE, VAEConfig

KINDS = {"diffusion": "synth-diffusion", "vae": "synth-vae", "encoder": "synth-encoder"}  # model -> checkpoint kind
SIZES = (64, 128, 256)

# Channel multipliers, one per resolution level, bottoming out at 8x8 for every size.
_MULTS = {
    "diffusion": {64: (1, 2, 2, 4), 128: (1, 1, 2, 2, 4), 256: (1, 1, 2, 2, 4, 4)},
    "vae": {64: (1, 2, 4, 4), 128: (1, 2, 4, 4, 4), 256: (1, 1, 2, 4, 4, 4)},
    "encoder": {64: (1, 2, 4, 4), 128: (1, 2, 4, 4, 4), 256: (1, 1, 2, 4, 4, 4)},
}
_BASE = {"diffusion": {64: 48, 128: 48, 256: 32}, "vae": {64: 32, 128: 32, 256: 32}, "encoder": {64: 32, 128: 32, 256: 32}}
_BUILD = {"diffusion": (ConditionalUNet, DenoiserConfig), "vae": (ConditionalVAE, VAEConfig), "encoder": (FeatureEncoder, EncoderConfig)}


def check_choice(model: str, size: int) -> None:
    if model not in KINDS:
        raise InputError(f"--model must be one of {', '.join(KINDS)}, got {model!r}")
    if size not in SIZES:
        raise InputError(f"--size must be one of {', '.join(map(str, SIZES))}, got {size}")


def network_config(model: str, size: int, base_channels: int | None = None, blocks: int | None = None) -> Any:
    """The default network config of `model` at `size`, with the width (and, for diffusion, depth) overridable."""
    check_choice(model, size)
    mults, base = _MULTS[model][size], base_channels or _BASE[model][size]
    if base < 1 or (blocks is not None and blocks < 1):
        raise InputError("--base-channels and --blocks must be positive")
    if model == "diffusion":
        levels = len(mults)
        return DenoiserConfig(base_channels=base, channel_mults=mults, blocks_per_level=blocks or 2,
                              attention_levels=(levels - 2, levels - 1))
    if model == "vae":
        return VAEConfig(size=size, base_channels=base, channel_mults=mults, latent_dim=128 if size <= 64 else 256)
    return EncoderConfig(base_channels=base, channel_mults=mults)


def build_network(model: str, config: dict | Any) -> nn.Module:
    """A fresh network of `model` from its config (dataclass or the dict stored in a checkpoint)."""
    cls, cfg_cls = _BUILD[model]
    return cls(cfg_cls(**config) if isinstance(config, dict) else config)


def checkpoint_model(path: Path) -> str:
    """Which synthesis model ('diffusion', 'vae', 'encoder') a checkpoint holds; an InputError for any other."""
    kind = read_metadata(path).get("kind")
    for model, k in KINDS.items():
        if k == kind:
            return model
    raise InputError(f"{path}: checkpoint of a {kind!r} model, expected one of {', '.join(KINDS.values())}")


def load_network(path: Path, model: str) -> tuple[nn.Module, dict]:
    """(network in eval mode with the checkpoint's weights, metadata); the checkpoint must hold `model`."""
    state, meta = load_weights(path, KINDS[model])
    net = build_network(model, meta["config"])
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError(f"{path}: weights do not match the model config in its metadata") from exc
    return net.eval(), meta
