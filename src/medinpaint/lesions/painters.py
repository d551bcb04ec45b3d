"""Lesion painters: put a lesion's appearance into healthy slices under given masks, changing only masked pixels.
One signature: `painter(images, masks, anatomy, rng) -> images`, stacks (N, H, W) of uint8 slices, bool masks and
anatomy class maps.

- `ClassicalPainter`: the hand-made baseline: the surrounding tissue's mean shifted by a contrast, a smooth noise
  texture, blended in over a few pixels at the border.
- `InpaintingPainter`: an inpainting network trained (`train_lesion_painter`) on slices that hold lesions, each with
  its own lesion as the mask, so what it learns to put into a hole is lesion; conditioned on the mask and on the
  anatomy around it (the tissue input, for CT anatomy).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from medinpaint.constants import TISSUE_LEVELS
from medinpaint.data.slices import SliceSet
from medinpaint.errors import InputError
from medinpaint.inference import Inpainter
from medinpaint.lesions.data import CT_ANATOMY, LesionSet


@dataclass
class ClassicalPainter:
    contrast: tuple[float, float] = (-70.0, -30.0)  # lesion minus surrounding tissue, 0..255 units (negative: darker)
    texture: float = 6.0  # standard deviation of the noise texture, 0..255 units
    grain: float = 1.0  # correlation length of the texture, pixels
    feather: float = 1.5  # pixels over which the lesion fades into the tissue at its border

    def __call__(self, images: np.ndarray, masks: np.ndarray, anatomy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = images.copy()
        for i in np.flatnonzero(masks.reshape(len(masks), -1).any(1)):
            m = masks[i]
            ring = ndimage.binary_dilation(m, iterations=3) & ~m & (anatomy[i] > 0)
            base = float(images[i][ring].mean()) if ring.any() else float(images[i][m].mean())
            noise = ndimage.gaussian_filter(rng.standard_normal(m.shape), self.grain)
            lesion = base + rng.uniform(*self.contrast) + noise * self.texture / max(float(noise.std()), 1e-6)
            alpha = np.clip(ndimage.distance_transform_edt(m) / self.feather, 0, 1)
            blended = images[i] * (1 - alpha) + lesion * alpha
            out[i] = np.where(m, np.clip(np.rint(blended), 0, 255), images[i]).astype(images.dtype)
        return out


class InpaintingPainter:
    def __init__(self, weights: Path, device: str = "cpu") -> None:
        self.inpainter = Inpainter.from_pretrained(weights, device=device, backend="torch")

    def check_anatomy(self, names: Sequence[str], source: Path) -> None:
        """Refuse non-CT anatomy for a painter that takes CT tissue: a map of as many classes means other tissue."""
        if self.inpainter.config.tissue_classes and tuple(names) != CT_ANATOMY:
            raise InputError(f"{source}: its anatomy classes are ({', '.join(names)}), but this lesion painter was trained "
                             f"on CT tissue anatomy ({', '.join(CT_ANATOMY)})")

    def __call__(self, images: np.ndarray, masks: np.ndarray, anatomy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Deterministic: `rng` is not used (the network paints the most likely lesion for the mask and anatomy)."""
        tissue = None
        if self.inpainter.config.tissue_classes:
            if anatomy.max() >= len(TISSUE_LEVELS):
                raise InputError(f"this lesion painter was trained on CT tissue anatomy ({len(TISSUE_LEVELS)} classes), "
                                 f"not on maps with class {int(anatomy.max())}")
            tissue = np.asarray(TISSUE_LEVELS, dtype=np.uint8)[anatomy]
        return self.inpainter.predict_batch(images, masks.astype(bool), tissue, batch_size=32)


def lesion_slices(cases: LesionSet) -> SliceSet:
    """The slices of `cases` that hold a lesion, as inpainting pairs: the lesion is the hole, the slice the truth."""
    has = np.flatnonzero(cases.lesions.reshape(len(cases), -1).any(1))
    if len(has) == 0:
        raise InputError("the lesion painter needs slices with lesions")
    c = cases.subset(has)
    return SliceSet(c.ids, np.where(c.lesions, 0, c.images).astype(np.uint8), c.lesions, c.images, tissue=c.as_tissue())


def train_lesion_painter(cases: LesionSet, output: Path, steps: int, base_channels: int = 16, seed: int = 0,
                         device: str | None = None, progress: bool = False, overwrite: bool = False) -> Path:
    """Train the inpainting U-Net on the lesions of `cases` (each slice with its own lesion as the mask) through
    the one training engine; the weights' path."""
    from medinpaint.models import UNetConfig
    from medinpaint.training import TrainConfig, train

    slices = lesion_slices(cases)
    network = UNetConfig(base_channels=base_channels, depth=3, blocks_per_level=1,
                         tissue_classes=3 if slices.tissue is not None else 0, use_vertebrae=False)
    cfg = TrainConfig(steps=steps, minutes=None, batch_size=16, seed=seed, own_masks=True, network=network,
                      val_cases=16, val_every=max(steps, 1), log_every=max(steps // 10, 1), warmup_steps=min(100, steps // 5))
    return train(slices, output, cfg, device=device, progress=progress, overwrite=overwrite)
