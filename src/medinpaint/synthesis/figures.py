"""The report's figures: samples beside real slices, intensity and tissue histograms, the closest pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure  # no pyplot: importing must not switch the user's backend

from medinpaint.data.slices import to_uint8

Triples = tuple[np.ndarray, np.ndarray, np.ndarray]  # CT uint8 (N,H,W), tissue uint8 (N,H,W), vertebrae (N,)


def _show(ax: Axes, image: np.ndarray, title: str = "") -> None:
    ax.imshow(image, cmap="gray", vmin=0, vmax=255)
    ax.set_title(title, fontsize=7)
    ax.axis("off")


def plot_grid(sources: dict[str, Triples], out_png: Path, columns: int = 8) -> None:
    """For each source (real first, then each model), a row of CT slices and a row of their tissue maps."""
    fig = Figure(figsize=(1.3 * columns, 2.7 * len(sources)))
    axes = fig.subplots(2 * len(sources), columns, squeeze=False)
    for r, (name, (ct, tissue, levels)) in enumerate(sources.items()):
        for c in range(columns):
            for row, image in ((2 * r, ct), (2 * r + 1, tissue)):
                if c < len(image):
                    _show(axes[row, c], image[c], f"{name}, L{int(levels[c])}" if row == 2 * r else "tissue")
                else:
                    axes[row, c].axis("off")
    fig.tight_layout()
    fig.savefig(out_png, dpi=90)


def tissue_fractions(tissue: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per slice: share of the image that is body (tissue > 0), and share of the body that is fat (255)."""
    body = (tissue > 0).reshape(len(tissue), -1).mean(1)
    fat = (tissue == 255).reshape(len(tissue), -1).mean(1) / np.maximum(body, 1e-9)
    return body, fat


def plot_histograms(sources: dict[str, Triples], out_png: Path) -> None:
    """Densities of CT intensity inside the body, body fraction and fat share of the body, per source."""
    fig = Figure(figsize=(13, 3.6))
    axes = fig.subplots(1, 3)
    for name, (ct, tissue, _) in sources.items():
        body, fat = tissue_fractions(tissue)
        axes[0].hist(ct[tissue > 0], bins=64, range=(0, 255), density=True, histtype="step", label=name)
        axes[1].hist(body, bins=30, range=(0, 1), density=True, histtype="step", label=name)
        axes[2].hist(fat, bins=30, range=(0, 1), density=True, histtype="step", label=name)
    titles = ("CT intensity inside the body (0..255)", "body fraction of the slice", "fat share of the body")
    for ax, title in zip(axes, titles):
        ax.set(title=title, ylabel="density")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=90)


def plot_closest(rows: list[tuple[str, np.ndarray, np.ndarray, float, float]], out_png: Path) -> None:
    """One row per pair: (label, sample CT, nearest training CT, distance, distance ratio), closest first."""
    fig = Figure(figsize=(6.5, 2.2 * len(rows)))
    axes = fig.subplots(len(rows), 3, squeeze=False)
    for r, (label, sample, nearest, dist, ratio) in enumerate(rows):
        diff = np.abs(sample.astype(np.float32) - nearest.astype(np.float32))
        _show(axes[r, 0], to_uint8(sample), f"{label}: sample")
        _show(axes[r, 1], to_uint8(nearest), f"nearest training slice, RMS {dist:.1f}")
        axes[r, 2].imshow(diff, cmap="magma", vmin=0, vmax=60)
        axes[r, 2].set_title(f"|difference|, ratio to 2nd {ratio:.2f}", fontsize=7)
        axes[r, 2].axis("off")
    fig.tight_layout()
    fig.savefig(out_png, dpi=90)
