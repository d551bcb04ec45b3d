"""SliceSet: the one in-memory form of every dataset layout, so models and metrics never see file formats."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from medinpaint.constants import DMIAI_PIXEL_SPACING_MM, DMIAI_WINDOW_HU, TISSUE_LEVELS
from medinpaint.errors import InputError, error_about


@dataclass
class SliceSet:
    """A stack of slices with optional masks, ground truth and side information.

    `images` are what the user has (corrupted where `masks` is True, or clean slices for training); every
    array is (N, H, W). uint8 images hold 0..255; float images hold [0, 1]. `layout` and `source_shape`
    remember how the data came in so predictions can be written back the same way.
    """

    ids: list[str]
    images: np.ndarray
    masks: np.ndarray | None = None
    truth: np.ndarray | None = None
    tissue: np.ndarray | None = None
    vertebrae: np.ndarray | None = None
    labels: np.ndarray | None = None  # segmentation label maps (uint8, one value per class), when not the tissue map
    layout: str = "npy"
    source_shape: tuple[int, ...] | None = None
    extras: dict[str, str] = field(default_factory=dict)
    source: str = ""  # the file or folder read (set by `read_slices`): an error about the whole set names it

    def __post_init__(self) -> None:
        n = len(self.ids)
        if self.images.ndim != 3 or self.images.shape[0] != n:
            raise ValueError(f"images must be (N,H,W) with N={n}, got {self.images.shape}")
        for name in ("masks", "truth", "tissue", "labels"):
            arr = getattr(self, name)
            if arr is not None and arr.shape != self.images.shape:
                raise ValueError(f"{name} has shape {arr.shape}, images have {self.images.shape}")
        if self.vertebrae is not None and self.vertebrae.shape != (n,):
            raise ValueError(f"vertebrae must have shape ({n},), got {self.vertebrae.shape}")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def clean(self) -> np.ndarray:
        """The uncorrupted slices: the truth when known, else the images themselves (training sets)."""
        return self.truth if self.truth is not None else self.images

    def require_clean(self) -> None:
        """Refuse, where clean slices are needed (training, caches), images that are zero wherever masked with
        nothing cleaner known: corrupted slices (DM-i-AI corrupted/ without ct/), not clean ones with masks to train
        on (ct/ with mask/, volumes with masks/)."""
        if self.truth is None and self.masks is not None and self.masks.any() and not self.images[self.masks].any():
            raise error_about(self.source, "the slices have masks but no clean version (ct/, truth.npy or truth/): "
                              "with no clean slices there is nothing to learn or keep but their gaps")

    @property
    def intensity_window(self) -> tuple[float, float] | None:
        """The Hounsfield window the 0..255 values came in, where the layout tells (DM-i-AI: -150..250 HU; CT
        volumes read by `volume_slices`, which window them the same way)."""
        return DMIAI_WINDOW_HU if self.layout == "dmiai" or self.extras.get("intensity") == "ct-window" else None

    @property
    def pixel_spacing_mm(self) -> float | None:
        """The in-plane pixel size, where the layout tells (DM-i-AI: 2 mm; volumes: what they were resampled to)."""
        if "pixel_spacing_mm" in self.extras:
            return float(self.extras["pixel_spacing_mm"])
        return DMIAI_PIXEL_SPACING_MM if self.layout == "dmiai" else None

    def subset(self, index: np.ndarray | list[int]) -> SliceSet:
        """The slices at `index`, with every optional array cut the same way."""
        idx = np.asarray(index, dtype=np.int64)
        pick = lambda a: None if a is None else a[idx]  # noqa: E731
        return SliceSet(
            ids=[self.ids[i] for i in idx],
            images=self.images[idx],
            masks=pick(self.masks),
            truth=pick(self.truth),
            tissue=pick(self.tissue),
            vertebrae=pick(self.vertebrae),
            labels=pick(self.labels),
            layout=self.layout,
            source_shape=None if self.source_shape is None else (len(idx), *self.source_shape[1:]),
            extras=dict(self.extras),
            source=self.source,
        )


def to_unit(images: np.ndarray) -> np.ndarray:
    """uint8 0..255 or float [0,1] -> float32 [0,1]."""
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    return images.astype(np.float32, copy=False)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """float [0,1] (or uint8) -> uint8 0..255, rounded as a PNG writer would."""
    if images.dtype == np.uint8:
        return images
    return np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)


def tissue_to_classes(tissue: np.ndarray) -> np.ndarray:
    """DM-i-AI tissue map (0, 100, 255) -> class ids (0, 1, 2) as int64."""
    classes = np.zeros(tissue.shape, dtype=np.int64)
    for cls, level in enumerate(TISSUE_LEVELS):
        classes[tissue == level] = cls
    return classes


def check_tissue_levels(tissue: np.ndarray) -> None:
    """Refuse a tissue map holding values other than TISSUE_LEVELS: each level is one of the network's classes, and
    another value would be read as none of them."""
    if not in_levels(tissue, TISSUE_LEVELS).all():
        raise InputError(f"tissue map values must be {TISSUE_LEVELS}, found {np.setdiff1d(tissue, TISSUE_LEVELS)[:5].tolist()}")


def in_levels(values: np.ndarray, levels: tuple[int, ...]) -> np.ndarray:
    """`np.isin(values, levels)` for the few levels of a mask or tissue map, by comparisons: several times faster on
    a large uint8 stack (np.isin sorts or builds a table for each call)."""
    ok = values == levels[0]
    for level in levels[1:]:
        ok |= values == level
    return ok
