"""Lesion-mask generators, one signature for all: `generator(image, anatomy, rng) -> bool mask` for a healthy slice
(H, W) or volume (D, H, W), its anatomy class map (0 outside the body) and a numpy Generator. Shapes are built in
any number of dimensions, so the same generator serves slices and volumes.

- `Spheres`: ellipses/ellipsoids of a log-uniform size anywhere in the body: the baseline published work finds hard
  to beat.
- `AnatomyShapes`: distorted ellipsoids (a smooth random field wobbles the border) centred in a chosen tissue class,
  or on the junction of two classes (the grey/white junction where cortical dysplasias sit), kept `margin` pixels
  inside the tissue they may occupy.
- `LearnedMasks` (in `lesions.learned`): a conditional VAE trained on a user's example lesions.

A generator returns an empty mask when the slice has no room for a lesion (no pixel of the requested tissue): the
caller draws another slice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy import ndimage

from medinpaint.errors import InputError


class MaskGenerator(Protocol):
    def __call__(self, image: np.ndarray, anatomy: np.ndarray, rng: np.random.Generator) -> np.ndarray: ...


def random_rotation(ndim: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random rotation matrix (QR of a Gaussian matrix, signs fixed so the draw is uniform)."""
    q, r = np.linalg.qr(rng.standard_normal((ndim, ndim)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def ellipsoid(shape: tuple[int, ...], centre: np.ndarray, radii: np.ndarray, rotation: np.ndarray,
              wobble: float = 0.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """Bool mask of an ellipsoid; `wobble` > 0 moves its border in and out by up to that fraction of the radius
    with a smooth random field (drawn with `rng`) whose correlation length is half the mean radius."""
    reach = float(np.max(radii)) * (1 + wobble) + 1
    lo = [max(0, int(np.floor(c - reach))) for c in centre]
    hi = [min(s, int(np.ceil(c + reach)) + 1) for s, c in zip(shape, centre)]
    out = np.zeros(shape, dtype=bool)
    if any(h <= l for l, h in zip(lo, hi)):
        return out
    axes = np.meshgrid(*[np.arange(l, h) - c for l, h, c in zip(lo, hi, centre)], indexing="ij")
    coords = np.stack(axes, axis=-1) @ rotation  # in the ellipsoid's own axes
    rho = np.sqrt(((coords / radii) ** 2).sum(-1))
    if wobble > 0:
        field = ndimage.gaussian_filter(rng.standard_normal(rho.shape), sigma=max(float(np.mean(radii)) / 2, 1.0))
        rho = rho - wobble * field / max(float(np.abs(field).max()), 1e-12)
    out[tuple(slice(l, h) for l, h in zip(lo, hi))] = rho <= 1
    return out


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def check_radius(radius: tuple[float, float]) -> tuple[float, float]:
    """A lesion radius range (low, high) in pixels, 0 < low <= high (the radius is drawn log-uniformly)."""
    low, high = radius
    if not 0 < low <= high:
        raise InputError(f"--radius must be two sizes in pixels, 0 < low <= high, got {low:g} {high:g}")
    return low, high


def pick(rng: np.random.Generator, where: np.ndarray) -> np.ndarray:
    """A uniformly chosen index (as a float vector) of a True element of `where`."""
    flat = np.flatnonzero(where)
    return np.array(np.unravel_index(flat[rng.integers(len(flat))], where.shape), dtype=np.float64)


def shape_radii(rng: np.random.Generator, ndim: int, radius: float, axis_ratio: tuple[float, float]) -> np.ndarray:
    """Semi-axes: `radius` along the first, the others shortened by a ratio drawn from `axis_ratio`."""
    return np.array([radius, *(radius * rng.uniform(*axis_ratio) for _ in range(ndim - 1))])


@dataclass
class Spheres:
    """Ellipses (ellipsoids in 3D) with a log-uniform radius in `radius` (pixels), centred anywhere in the body."""

    radius: tuple[float, float] = (2.0, 6.0)
    axis_ratio: tuple[float, float] = (0.7, 1.0)

    def __post_init__(self) -> None:
        check_radius(self.radius)

    def __call__(self, image: np.ndarray, anatomy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        body = anatomy > 0
        if not body.any():
            return np.zeros(anatomy.shape, dtype=bool)
        r = log_uniform(rng, *self.radius)
        shape = ellipsoid(anatomy.shape, pick(rng, body), shape_radii(rng, anatomy.ndim, r, self.axis_ratio),
                          random_rotation(anatomy.ndim, rng))
        return shape & body


@dataclass
class AnatomyShapes:
    """Distorted ellipsoids centred in the classes `centre_in` (or, with `junction=(a, b)`, on the pixels of a and b
    that touch the other class), kept at least `margin` pixels inside the classes `clip_to` (default: the centre
    classes, or a and b). The radius is log-uniform in `radius` but never larger than the room at the centre."""

    centre_in: tuple[int, ...] = (1,)
    clip_to: tuple[int, ...] | None = None
    junction: tuple[int, int] | None = None
    radius: tuple[float, float] = (2.0, 6.0)
    axis_ratio: tuple[float, float] = (0.6, 1.0)
    wobble: float = 0.3
    margin: float = 1.0

    def __post_init__(self) -> None:
        check_radius(self.radius)
        classes = [*self.centre_in, *(self.clip_to or ()), *(self.junction or ())]
        if 0 in classes:
            raise InputError("class 0 is the background outside the body: centre lesions in (--tissue) and keep them to "
                             "classes 1 and up")

    def regions(self, anatomy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(where centres may fall, where the lesion may extend)."""
        if self.junction is not None:
            a, b = (anatomy == k for k in self.junction)
            near = lambda other: ndimage.distance_transform_edt(~other) <= 1.5  # noqa: E731
            centres = (a & near(b)) | (b & near(a))
            allowed = np.isin(anatomy, self.clip_to or self.junction)
        else:
            centres = np.isin(anatomy, self.centre_in)
            allowed = np.isin(anatomy, self.clip_to or self.centre_in)
        return centres, allowed

    def __call__(self, image: np.ndarray, anatomy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        centres, allowed = self.regions(anatomy)
        depth = ndimage.distance_transform_edt(allowed)  # pixels to the nearest pixel outside the allowed tissue
        inside = depth > self.margin
        centres &= inside
        if not centres.any():
            return np.zeros(anatomy.shape, dtype=bool)
        r = log_uniform(rng, *self.radius)
        roomy = centres & (depth >= r + self.margin)
        if roomy.any():
            centre = pick(rng, roomy)
        else:  # no room for this size anywhere: the deepest centres, at the size that fits
            centre = pick(rng, centres & (depth >= depth[centres].max() - 0.5))
            r = max(1.0, float(depth[tuple(centre.astype(int))]) - self.margin)
        radii = shape_radii(rng, anatomy.ndim, r, self.axis_ratio)
        shape = ellipsoid(anatomy.shape, centre, radii, random_rotation(anatomy.ndim, rng), self.wobble, rng)
        return shape & inside
