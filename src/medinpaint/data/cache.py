"""Packed uint8 caches: decode thousands of PNGs once, load in seconds, and carry in shards of <= 60 MB.

Shards are .npz files (`np.load` reads them) whose members are LZMA-compressed rather than zlib-compressed: with
it the 4,500 training slices and 64 validation slices pack into 60.1 MiB (BENCHMARKS.md), under a GPU machine's
64 MiB carry.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from medinpaint.data.slices import SliceSet, to_uint8
from medinpaint.errors import InputError

INDEX = "medinpaint-cache.json"
MAX_SHARD_BYTES = 60_000_000


def pack(slices: SliceSet, folder: Path, max_shard_bytes: int = MAX_SHARD_BYTES) -> list[Path]:
    """Write `slices` (clean images, masks, tissue, vertebrae) as compressed shards whose raw size is at most
    `max_shard_bytes`, so each file stays under the limit whatever the compression achieves."""
    slices.require_clean()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    h, w = slices.images.shape[1:]
    planes = 1 + (slices.masks is not None) + (slices.tissue is not None) + (slices.labels is not None)  # masks: bits, counted whole
    per_case = h * w * planes + 64
    per_shard = max(1, max_shard_bytes // per_case)
    shards = []
    for n, start in enumerate(range(0, len(slices), per_shard)):
        part = slices.subset(np.arange(start, min(start + per_shard, len(slices))))
        arrays = {"ids": np.array(part.ids), "clean": to_uint8(part.clean)}
        if part.masks is not None:
            arrays["masks"] = np.packbits(part.masks, axis=-1)
        if part.tissue is not None:
            arrays["tissue"] = part.tissue
        if part.vertebrae is not None:
            arrays["vertebrae"] = part.vertebrae
        if part.labels is not None:
            arrays["labels"] = part.labels
        path = folder / f"shard-{n:03d}.npz"
        _save_lzma_npz(path, arrays)
        shards.append(path)
    meta = {"format": 1, "n": len(slices), "height": h, "width": w, "shards": [p.name for p in shards],
            "layout": slices.layout, "extras": slices.extras}
    (folder / INDEX).write_text(json.dumps(meta, indent=1))
    return shards


def _save_lzma_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_LZMA) as zf:
        for name, arr in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.ascontiguousarray(arr), allow_pickle=False)


def is_cache(path: Path) -> bool:
    return Path(path).is_dir() and (Path(path) / INDEX).is_file()


def load(folder: Path) -> SliceSet:
    """Read a packed cache back: with masks, as corrupted/mask/truth triples (as the DM-i-AI folder reads);
    without, as clean slices. A damaged cache (a cut shard, an index that is not `pack`'s) is one line."""
    folder = Path(folder)
    try:
        return _load(folder)
    except InputError:
        raise
    except (ValueError, KeyError, TypeError, EOFError, OSError, zipfile.BadZipFile) as e:
        raise InputError(f"{folder}: a damaged packed cache ({type(e).__name__}: {e}); pack it again with `medinpaint pack`") from None


def _load(folder: Path) -> SliceSet:
    meta = json.loads((folder / INDEX).read_text())
    parts: dict[str, list[np.ndarray]] = {}
    for name in meta["shards"]:
        shard = folder / name
        if not shard.is_file():
            raise InputError(f"{shard}: shard listed in {INDEX} is missing")
        with np.load(shard, allow_pickle=False) as z:
            for key in z.files:
                parts.setdefault(key, []).append(z[key])
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    clean, masks, truth = cat["clean"], None, None
    images = clean
    if "masks" in cat:  # rebuild the DM-i-AI pairs: corrupted is the truth with zeros under the mask
        masks = np.unpackbits(cat["masks"], axis=-1, count=meta["width"]).astype(bool)
        images, truth = np.where(masks, 0, clean).astype(np.uint8), clean
    return SliceSet(
        ids=[str(i) for i in cat["ids"]],
        images=images,
        masks=masks,
        truth=truth,
        tissue=cat.get("tissue"),
        vertebrae=cat.get("vertebrae"),
        labels=cat.get("labels"),
        layout=meta.get("layout", "dmiai"),  # caches written before the layout was recorded all came from DM-i-AI data
        extras=meta.get("extras", {}),
    )
