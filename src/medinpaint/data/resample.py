"""In-plane resampling of slice stacks to a model's pixel size and back, with one rule per kind of content: images
bilinear, masks conservative (a pixel is missing if any part of it was), label maps nearest on the same pixel
centres as the images (OpenCV's plain INTER_NEAREST is offset from INTER_LINEAR by half a target pixel less half
a source pixel, (f - 1) / 2 source pixels at a shrink factor f: up to half a model pixel off their image)."""

from __future__ import annotations

import cv2
import numpy as np


def resize_stack(stack: np.ndarray, shape: tuple[int, int], interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """(N, H, W) -> (N, *shape), slice by slice."""
    return np.stack([cv2.resize(s, (shape[1], shape[0]), interpolation=interpolation) for s in stack])


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(N, H, W) boolean masks -> (N, *shape), True wherever a target pixel overlaps a True source pixel: each axis
    shrinks by area (so no hole falls between the samples, however thin) or grows bilinearly."""
    out = mask.astype(np.float32)
    for axis, size in ((1, shape[0]), (2, shape[1])):
        if out.shape[axis] == size:
            continue
        target = (size, out.shape[2]) if axis == 1 else (out.shape[1], size)
        out = resize_stack(out, target, cv2.INTER_AREA if size < out.shape[axis] else cv2.INTER_LINEAR)
    return out > 0


def resize_labels(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(N, H, W) label maps (tissue classes, segmentation labels) -> (N, *shape), each pixel the label under its centre."""
    return resize_stack(labels, shape, cv2.INTER_NEAREST_EXACT)
