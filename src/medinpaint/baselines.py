"""Classical fills a model must beat: zero fill, the official DM-i-AI baseline, per-tissue mean, OpenCV Telea."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from medinpaint.constants import TISSUE_LEVELS
from medinpaint.data.slices import SliceSet, to_uint8

OFFICIAL_FILL_VALUE = 84  # the DM-i-AI starter baseline fills masked body pixels with this constant
# Mean CT value per tissue class on DM-i-AI patients 0-449 (benchmarks/baselines.py --fit prints them).
DEFAULT_TISSUE_MEANS = {0: 0.03, 100: 103.99, 255: 36.07}


def zero_fill(slices: SliceSet) -> np.ndarray:
    return np.where(slices.masks, 0, to_uint8(slices.images)).astype(np.uint8)


def official_fill(slices: SliceSet) -> np.ndarray:
    """Fill 84 where the pixel is missing and inside the body (tissue > 0); zero elsewhere."""
    if slices.tissue is None:
        raise ValueError("the official baseline needs tissue maps")
    out = zero_fill(slices)
    out[slices.masks & (slices.tissue > 0)] = OFFICIAL_FILL_VALUE
    return out


@dataclass
class TissueMeanFill:
    """Fill each missing pixel with the mean CT value of its tissue class."""

    means: dict[int, float] = field(default_factory=lambda: dict(DEFAULT_TISSUE_MEANS))

    @classmethod
    def fit(cls, train: SliceSet) -> TissueMeanFill:
        if train.tissue is None:
            raise ValueError("fitting per-tissue means needs tissue maps")
        clean = to_uint8(train.clean)
        return cls({lv: float(clean[train.tissue == lv].mean()) for lv in TISSUE_LEVELS if (train.tissue == lv).any()})

    def __call__(self, slices: SliceSet) -> np.ndarray:
        if slices.tissue is None:
            raise ValueError("per-tissue mean fill needs tissue maps")
        out = zero_fill(slices)
        for lv, value in self.means.items():
            sel = slices.masks & (slices.tissue == lv)
            out[sel] = np.uint8(np.clip(round(value), 0, 255))
        return out


def telea_fill(slices: SliceSet, radius: int = 3) -> np.ndarray:
    """OpenCV's fast-marching inpainting (Telea 2004)."""
    images = to_uint8(slices.images)
    return np.stack([cv2.inpaint(img, m.astype(np.uint8), radius, cv2.INPAINT_TELEA) for img, m in zip(images, slices.masks)])


def threshold_tissue(images: np.ndarray, fat_range: tuple[int, int] = (0, 70)) -> np.ndarray:
    """The classical body-composition baseline on DM-i-AI CT (0..255 = -150..250 HU): the body is the largest
    connected region above 0 with its holes filled; fat is body with fat_range[0] < value < fat_range[1] (about
    -150..-40 HU). (N, H, W) uint8 -> class ids 0 background, 1 body, 2 fat."""
    from scipy import ndimage

    out = np.zeros(images.shape, dtype=np.int64)
    for i, image in enumerate(to_uint8(images)):
        regions, n = ndimage.label(image > 0)
        if n == 0:
            continue
        largest = np.argmax(np.bincount(regions.reshape(-1))[1:]) + 1
        body = ndimage.binary_fill_holes(regions == largest)
        out[i][body] = 1
        out[i][body & (image > fat_range[0]) & (image < fat_range[1])] = 2
    return out
