"""Checkpoints that rebuild themselves: safetensors weights with the model kind and config in the metadata."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from medinpaint.errors import InputError
from medinpaint.outputs import atomic_file

META_KEY = "medinpaint"


def save_weights(path: Path, model: torch.nn.Module, kind: str, config: dict, dtype: torch.dtype | None = None, **info: Any) -> Path:
    """Write `model`'s weights (optionally cast, e.g. to bf16 for shipping) with `kind` and `config`."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if dtype is not None:
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    meta = {"kind": kind, "config": config, **info}
    with atomic_file(Path(path)) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta)})
    return Path(path)


def read_metadata(path: Path) -> dict:
    """The medinpaint metadata of a checkpoint; an InputError if the file is not one of ours."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such checkpoint file")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(META_KEY)
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{path}: not a safetensors checkpoint ({exc})") from exc
    if raw is None:
        raise InputError(f"{path}: not a medinpaint checkpoint (no '{META_KEY}' metadata)")
    return json.loads(raw)


def load_weights(path: Path, kind: str) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict in float32, metadata) of a checkpoint that must be of `kind`."""
    meta = read_metadata(path)
    if meta.get("kind") != kind:
        raise InputError(f"{path}: checkpoint of a {meta.get('kind')!r} model, expected {kind!r}")
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    return state, meta


def file_checksum(path: Path) -> str:
    """sha256 of a file, so a served or reported model can be identified exactly."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
