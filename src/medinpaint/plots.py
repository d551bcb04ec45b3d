"""Figures people would rather look at than read: training curves and best/worst cases.

Built with matplotlib's object-oriented API (`Figure`, no pyplot), so importing this module never switches the
user's backend and saving works headless."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


def _read_log(log_csv: Path) -> tuple[list[int], list[float], dict[str, tuple[list[int], list[float]]]]:
    """(steps, losses) of rows with a loss, and for each `val_*` column the (steps, values) of rows that have one."""
    steps: list[int] = []
    losses: list[float] = []
    with open(log_csv, newline="") as f:
        reader = csv.DictReader(f)
        val = {name: ([], []) for name in reader.fieldnames or [] if name.startswith("val_")}
        for row in reader:
            step = int(row["step"])
            if row.get("loss"):
                steps.append(step)
                losses.append(float(row["loss"]))
            for name, (xs, ys) in val.items():
                if row.get(name):
                    xs.append(step)
                    ys.append(float(row[name]))
    return steps, losses, val


def plot_progress(log_csv: Path, out_png: Path) -> None:
    """Training loss (smoothed) and every `val_*` column of the training CSV log against step; each task logs
    its own validation measures, so the right panel takes whatever columns the log has."""
    steps, losses, val = _read_log(log_csv)
    fig = Figure(figsize=(10, 3.6))
    ax1, ax2 = fig.subplots(1, 2)
    if losses:
        k = max(1, len(losses) // 50)
        smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
        ax1.plot(steps, losses, color="0.8", lw=0.8, label="per step")
        ax1.plot(steps[k - 1 :], smooth, color="C0", label=f"mean of {k}")
        ax1.legend()
    ax1.set(xlabel="step", ylabel="training loss", title="loss")
    shown = {name: xy for name, xy in val.items() if xy[0]}
    for i, (name, (xs, ys)) in enumerate(shown.items()):
        ax2.plot(xs, ys, "o-", color=f"C{(i + 1) % 10}", label=name.removeprefix("val_"))
    if shown:
        ax2.legend(fontsize=8)
    else:
        ax2.text(0.5, 0.5, "no validation measure", ha="center", va="center", transform=ax2.transAxes)
    ax2.set(xlabel="step", title="validation")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)


def plot_cases(rows: list[tuple[str, float, np.ndarray, np.ndarray, np.ndarray]], out_png: Path, title: str) -> None:
    """One row per case: corrupted, prediction, truth, |error|. `rows` holds (label, mae, corrupted, pred, truth)."""
    fig = Figure(figsize=(10, 2.6 * len(rows)))
    axes = fig.subplots(len(rows), 4, squeeze=False)
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
