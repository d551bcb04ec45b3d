"""Where training slices come from: the user's clean images, or a synthesis generator (the shipped one by default).

Every source returns float32 (N, H, W) slices in [0, 1] at the target's size, and a line saying what it did, so
the report can tell the user when slices were subsampled or resampled.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from medinpaint.data.readers import load_npy_images, read_slices
from medinpaint.data.resample import resize_stack
from medinpaint.data.slices import to_unit
from medinpaint.errors import InputError

NO_GENERATOR = "pass --train-images PATH (clean slices) or --generator PATH (a synthesis checkpoint)"


def _scaled(before: tuple[int, ...], shape: tuple[int, int]) -> tuple[float, tuple[int, int]]:
    """The scale that makes (h, w) slices cover an (H, W) target without stretching them, and their size then."""
    scale = max(shape[0] / before[0], shape[1] / before[1])
    return scale, (round(before[0] * scale), round(before[1] * scale))


def resample(images: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(N, h, w) slices -> float32 (N, H, W) in [0, 1], scaled to cover the target (area averaging to shrink,
    bilinear to grow) and cut to its middle: anatomy keeps its proportions on an oblong target."""
    images = to_unit(images)
    if images.shape[1:] == tuple(shape):
        return images
    scale, (h, w) = _scaled(images.shape[1:], shape)
    images = resize_stack(images, (h, w), cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR).clip(0, 1)
    top, left = (h - shape[0]) // 2, (w - shape[1]) // 2
    return images[:, top:top + shape[0], left:left + shape[1]]


def _size_note(before: tuple[int, ...], shape: tuple[int, int]) -> str:
    if tuple(before) == tuple(shape):
        return ""
    h, w = _scaled(before, shape)[1]
    crop = "" if (h, w) == tuple(shape) else f" and cropped to its middle {shape[1]}x{shape[0]}"
    return f", resampled from {before[1]}x{before[0]} to {w}x{h}{crop}"


def images_from_path(path: Path, shape: tuple[int, int], n: int, seed: int = 0) -> tuple[np.ndarray, str]:
    """Up to `n` clean slices, picked at random, from a .npy stack or any dataset `read_slices` reads."""
    path = Path(path)
    if path.is_file() and path.suffix == ".npy":
        clean = load_npy_images(path)[0]
    else:
        slices = read_slices(path)
        slices.require_clean()  # corrupted slices with their masks would teach that the gaps are black
        clean = slices.clean
    pick = np.sort(np.random.default_rng(seed).choice(len(clean), size=min(n, len(clean)), replace=False))
    note = f"{len(pick)} of {len(clean)} clean slices from {path}{_size_note(clean.shape[1:], shape)}"
    return resample(clean[pick], shape), note


def images_from_generator(path: Path | None, shape: tuple[int, int], n: int, seed: int = 0,
                          device: str = "cpu") -> tuple[np.ndarray, str]:
    """`n` slices sampled from a synthesis checkpoint (`path`, any size: resampled), or from the shipped generator
    nearest the target's size (resampled to it, and said so in the note)."""
    from medinpaint.synthesis import load_generator
    from medinpaint.synthesis.generator import nearest_shipped_size

    size = None if path is not None else nearest_shipped_size(max(shape))
    if path is None and size is None:
        raise InputError(f"no synthesis generator is shipped with this installation; {NO_GENERATOR}")
    source = path or f"the shipped {size}x{size} generator"
    try:
        generator = load_generator(path, size, device=device)
    except (FileNotFoundError, InputError) as exc:
        raise InputError(f"cannot load {source} ({exc}); {NO_GENERATOR}") from None
    images = np.asarray(generator.sample(n, seed=seed, batch_size=256)[0])[:, 0]
    return resample(images, shape), f"{n} slices sampled from {source}{_size_note(images.shape[1:], shape)}"
