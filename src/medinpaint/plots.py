"""Figures people would rather look at than read: training curves and best/worst cases."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_progress(log_csv: Path, out_png: Path) -> None:
    """Training loss (smoothed) and validation MAE against step, from the training CSV log."""
    steps, losses, val_steps, val_mae = [], [], [], []
    with open(log_csv, newline="") as f:
        for row in csv.DictReader(f):
            steps.append(int(row["step"]))
            losses.append(float(row["loss"]))
            if row.get("val_mae"):
                val_steps.append(int(row["step"]))
                val_mae.append(float(row["val_mae"]))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    if losses:
        k = max(1, len(losses) // 50)
        smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
        ax1.plot(steps, losses, color="0.8", lw=0.8, label="per step")
        ax1.plot(steps[k - 1 :], smooth, color="C0", label=f"mean of {k}")
        ax1.legend()
    ax1.set(xlabel="step", ylabel="training loss (L1 in mask, 0..1)", title="loss")
    ax2.plot(val_steps, val_mae, "o-", color="C1")
    ax2.set(xlabel="step", ylabel="MAE, whole image (0..255)", title="validation MAE")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)


def plot_cases(rows: list[tuple[str, float, np.ndarray, np.ndarray, np.ndarray]], out_png: Path, title: str) -> None:
    """One row per case: corrupted, prediction, truth, |error|. `rows` holds (label, mae, corrupted, pred, truth)."""
    fig, axes = plt.subplots(len(rows), 4, figsize=(10, 2.6 * len(rows)), squeeze=False)
    for r, (label, score, corrupted, pred, truth) in enumerate(rows):
        err = np.abs(pred.astype(np.float32) - truth.astype(np.float32))
        panels = [(corrupted, "corrupted"), (pred, "prediction"), (truth, "truth"), (err, f"|error|, MAE {score:.2f}")]
        for c, (img, name) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(img, cmap="magma" if c == 3 else "gray", vmin=0, vmax=60 if c == 3 else 255)
            ax.set_title(f"{label}: {name}" if c == 0 else name, fontsize=9)
            ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
