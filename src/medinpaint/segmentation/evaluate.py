"""Score segmentations against label maps: summary.json (means first), per_case.csv and cases.png."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from medinpaint.data.readers import load_npy
from medinpaint.errors import InputError
from medinpaint.evaluation import read_case_pngs, write_tables
from medinpaint.metrics import SegmentationMetrics
from medinpaint.segmentation.data import LabelledSet, to_class_ids

CLASS_COLOURS = ListedColormap(["black", "tab:red", "gold", "tab:blue", "tab:green", "tab:purple", "tab:cyan", "tab:pink"])


def score(data: LabelledSet, pred: np.ndarray) -> SegmentationMetrics:
    """Per-case metrics of `pred` (N, H, W) class ids against `data.labels`."""
    if data.labels is None:
        raise InputError("scoring needs label maps")
    metrics = SegmentationMetrics(data.names)
    for case, p, t in zip(data.ids, pred, data.labels):
        metrics(case, p, t)
    return metrics


def read_segmentations(folder: Path, data: LabelledSet) -> np.ndarray:
    """Predictions for every case of `data`, as class ids, from `<case id>.png` files or a `labels.npy` stack
    (`folder` may name the stack itself)."""
    folder = Path(folder)
    npy = folder if folder.suffix == ".npy" else folder / "labels.npy"
    if folder.is_file() and npy != folder:
        raise InputError(f"{folder}: not a folder of <case id>.png label maps nor a .npy stack of them")
    if npy.is_file():
        raw = load_npy(npy)
        if raw.shape != data.images.shape:
            raise InputError(f"{npy}: shape {raw.shape} does not match the data {data.images.shape}")
        return to_class_ids(raw, data.values, str(npy))
    if not folder.is_dir():
        raise InputError(f"{folder}: no such {'file' if npy == folder else 'folder'}")
    return np.stack([to_class_ids(img, data.values, str(f)) for f, img in read_case_pngs(folder, data.ids, data.images.shape[1:])])


def write_report(report: Path, data: LabelledSet, pred: np.ndarray, metrics: SegmentationMetrics, n_show: int = 3) -> dict:
    """summary.json, per_case.csv and cases.png (best and worst by the last class's Dice) into `report`."""
    summary = write_tables(report, metrics.aggregate(), metrics.rows)
    key = f"dice_{data.names[-1]}"
    order = list(np.argsort([r[key] for r in metrics.rows]))
    chosen = order[::-1][:n_show] + [i for i in order[:n_show] if i not in order[::-1][:n_show]]
    fig = Figure(figsize=(8, 2.7 * len(chosen)))
    axes = fig.subplots(len(chosen), 3, squeeze=False)
    for r, i in enumerate(chosen):
        label = ("best " if r < n_show else "worst ") + data.ids[i]
        panels = [(data.images[i], "gray", f"{label}: CT"), (data.labels[i], CLASS_COLOURS, "truth"),
                  (pred[i], CLASS_COLOURS, f"prediction, {key} {metrics.rows[i][key]:.3f}")]
        for c, (img, cmap, title) in enumerate(panels):
            axes[r, c].imshow(img, cmap=cmap, vmin=0, vmax=255 if c == 0 else CLASS_COLOURS.N - 1, interpolation="nearest")
            axes[r, c].set_title(title, fontsize=9)
            axes[r, c].axis("off")
    fig.suptitle(f"best and worst cases (mean Dice {summary['mean_dice']:.3f}, n={summary['n']})")
    fig.tight_layout()
    fig.savefig(report / "cases.png", dpi=90)
    return summary
