"""A lesion simulator that stands in for real labelled lesions in the benchmark, because no public lesion labels ship
with this project's data. It is deliberately none of the strategies under test: its own shape family (lobulated
blobs, the level set of a smooth random field under a round envelope) and its own texture model (a dark core with
coarse mottling and a bright enhancing rim, like a necrotic CT metastasis), placed in soft tissue away from fat.

What it can show: whether a strategy's synthetic lesions teach a segmenter something that transfers to lesions it
has never seen drawn. What it cannot: how any strategy fares on real pathology, whose appearance and placement this
simulator only caricatures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from medinpaint.lesions.data import LesionSet
from medinpaint.lesions.masks import check_radius, log_uniform, pick


@dataclass
class SimulatedLesions:
    radius: tuple[float, float] = (2.5, 6.0)  # envelope radius, pixels
    tissue: int = 1  # the anatomy class lesions grow in (CT: soft tissue)
    core: tuple[float, float] = (-80.0, -40.0)  # core minus surrounding tissue, 0..255 units
    rim: float = 35.0  # enhancing rim above the surrounding tissue
    mottling: float = 10.0  # coarse texture, 0..255 units

    def __post_init__(self) -> None:
        check_radius(self.radius)

    def shape(self, anatomy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A lobulated lesion mask inside the tissue class, or an empty one when there is no room."""
        allowed = anatomy == self.tissue
        depth = ndimage.distance_transform_edt(allowed)
        r = log_uniform(rng, *self.radius)
        room = depth >= 0.8 * r
        if not room.any():
            return np.zeros(anatomy.shape, dtype=bool)
        centre = pick(rng, room)
        dist = np.sqrt(sum((g - c) ** 2 for g, c in zip(np.indices(anatomy.shape), centre)))
        field = ndimage.gaussian_filter(rng.standard_normal(anatomy.shape), sigma=max(r / 3, 1.0))
        level = (1 - (dist / r) ** 2) + 0.8 * field / max(float(field.std()), 1e-6)
        labels, _ = ndimage.label((level > 0.3) & allowed)
        at = labels[tuple(np.round(centre).astype(int))]
        return labels == at if at else (dist <= 1.5) & allowed

    def paint(self, image: np.ndarray, mask: np.ndarray, anatomy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        ring = ndimage.binary_dilation(mask, iterations=3) & ~mask & (anatomy > 0)
        base = float(image[ring].mean()) if ring.any() else float(image[mask].mean())
        mottle = ndimage.gaussian_filter(rng.standard_normal(mask.shape), 2.0)
        value = base + rng.uniform(*self.core) + self.mottling * mottle / max(float(mottle.std()), 1e-6)
        rim = mask & ~ndimage.binary_erosion(mask)
        value = np.where(rim, base + self.rim, value)
        return np.where(mask, np.clip(np.rint(value), 0, 255), image).astype(image.dtype)

    def __call__(self, cases: LesionSet, rng: np.random.Generator, fraction: float = 0.6) -> LesionSet:
        """`cases` with a simulated lesion in about `fraction` of their slices (where there is room)."""
        images, lesions = cases.images.copy(), np.zeros(cases.images.shape, dtype=bool)
        for i in range(len(cases)):
            if rng.random() < fraction:
                mask = self.shape(cases.anatomy[i], rng)
                if mask.any():
                    images[i], lesions[i] = self.paint(images[i], mask, cases.anatomy[i], rng), mask
        return LesionSet(list(cases.ids), images, lesions, cases.anatomy.copy(), cases.anatomy_names)
