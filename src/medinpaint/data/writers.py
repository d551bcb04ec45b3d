"""Write predictions back in the layout they came in."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medinpaint.data.png import write_gray_png
from medinpaint.data.slices import SliceSet, to_uint8


def write_predictions(folder: Path, source: SliceSet, filled: np.ndarray) -> list[Path]:
    """Write `filled` (N,H,W) into `folder`: DM-i-AI/PNG -> `<case id>.png` (uint8);
    .npy -> `images.npy` with the input's dtype and shape."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if source.layout == "npy":
        out = filled if source.images.dtype != np.uint8 else to_uint8(filled)
        out = out.astype(source.images.dtype, copy=False)
        if source.source_shape is not None:
            out = out.reshape(source.source_shape)
        target = folder / "images.npy"
        np.save(target, out)
        return [target]
    paths = []
    for case_id, image in zip(source.ids, to_uint8(filled)):
        target = folder / f"{case_id}.png"
        write_gray_png(target, image)
        paths.append(target)
    return paths
