"""What fill-gaps did, shown: training slices, training pairs, target slices beside their filled versions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # no pyplot: importing must not switch the user's backend

from medinpaint.data.slices import to_unit
from medinpaint.fillgaps.datasets import corrupted_pairs, target_dataset

SHOWN = 10


def _grid(rows: list[tuple[str, np.ndarray]], out_png: Path, title: str) -> None:
    """One row of up to SHOWN images per (label, (K, H, W) array in [0, 1]) entry."""
    cols = max(len(images) for _, images in rows)
    fig = Figure(figsize=(1.4 * cols, 1.5 * len(rows) + 0.4))
    axes = fig.subplots(len(rows), cols, squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c in range(cols):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(images):
                ax.imshow(images[c], cmap="gray", vmin=0, vmax=1)
        axes[r, 0].set_title(label, fontsize=9, loc="left")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)


def _spread(n: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(SHOWN, n)).astype(int))


def save_figures(folder: Path, train_images: np.ndarray, images: np.ndarray, filled: np.ndarray, masks: np.ndarray,
                 pool: np.ndarray, source: str, seed: int = 0) -> list[Path]:
    """training_slices.png, training_pairs.png (corrupted, mask, clean) and target_filled.png in `folder`."""
    folder = Path(folder)
    t = _spread(len(train_images))
    corrupted, mask, clean = (x[:, 0].numpy() for x in corrupted_pairs(train_images[t], pool, seed).tensors)
    k = _spread(len(images))
    target, target_mask = (x[:, 0].numpy() for x in target_dataset(images[k], masks[k]).tensors)
    paths = [folder / "training_slices.png", folder / "training_pairs.png", folder / "target_filled.png"]
    _grid([("", clean)], paths[0], f"training slices: {source}")
    _grid([("corrupted", corrupted), ("mask (white = missing)", mask), ("clean", clean)], paths[1], "training pairs")
    _grid([("target", target), ("mask found", target_mask), ("filled", to_unit(filled[k]))], paths[2], "target slices, filled")
    return paths
