"""Mask generators with one signature, `generator(rng, shape) -> bool array (True = missing)`.

The brush-stroke generator is tuned to the DM-i-AI masks, measured on 200 of them (`benchmarks/mask_stats.py`,
figures in BENCHMARKS.md): coverage 13-74 % (median 40 %), median stroke width 6-82 px (median 29), 98 % touch
the image border, 1-7 connected pieces (median 3).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

MaskGenerator = Callable[[np.random.Generator, tuple[int, int]], np.ndarray]


@dataclass
class BrushStrokes:
    """Free-form strokes: random walks drawn with round brushes, thick and thin, until a coverage is reached."""

    coverage_mean: float = 0.33
    coverage_std: float = 0.11
    coverage_range: tuple[float, float] = (0.12, 0.72)
    width_range: tuple[float, float] = (10.0, 60.0)  # in pixels at 256x256, scaled with the image

    def __call__(self, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
        h, w = shape
        scale = min(h, w) / 256.0
        target = float(np.clip(rng.normal(self.coverage_mean, self.coverage_std), *self.coverage_range))
        canvas = np.zeros((h, w), np.uint8)
        for _ in range(40):
            self._stroke(rng, canvas, scale)
            if canvas.mean() / 255.0 >= target:
                break
        return canvas > 0

    def _stroke(self, rng: np.random.Generator, canvas: np.ndarray, scale: float) -> None:
        h, w = canvas.shape
        lo, hi = self.width_range
        width = np.exp(rng.uniform(np.log(lo), np.log(hi))) * scale
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        angle = rng.uniform(0, 2 * np.pi)
        for _ in range(int(rng.integers(3, 9))):
            angle += rng.normal(0, 0.8)
            length = rng.uniform(15, 60) * scale
            nx, ny = x + length * np.cos(angle), y + length * np.sin(angle)
            seg_width = max(1, int(round(width * rng.uniform(0.7, 1.3))))
            cv2.line(canvas, (int(x), int(y)), (int(nx), int(ny)), 255, seg_width, lineType=cv2.LINE_AA)
            if rng.random() < 0.3:
                cv2.circle(canvas, (int(nx), int(ny)), int(seg_width * rng.uniform(0.5, 1.0)), 255, -1)
            x, y = nx, ny
        canvas[:] = np.where(canvas > 127, 255, 0).astype(np.uint8)


@dataclass
class Stripes:
    """Periodic lines: `missing` pixels out of every `period` along `orientation`, straight or wavy."""

    period: int = 4
    missing: int = 2
    orientation: str = "vertical"  # stripes run top to bottom; "horizontal" runs left to right
    amplitude: float = 0.0  # wave amplitude in pixels (0 = straight)
    wavelength: float = 32.0
    random_phase: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.missing < self.period:
            raise ValueError(f"need 0 < missing < period, got missing={self.missing} period={self.period}")
        if self.orientation not in ("vertical", "horizontal"):
            raise ValueError(f"orientation must be vertical or horizontal, got {self.orientation!r}")

    def __call__(self, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
        h, w = shape
        along, across = (h, w) if self.orientation == "vertical" else (w, h)
        phase = int(rng.integers(self.period)) if self.random_phase else 0
        t = np.arange(along)[:, None]
        shift = np.rint(self.amplitude * np.sin(2 * np.pi * t / self.wavelength)).astype(int)
        pos = (np.arange(across)[None, :] + shift + phase) % self.period
        mask = pos < self.missing
        return mask if self.orientation == "vertical" else mask.T


@dataclass
class Blobs:
    """A few round holes of random size."""

    count_range: tuple[int, int] = (1, 6)
    radius_range: tuple[float, float] = (0.03, 0.15)  # as a fraction of the smaller side

    def __call__(self, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
        h, w = shape
        canvas = np.zeros((h, w), np.uint8)
        for _ in range(int(rng.integers(self.count_range[0], self.count_range[1] + 1))):
            r = max(1, int(rng.uniform(*self.radius_range) * min(h, w)))
            cv2.circle(canvas, (int(rng.integers(w)), int(rng.integers(h))), r, 255, -1)
        return canvas > 0


def mask_statistics(mask: np.ndarray) -> dict[str, float]:
    """Coverage, median stroke width (twice the median medial-axis distance), border contact, piece count."""
    from scipy import ndimage

    cov = float(mask.mean())
    dist = ndimage.distance_transform_edt(mask)
    ridge = dist[(dist >= ndimage.maximum_filter(dist, 3)) & mask]
    width = float(2 * np.median(ridge)) if ridge.size else 0.0
    border = bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())
    return {"coverage": cov, "width": width, "border": float(border), "pieces": float(ndimage.label(mask)[1])}
