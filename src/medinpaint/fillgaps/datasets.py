"""PyTorch datasets for the fill-gaps workflow, for use from Python with any training loop.

    pairs = corrupted_pairs(train_images, corruption.pool)      # (corrupted, mask, clean)
    target = target_dataset(images, corruption.masks)           # (image, mask), no labels
    for corrupted, mask, clean in DataLoader(pairs, batch_size=16, shuffle=True): ...

All tensors are float32 (N, 1, H, W) in [0, 1]; masks are 1 where a pixel is missing. `medinpaint fill-gaps` itself
trains through `medinpaint.training.train`, which draws the same pairs on the device, fresh every step.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import TensorDataset

from medinpaint.data.slices import to_unit


def _planes(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).unsqueeze(1)


def corrupted_pairs(clean: np.ndarray, masks: np.ndarray, seed: int = 0) -> TensorDataset:
    """Each clean (N, H, W) slice under one of the (K, H, W) `masks` (drawn at random when K > 1), zeroed where
    missing, beside its mask and its clean version."""
    pick = masks[np.random.default_rng(seed).integers(len(masks), size=len(clean))]
    image, mask = _planes(to_unit(clean)), _planes(pick)
    return TensorDataset(image * (1 - mask), mask, image)


def target_dataset(images: np.ndarray, masks: np.ndarray) -> TensorDataset:
    """The (N, H, W) target slices and their (N, H, W) masks as (image, mask) pairs: nothing to learn from but
    the images themselves (for self-supervised or test-time methods, and for inspection)."""
    return TensorDataset(_planes(to_unit(images)), _planes(masks))
