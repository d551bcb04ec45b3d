"""Labelled slices for segmentation: images with label maps as class ids, whatever layout they came in.

Labels come from `labels` (label maps of `.npy` folders and PNG pairs, any values) or, for DM-i-AI data, from the
tissue map (0 background, 100 body, 255 fat). Each class keeps the pixel value it has in the label files, so
predictions are written back in the same coding.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medinpaint.constants import TISSUE_CLASSES, TISSUE_LEVELS
from medinpaint.data import read_slices
from medinpaint.data.slices import to_uint8
from medinpaint.errors import InputError


@dataclass
class LabelledSet:
    ids: list[str]
    images: np.ndarray  # uint8 (N, H, W)
    labels: np.ndarray | None  # uint8 (N, H, W) class ids, or None (images to segment)
    values: tuple[int, ...]  # the label-map value of each class
    names: tuple[str, ...]  # a name per class
    layout: str = "npy"  # how the data came in, to write predictions back the same way
    window: tuple[float, float] | None = None  # the intensity window of the images, when known
    source: str = ""  # the file or folder read: an error about the whole set names it

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index: np.ndarray | list[int]) -> LabelledSet:
        idx = np.asarray(index, dtype=np.int64)
        labels = None if self.labels is None else self.labels[idx]
        return LabelledSet([self.ids[i] for i in idx], self.images[idx], labels, self.values, self.names, self.layout, self.window,
                           self.source)


def coding(values: tuple[int, ...]) -> tuple[str, ...]:
    """Class names: the tissue classes for the DM-i-AI coding, else `class_<value>`."""
    return TISSUE_CLASSES if tuple(values) == TISSUE_LEVELS else tuple(f"class_{v}" for v in values)


def to_class_ids(raw: np.ndarray, values: tuple[int, ...], name: str) -> np.ndarray:
    """Label-map values -> uint8 class ids; a value outside `values`, or a float that is not a whole number, is an
    error naming `name` and the value."""
    if len(values) > 255:
        raise InputError(f"{name}: at most 255 classes, got {len(values)}")
    outside = [v for v in values if not 0 <= v <= 255]
    if outside or len(set(values)) != len(values):
        raise InputError(f"class values (--class-value) {list(values)}: each must be a distinct label value in 0..255")
    raw = np.asarray(raw)
    if np.issubdtype(raw.dtype, np.floating):  # 1.7 would be truncated to class 1 and scored as if it were
        fractional = ~np.isfinite(raw) | (raw != np.round(raw))
        if fractional.any():
            raise InputError(f"{name}: label maps must hold integers (one value per class), found {raw[fractional].flat[0]:.4g}")
    if raw.size and (raw.min() < 0 or raw.max() > 255):
        raise InputError(f"{name}: label values must lie in 0..255, found {int(raw.min())}..{int(raw.max())}")
    lut = np.full(256, 255, dtype=np.uint8)  # 255: not a declared class
    lut[list(values)] = np.arange(len(values))
    ids = lut[raw.astype(np.uint8)]
    if (ids == 255).any():
        bad = int(raw[ids == 255][0])
        raise InputError(f"{name}: label value {bad} is not one of the declared classes {list(values)}")
    return ids


def read_labelled(path: Path, values: tuple[int, ...] | None = None, with_labels: bool = True,
                  require_clean: bool = False) -> LabelledSet:
    """Images (the clean slices: `ct/` of a DM-i-AI folder, else what there is) and their labels, as class ids.
    `values` declares the classes' label values (default: the DM-i-AI tissue coding for tissue maps, else the
    values found in the labels). `with_labels=False` (prediction) reads the images only: label maps the folder
    holds in another coding than the model's are no reason to refuse it. `require_clean` (training) refuses
    corrupted slices with no clean version."""
    path = Path(path)
    slices = read_slices(path)
    if require_clean:
        slices.require_clean()
    raw = (slices.labels if slices.labels is not None else slices.tissue) if with_labels else None
    if raw is None and with_labels:
        raise InputError(f"{path}: no label maps (a DM-i-AI tissue/ folder, labels.npy or labels/ PNGs)")
    if values is None:
        values = tuple(int(v) for v in np.unique(slices.labels)) if slices.labels is not None else TISSUE_LEVELS
    if len(values) < 2:
        raise InputError(f"{path}: segmentation needs at least two classes, the labels hold only {list(values)}")
    labels = None if raw is None else to_class_ids(raw, tuple(values), str(path))
    return LabelledSet(list(slices.ids), to_uint8(slices.clean), labels, tuple(values), coding(tuple(values)), slices.layout,
                       slices.intensity_window, str(path))


def check_classes_present(data: LabelledSet, where: str) -> None:
    """Every class must occur in the training labels: a class never seen cannot be learnt."""
    counts = np.bincount(data.labels.reshape(-1), minlength=len(data.values))
    absent = np.flatnonzero(counts == 0)
    if len(absent):
        k = int(absent[0])
        raise InputError(f"{where}: class {k} ({data.names[k]}, label value {data.values[k]}) appears in no training label")


def write_segmentations(folder: Path, data: LabelledSet, label_maps: np.ndarray) -> None:
    """`label_maps` (N, H, W) uint8 in the labels' coding: `<case id>.png` each, or `labels.npy` for .npy input."""
    from medinpaint.data.png import write_gray_png

    if data.layout == "npy":
        np.save(folder / "labels.npy", label_maps)
        return
    for case, label_map in zip(data.ids, label_maps):
        write_gray_png(folder / f"{case}.png", label_map)
