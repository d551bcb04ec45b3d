"""Image and segmentation metrics, as plain functions and as an accumulate-then-aggregate object.

Inpainting metrics take uint8 images (or floats in 0..255) and work in 0..255 units; `mae` is the DM-i-AI
challenge score: the mean absolute error over the whole image.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.ndimage import gaussian_filter

DATA_RANGE = 255.0


def _f64(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def mae(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean absolute error over the whole image (the challenge score)."""
    return float(np.mean(np.abs(_f64(pred) - _f64(truth))))


def mae_in_mask(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    """Mean absolute error over the missing pixels only."""
    m = np.asarray(mask, bool)
    return float(np.abs(_f64(pred) - _f64(truth))[m].mean()) if m.any() else 0.0


def psnr(pred: np.ndarray, truth: np.ndarray, data_range: float = DATA_RANGE) -> float:
    """Peak signal-to-noise ratio in dB; infinite for identical images."""
    mse = float(np.mean((_f64(pred) - _f64(truth)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(data_range**2 / mse))


def ssim(pred: np.ndarray, truth: np.ndarray, data_range: float = DATA_RANGE, sigma: float = 1.5) -> float:
    """Mean structural similarity with a Gaussian window (sigma 1.5, as Wang et al. 2004 and scikit-image's
    `gaussian_weights=True`), constants K1=0.01, K2=0.03."""
    x, y = _f64(pred), _f64(truth)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    blur = lambda a: gaussian_filter(a, sigma, truncate=3.5)  # noqa: E731  (11x11 window)
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    pad = 5  # ignore the border where the window leaves the image, as scikit-image does
    return float(s[pad:-pad, pad:-pad].mean()) if min(s.shape) > 2 * pad else float(s.mean())


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice overlap of two binary masks; 1.0 when both are empty."""
    p, t = np.asarray(pred, bool), np.asarray(truth, bool)
    total = p.sum() + t.sum()
    return 1.0 if total == 0 else float(2 * np.logical_and(p, t).sum() / total)


def jaccard(pred: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two binary masks; 1.0 when both are empty."""
    p, t = np.asarray(pred, bool), np.asarray(truth, bool)
    union = np.logical_or(p, t).sum()
    return 1.0 if union == 0 else float(np.logical_and(p, t).sum() / union)


INPAINTING_METRICS: dict[str, Callable[..., float]] = {
    "mae": lambda p, t, m: mae(p, t),
    "mae_in_mask": mae_in_mask,
    "psnr": lambda p, t, m: psnr(p, t),
    "ssim": lambda p, t, m: ssim(p, t),
}


class InpaintingMetrics:
    """Accumulate per-case inpainting metrics, then aggregate means (MONAI style: call, then `.aggregate()`)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float | str]] = []

    def __call__(self, case_id: str, pred: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> dict[str, float | str]:
        row: dict[str, float | str] = {"case": case_id}
        row.update({name: fn(pred, truth, mask) for name, fn in INPAINTING_METRICS.items()})
        self.rows.append(row)
        return row

    def aggregate(self) -> dict[str, float | None]:
        """Means over cases, then the count. PSNR is infinite for a case filled exactly, so its mean is over the
        other cases, and None (JSON null, where NaN would not be valid JSON) when every case is exact."""
        out: dict[str, float | None] = {}
        for name in INPAINTING_METRICS:
            vals = np.array([r[name] for r in self.rows], dtype=np.float64)
            vals = vals[np.isfinite(vals)]
            out[name] = float(vals.mean()) if vals.size else None
        out["n"] = len(self.rows)
        return out


class SegmentationMetrics:
    """Accumulate per-case Dice and Jaccard of each foreground class, and the error of the last class's share of
    the foreground (for body composition: the fat fraction of the body, what its users report), then aggregate."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = tuple(names)
        self.rows: list[dict[str, float | str]] = []
        self._seen: set[str] = set()  # foreground classes met in some label or prediction

    def __call__(self, case_id: str, pred: np.ndarray, truth: np.ndarray) -> dict[str, float | str]:
        """`pred` and `truth`: (H, W) class ids, 0 the background."""
        row: dict[str, float | str] = {"case": case_id}
        for k, name in enumerate(self.names[1:], start=1):
            row[f"dice_{name}"] = dice(pred == k, truth == k)
            row[f"jaccard_{name}"] = jaccard(pred == k, truth == k)
        if self._has_fraction:
            last = len(self.names) - 1
            share = lambda a: float((a == last).sum() / max(1, (a > 0).sum()))  # noqa: E731
            row[f"{self.names[-1]}_fraction_true"] = share(truth)
            row[f"{self.names[-1]}_fraction_error"] = share(pred) - share(truth)
        for k in np.union1d(np.unique(pred), np.unique(truth)):
            if 0 < k < len(self.names):
                self._seen.add(self.names[int(k)])
        self.rows.append(row)
        return row

    @property
    def _has_fraction(self) -> bool:
        """The last class's share of the foreground means something only with two foreground classes or more: with
        one it is always 1, its error always 0."""
        return len(self.names) > 2

    def aggregate(self) -> dict[str, float | list[str]]:
        """Means over cases: mean Dice over foreground classes first, then each class, the mean absolute fraction
        error (two or more foreground classes), and the count. A class in no label and no prediction of any case
        scores Dice 1.0 on every case by convention; it is left out of `mean_dice` (which it would only inflate)
        and named in `absent_classes`."""
        def mean(key: str) -> float:
            return float(np.mean([r[key] for r in self.rows]))

        fg = self.names[1:]
        present = [n for n in fg if n in self._seen]
        out: dict[str, float | list[str]] = {"mean_dice": float(np.mean([mean(f"dice_{n}") for n in present])) if present else float("nan")}
        out.update({f"dice_{n}": mean(f"dice_{n}") for n in fg})
        out.update({f"jaccard_{n}": mean(f"jaccard_{n}") for n in fg})
        if self._has_fraction:
            out[f"{self.names[-1]}_fraction_abs_error"] = float(np.mean([abs(r[f"{self.names[-1]}_fraction_error"]) for r in self.rows]))
        if len(present) < len(fg):
            out["absent_classes"] = [n for n in fg if n not in self._seen]
        out["n"] = len(self.rows)
        return out
