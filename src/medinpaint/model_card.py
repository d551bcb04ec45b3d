"""What a checkpoint is, read from its file alone: kind, size, parameters, network, preprocessing and provenance.

Why: a user (or a reviewer of a paper) must be able to tell which weights produced a result and how they were
made without building the network or reading code; `medinpaint info` prints this card for the shipped weights
or any checkpoint.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

from safetensors import safe_open

from medinpaint.checkpoint import file_checksum, read_metadata, shipped_weights_dir


def shipped_checkpoints() -> list[Path]:
    """Every checkpoint shipped inside the package, by name."""
    return sorted(shipped_weights_dir().glob("*.safetensors"))


def describe(path: Path) -> dict:
    """The card of one checkpoint: a JSON-ready dict (an InputError if `path` is not a medinpaint checkpoint)."""
    path = Path(path)
    meta = read_metadata(path)
    with safe_open(str(path), framework="pt") as f:
        shapes = {k: f.get_slice(k).get_shape() for k in f.keys()}
        dtypes = sorted({str(f.get_slice(k).get_dtype()) for k in f.keys()})
    return {
        "file": str(path),
        "kind": meta.kind,
        "parameters": sum(math.prod(s) for s in shapes.values()),
        "megabytes": round(path.stat().st_size / 1e6, 2),
        "dtypes": dtypes,
        "sha256": file_checksum(path),
        "network": meta.config,
        "preprocessing": asdict(meta.preprocessing),
        "training": asdict(meta.training),
        "format": meta.format,
        "package_version": meta.package_version,
    }


def format_card(card: dict) -> str:
    """The card as a few aligned lines for a terminal."""
    t, p = card["training"], card["preprocessing"]
    origin = f"fine-tuned from {t['started_from']}" if t["started_from"] else "trained from scratch"
    data = [f"window {tuple(p['intensity_window'])} HU" if p["intensity_window"] else "window unknown",
            f"{p['pixel_spacing_mm']} mm pixels" if p["pixel_spacing_mm"] else "pixel size unknown",
            f"{p['size']}x{p['size']}" if p["size"] else "any size"]
    rows = [
        ("kind", f"{card['kind']}, {card['parameters'] / 1e6:.2f} M parameters, {card['megabytes']} MB ({', '.join(card['dtypes'])})"),
        ("sha256", card["sha256"]),
        ("network", json.dumps(card["network"])),
        ("data", ", ".join(data)),
        ("training", f"{t['name'] or '?'}: {t['steps']} steps, {t['minutes']} min, {t['slices']} slices, seed {t['seed']}, "
                     f"{t['processes']} process(es); {origin}"),
        ("written by", f"medinpaint {card['package_version']} (checkpoint format {card['format']})"),
    ]
    return "\n".join([card["file"]] + [f"  {name:<11}{value}" for name, value in rows])
