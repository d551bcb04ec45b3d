"""Checkpoints that rebuild themselves: safetensors weights with everything needed to use them in the metadata.

The metadata (JSON under the key "medinpaint") records the format version, the package version, the network's
kind and config, the preprocessing the network expects (value range, image channels, tissue-map coding, how the
vertebra level enters, the intensity window and size of the training data) and how it was trained. Every field
written is a field of a dataclass below and is read back into it; an unknown field, a checkpoint of another
kind or preprocessing this version of the code does not apply is a one-line `InputError`, never a traceback.
Checkpoints written before the format had a version (format 1) are read and upgraded on the fly.
"""

from __future__ import annotations

import hashlib
import json
import numbers
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from medinpaint.constants import TISSUE_LEVELS, VERTEBRA_LEVELS
from medinpaint.devices import check_device
from medinpaint.errors import InputError
from medinpaint.outputs import atomic_file

META_KEY = "medinpaint"
FORMAT = 2
VERTEBRA_ENCODINGS = ("plane", "class", "none")


def shipped_weights_dir() -> Path:
    """The package's `weights/` folder, where the shipped checkpoints live (wherever the package is installed)."""
    return Path(str(resources.files("medinpaint") / "weights"))


def _package_version() -> str:
    from medinpaint import __version__

    return __version__


@dataclass(frozen=True)
class Preprocessing:
    """How the pixels a network sees are made from the data."""

    value_range: tuple[float, float] = (0.0, 1.0)  # uint8 0..255 is mapped linearly onto this range
    channels: tuple[str, ...] = ("ct",)  # image channels, in order ("ct", "tissue_level")
    tissue_levels: tuple[int, ...] = TISSUE_LEVELS  # tissue-map value of class 0, 1, 2
    vertebra_levels: int = VERTEBRA_LEVELS
    vertebra_encoding: str = "plane"  # plane: a constant plane (level + 1) / 25, 0 = unknown; class: an embedding
    intensity_window: tuple[float, float] | None = None  # the HU window the 0..255 data came in; None: unknown
    pixel_spacing_mm: float | None = None  # the training slices' in-plane pixel size; None: unknown
    size: int | None = None  # slices resized to size x size; None: any size

    def __post_init__(self) -> None:  # JSON gives lists back
        for name in ("value_range", "channels", "tissue_levels", "intensity_window"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(value))
        if self.vertebra_encoding not in VERTEBRA_ENCODINGS:
            raise ValueError(f"vertebra_encoding must be one of {VERTEBRA_ENCODINGS}, got {self.vertebra_encoding!r}")
        window = self.intensity_window
        if window is not None and not (len(window) == 2 and all(isinstance(v, numbers.Real) for v in window) and window[0] < window[1]):
            raise ValueError(f"intensity_window must be two numbers, low < high, got {list(window)}")
        levels = self.tissue_levels
        if not all(isinstance(v, numbers.Integral) and 0 <= v <= 255 for v in levels) or len(set(levels)) != len(levels):
            raise ValueError(f"tissue_levels must be distinct values in 0..255, got {list(levels)}")

    def fixed(self) -> tuple:
        """What the code that uses a network must agree with (the rest describes the data)."""
        return self.value_range, self.channels, self.tissue_levels, self.vertebra_levels, self.vertebra_encoding


@dataclass
class Training:
    """How the weights were made."""

    name: str = ""
    steps: int = 0
    minutes: float = 0.0
    slices: int = 0  # training slices
    processes: int = 1
    seed: int = 0  # also the seed of the patient split
    vertebra_counts: list[int] | None = None  # slices per vertebra level, for generators that sample levels
    started_from: str = ""  # fine-tuned from this checkpoint (file name and sha256); empty: trained from scratch


@dataclass
class CheckpointMeta:
    kind: str
    config: dict  # the network config, as its dataclass's fields
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    training: Training = field(default_factory=Training)
    schedule: dict | None = None  # a diffusion network's noise schedule
    sampling: dict | None = None  # what a generator draws besides the network's input (e.g. where lesions sit)
    format: int = FORMAT
    package_version: str = field(default_factory=_package_version)

    def to_json(self) -> str:
        return json.dumps(asdict(self), allow_nan=False)  # strict JSON, as every reader of `medinpaint info --json` expects

    @classmethod
    def from_dict(cls, raw: dict, source: Path) -> CheckpointMeta:
        """Parse the stored metadata; every key must be known."""
        if not isinstance(raw, dict):
            raise InputError(f"{source}: malformed checkpoint metadata (a JSON {type(raw).__name__}, not an object)")
        if "format" not in raw:
            raw = _upgrade_format_1(raw, source)
        if not isinstance(raw["format"], int) or isinstance(raw["format"], bool):
            raise InputError(f"{source}: malformed checkpoint metadata (format {raw['format']!r} is not an integer)")
        if raw["format"] < 1:
            raise InputError(f"{source}: malformed checkpoint metadata (format {raw['format']})")
        if raw["format"] > FORMAT:
            raise InputError(f"{source}: checkpoint format {raw['format']} is newer than this medinpaint reads ({FORMAT}); upgrade medinpaint")
        try:
            _check_keys(raw, cls, source, "metadata")
            _check_keys(raw.get("preprocessing", {}), Preprocessing, source, "preprocessing")
            _check_keys(raw.get("training", {}), Training, source, "training")
            return cls(**{**raw, "preprocessing": Preprocessing(**raw.get("preprocessing", {})),
                          "training": Training(**raw.get("training", {}))})
        except (TypeError, ValueError) as exc:
            raise InputError(f"{source}: malformed checkpoint metadata ({exc})") from None


def _check_keys(raw: dict, cls: type, source: Path, where: str) -> None:
    unknown = sorted(set(raw) - {f.name for f in fields(cls)})
    if unknown:
        raise InputError(f"{source}: unknown checkpoint {where} field {unknown[0]!r} (written by a newer or other program?)")


_FORMAT_1_TRAINING = {"name": "name", "steps": "steps", "train_minutes": "minutes", "train_slices": "slices",
                      "processes": "processes", "seed": "seed", "vertebra_counts": "vertebra_counts"}


def _upgrade_format_1(raw: dict, source: Path) -> dict:
    """Format 1 (medinpaint 0.1 before versioned metadata): kind, config and training facts side by side. Its
    preprocessing was not recorded: it is filled in by `load_checkpoint` from what the family expects."""
    unknown = sorted(set(raw) - {"kind", "config", "size", "diffusion", *_FORMAT_1_TRAINING})
    if unknown:
        raise InputError(f"{source}: unknown checkpoint metadata field {unknown[0]!r} (written by a newer or other program?)")
    return {"format": 1, "package_version": "0.1.0", "kind": raw.get("kind"), "config": raw.get("config", {}),
            "preprocessing": {"size": raw["size"]} if "size" in raw else {}, "schedule": raw.get("diffusion"),
            "training": {new: raw[old] for old, new in _FORMAT_1_TRAINING.items() if old in raw}}


def save_checkpoint(path: Path, network: torch.nn.Module, meta: CheckpointMeta, dtype: torch.dtype | None = None) -> Path:
    """Write `network`'s weights (optionally cast, e.g. to float16 for shipping) with `meta`, atomically."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in network.state_dict().items()}
    if dtype is not None:
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    with atomic_file(Path(path)) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: meta.to_json()})
    return Path(path)


def read_metadata(path: Path) -> CheckpointMeta:
    """The metadata of a checkpoint; an InputError if the file is not one of ours."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: a folder, not a checkpoint file (a run folder's weights are its model.safetensors)")
    if not path.is_file():
        raise InputError(f"{path}: no such checkpoint file")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(META_KEY)
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{path}: not a safetensors checkpoint ({exc})") from exc
    if raw is None:
        raise InputError(f"{path}: not a medinpaint checkpoint (no '{META_KEY}' metadata)")
    try:
        parsed = json.loads(raw, parse_constant=_not_a_number)
    except (json.JSONDecodeError, ValueError) as exc:
        raise InputError(f"{path}: checkpoint metadata is not JSON ({exc})") from None
    return CheckpointMeta.from_dict(parsed, path)


def _not_a_number(constant: str) -> float:
    raise ValueError(f"{constant} is not a JSON number")


def load_checkpoint(path: Path, kinds: str | Collection[str], expected: Preprocessing) -> tuple[dict[str, torch.Tensor], CheckpointMeta]:
    """(state dict in float32, metadata) of a checkpoint whose kind is one of `kinds` and whose network expects
    the preprocessing the caller applies (`expected`; a format-1 checkpoint is taken to expect it)."""
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    meta = read_metadata(path)
    if meta.kind not in kinds:
        raise InputError(f"{path}: checkpoint of a {meta.kind!r} network, expected {' or '.join(map(repr, kinds))}")
    if meta.format == 1:
        meta.preprocessing = Preprocessing(**{**asdict(expected), "size": meta.preprocessing.size})
    elif meta.preprocessing.fixed() != expected.fixed():
        raise InputError(f"{path}: the network expects preprocessing {meta.preprocessing.fixed()}, this code applies {expected.fixed()}")
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    return state, meta


def load_state(network: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> torch.nn.Module:
    """Put `state` into `network`; a one-line error when the weights do not fit the config in the metadata."""
    try:
        network.load_state_dict(state)
    except RuntimeError:
        raise InputError(f"{path}: weights do not match the network config in its metadata") from None
    return network


def config_from(meta: CheckpointMeta, config_type: type, path: Path) -> Any:
    """The network config dataclass of a checkpoint; a field this version does not know is a one-line error."""
    try:
        return config_type(**meta.config)
    except TypeError as exc:
        raise InputError(f"{path}: network config in the metadata does not fit this version ({exc})") from None


def network_from(meta: CheckpointMeta, config_type: type, network_type: Callable[[Any], torch.nn.Module], path: Path) -> torch.nn.Module:
    """The (untrained) network a checkpoint's config describes; a config whose values build none (a depth of 0, a
    width given as text) is a one-line error, not the traceback of the network's constructor."""
    config = config_from(meta, config_type, path)
    try:
        return network_type(config)
    except (TypeError, ValueError, IndexError, RuntimeError, ZeroDivisionError) as exc:
        raise InputError(f"{path}: its network config builds no network ({type(exc).__name__}: {exc})") from None


def load_members(path: str | Path | list[str | Path] | None, default: Path, device: str,
                 load_one: Callable[[Path], tuple[torch.nn.Module, CheckpointMeta]]
                 ) -> tuple[list[torch.nn.Module], list[CheckpointMeta], str, str]:
    """The networks a `from_pretrained` call names: one checkpoint, a list (an ensemble), or None for `default`.
    (networks, metadata, joint name, checksum: of the file, or of the members' checksums for an ensemble)."""
    check_device(device)
    paths = [Path(p) for p in path] if isinstance(path, (list, tuple)) else [Path(path) if path is not None else default]
    if not paths:
        raise InputError("an ensemble needs at least one checkpoint")
    networks, metas = zip(*(load_one(p) for p in paths))
    for p, m in zip(paths[1:], metas[1:]):  # averaged members must see the same pixels: one window, one pixel size
        if m.preprocessing != metas[0].preprocessing:
            differ = next(f.name for f in fields(Preprocessing) if getattr(m.preprocessing, f.name) != getattr(metas[0].preprocessing, f.name))
            raise InputError(f"{p}: an ensemble's members must expect the same data, but its {differ} is "
                             f"{getattr(m.preprocessing, differ)!r}, {paths[0].name}'s {getattr(metas[0].preprocessing, differ)!r}")
    checksum = file_checksum(paths[0]) if len(paths) == 1 else hashlib.sha256("".join(map(file_checksum, paths)).encode()).hexdigest()
    name = "+".join(m.training.name or p.stem for m, p in zip(metas, paths))
    return list(networks), list(metas), name, checksum


def file_checksum(path: Path) -> str:
    """sha256 of a file, so a served or reported network can be identified exactly."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()

