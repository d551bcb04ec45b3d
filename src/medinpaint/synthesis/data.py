"""Slices as generative-model data: (CT, tissue level) pairs at the model's size, and back to a tissue map.

A slice and its tissue map travel together as two channels, CT in 0..255 and the tissue map's own level
(0, 100, 255), so one model learns them jointly and a sample is a usable (slice, tissue, vertebra) triple.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from medinpaint.constants import MAX_VERTEBRA, TISSUE_LEVELS
from medinpaint.data.slices import SliceSet, tissue_to_classes, to_uint8, to_unit
from medinpaint.errors import InputError

_LEVELS = np.asarray(TISSUE_LEVELS, dtype=np.uint8)


def require_triples(slices: SliceSet, name: str) -> None:
    """Synthesis learns slices with their tissue maps and vertebra levels; say so if a dataset lacks them."""
    if slices.tissue is None or slices.vertebrae is None:
        raise InputError(f"{name}: synthesis needs tissue maps and vertebra levels (DM-i-AI tissue/ and vertebrae/)")


def resize_pairs(slices: SliceSet, size: int, chunk: int = 256) -> np.ndarray:
    """(N, 2, size, size) uint8: the CT area-averaged and the tissue map by majority class, from square slices
    no smaller than `size`. Worked in chunks so 5000 slices of 256x256 need no gigabytes of floats."""
    h, w = slices.images.shape[1:]
    if h != w:
        raise InputError(f"synthesis works on square slices, got {h}x{w}")
    if size > h:
        raise InputError(f"the slices are {h}x{w}: too small for a {size}x{size} model")
    clean, tissue = slices.clean, slices.tissue
    if size == h:
        return np.stack([to_uint8(clean), tissue], axis=1)
    out = np.empty((len(slices), 2, size, size), dtype=np.uint8)
    for s in range(0, len(slices), chunk):
        ct = torch.from_numpy(to_unit(clean[s : s + chunk]))[:, None]
        out[s : s + chunk, 0] = to_uint8(F.interpolate(ct, size=(size, size), mode="area")[:, 0].numpy())
        onehot = F.one_hot(torch.from_numpy(tissue_to_classes(tissue[s : s + chunk])), len(TISSUE_LEVELS))
        votes = F.interpolate(onehot.permute(0, 3, 1, 2).float(), size=(size, size), mode="area")
        out[s : s + chunk, 1] = _LEVELS[votes.argmax(1).numpy()]
    return out


def quantise_tissue(level: np.ndarray) -> np.ndarray:
    """A tissue-level channel in [0, 1] -> DM-i-AI tissue map (uint8 0 / 100 / 255), by the nearest level."""
    cuts = (np.asarray(TISSUE_LEVELS[:-1]) + np.asarray(TISSUE_LEVELS[1:])) / 2 / 255
    return _LEVELS[np.digitize(level, cuts)]


def vertebra_counts(vertebrae: np.ndarray) -> list[int]:
    """How many slices there are of each vertebra level 0..24 (stored with a model to sample levels from)."""
    return np.bincount(np.asarray(vertebrae, dtype=np.int64), minlength=MAX_VERTEBRA + 1).tolist()
