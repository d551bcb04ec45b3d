"""Find the corruption of a target set: which pixels are missing, and whether all images share one mask.

Missing pixels hold one exact value (0 by default), but so can true black pixels (air around the body). Two facts
tell them apart. Each image's field of view is the convex hull of its known pixels: outside it, a gap cannot be
told from background and is left alone. And background moves from image to image while a shared mask does not, so
the shared candidate is the set of pixels that hold the missing value in *every* image, inside the union of the
fields of view (the naive "missing in most images" swallows the background shared by most slices). The set shares
that mask when it explains most of the in-view gaps of the typical image. Stripes, once recognised, are the mask:
their pixels that hold the missing value (in every image, when shared) over the whole image, and in view a pixel
either side where a line was too short to measure its offset (wavy stripes drift from the neighbours' it takes).
So black between the stripes (a lung, the air between arms and torso, which stay put across a patient's slices)
is known and kept, and counted as left; the fit itself ignores runs of black too long to be one stripe. Free-form
gaps are different: a stroke over the body's outline leaves missing body pixels outside the field of view,
indistinguishable from background (a quarter of the missing body pixels in the free-form case of BENCHMARKS.md).
There every pixel holding the missing value (in every image, when shared) is filled, and the network learns to
tell gap from black by being trained the same way: the in-view gaps as masks, plus every pixel of the training
slice that holds the missing value.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from medinpaint.errors import InputError
from medinpaint.fillgaps.pattern import StripePattern, find_stripes

SHARED_MIN_EXPLAINED = 0.5  # median share of an image's in-view gaps a shared mask must explain
PATTERN_SAMPLE = 16  # per-image masks checked for stripes before fitting them all
STRIPED = 0.8  # share of the stripes in view that must hold gaps for an image to count as striped


@dataclass
class Corruption:
    masks: np.ndarray  # (N, H, W) bool, True = to fill (one plane broadcast when shared)
    shared: bool
    pattern: StripePattern | None  # periodic stripes (their phase differs per image when not shared), or None
    explained: float  # median share of an image's in-view gaps that the shared candidate explains
    field: np.ndarray  # (H, W) bool: pixels inside some image's field of view
    strokes: np.ndarray | None = None  # free-form: (N, H, W) in-view gaps (1 plane when shared), the training masks
    missing_value: float = 0
    left: int = 0  # in-view pixels of the missing value outside the mask: left as they are (black, or own gaps)
    unstriped: int = 0  # per-image stripes: images where none were found, whose in-view gaps are the mask

    @property
    def pool(self) -> np.ndarray:
        """The distinct masks, for pairing with training slices."""
        if self.strokes is not None:
            return np.ascontiguousarray(self.strokes)
        return np.ascontiguousarray(self.masks[:1] if self.shared else self.masks)

    @property
    def ambiguous(self) -> bool:
        """Gaps can't be told from black here: training slices' own pixels of the missing value are masked too."""
        return self.strokes is not None

    def describe(self) -> str:
        several = len(self.masks) > 1  # one image has no phase of its own nor a mask to share
        kind = "one image" if not several else "one mask shared by all images" if self.shared else "one mask per image"
        shape = self.pattern.describe() if self.pattern else "free-form"
        if self.pattern and not self.shared and several:
            shape += " (phase differs per image)"
        gaps = self.pool if self.strokes is not None else self.masks
        cov = gaps.mean()
        in_view = gaps[:, self.field].mean() if self.field.any() else 0.0
        text = (f"{kind}; {shape}; missing {cov:.1%} of all pixels, {in_view:.1%} of the field of view "
                f"({self.field.mean():.0%} of the image)")
        if several:
            text += f"; a shared mask would explain {self.explained:.0%} of the typical image's gaps"
        if self.ambiguous:
            text += (f"; every pixel holding the missing value{' in every image' if self.shared else ''} "
                     f"({self.masks.mean():.1%} of all) is filled, as gaps over the body's outline cannot be told "
                     "from background")
        if self.left:
            where, what = (("outside the shared mask", "true black, or gaps of an image's own") if self.shared
                           else ("off the stripes", "true black"))
            text += (f"; {self.left} pixels inside the field of view hold the missing value {where} and are left as "
                     f"they are ({what})")
        if self.unstriped:
            text += (f"; no stripes of their own found in {self.unstriped} image{'s' if self.unstriped > 1 else ''}: "
                     "their gaps in view are filled as they are")
        return text


def fields_of_view(known: np.ndarray) -> np.ndarray:
    """(N, H, W) bool: the convex hull of each image's known pixels (empty for an image with none)."""
    out = np.zeros(known.shape, np.uint8)
    for k, o in zip(known, out):
        pts = cv2.findNonZero(k.astype(np.uint8))
        if pts is not None:
            cv2.fillConvexPoly(o, cv2.convexHull(pts), 1)
    return out.astype(bool)


def _set_pattern_at_its_phase(pattern: StripePattern, gaps: np.ndarray, view: np.ndarray) -> StripePattern | None:
    """The set's stripes shifted to the phase that best covers this image's in-view `gaps`, where its own are too
    few to fit (a small body); None when even that phase finds gaps under less than STRIPED of the stripes in view
    (a clean slice: its black is anatomy, not stripes). Its lines count as unmeasured: their drift is the set's."""
    best, covered = None, 0.0
    for shift in range(pattern.period):
        shifted = replace(pattern, offsets=pattern.offsets + shift, measured=np.zeros_like(pattern.measured))
        stripes = shifted.mask(gaps.shape)
        share = (gaps & stripes).sum() / max(int((view & stripes).sum()), 1)
        if share > covered:
            best, covered = shifted, share
    return best if covered >= STRIPED else None


def detect_corruption(images: np.ndarray, missing_value: float = 0) -> Corruption:
    """Masks of the pixels equal to `missing_value` that are gaps, not background, in (N, H, W) `images`."""
    gaps = images == missing_value
    if not gaps.any():
        raise InputError(f"no pixel equals the missing value {missing_value:g}: nothing to fill "
                         "(give --missing-value if the gaps hold another value)")
    views = fields_of_view(~gaps)
    field = views.any(axis=0)
    everywhere = gaps.all(axis=0)
    candidate = everywhere & field
    in_view = gaps & views
    sizes = in_view.sum(axis=(1, 2))
    explained = (in_view & candidate).sum(axis=(1, 2))[sizes > 0] / sizes[sizes > 0]
    typical = float(np.median(explained)) if explained.size else 0.0
    if len(images) >= 2 and not candidate.any() and everywhere.any() and (gaps == everywhere).all():
        # every image misses exactly the same pixels, all outside the fields of view (a band along the border):
        # background moves, so this is a shared mask, even though no known pixel surrounds it
        return Corruption(np.broadcast_to(everywhere, gaps.shape), True, None, 1.0, field, missing_value=missing_value)
    if len(images) >= 2 and candidate.any() and typical >= SHARED_MIN_EXPLAINED:
        pattern = find_stripes(candidate, field)
        # free-form: a stroke over the outline of every body is black in every image outside every field of view
        mask = (everywhere & pattern.mask(candidate.shape) | candidate & pattern.mask(candidate.shape, slack=1)
                if pattern else everywhere)
        return Corruption(np.broadcast_to(mask, gaps.shape), True, pattern, typical, field,
                          strokes=None if pattern else candidate[None], missing_value=missing_value,
                          left=int((in_view & ~mask).sum()))
    pattern = _per_image_stripes(in_view, views)
    if pattern is not None:
        masks, unstriped = np.zeros_like(gaps), 0
        for g, v, m, own_gaps in zip(gaps, views, masks, in_view):
            own = find_stripes(own_gaps, v, max_period=pattern.period)
            if own is not None and own.period == pattern.period and own.orientation == pattern.orientation:
                m[:] = g & own.mask(g.shape) | own_gaps & own.mask(g.shape, slack=1)
            elif (shifted := _set_pattern_at_its_phase(pattern, own_gaps, v)) is not None:  # too little to fit alone
                m[:] = g & shifted.mask(g.shape) | own_gaps & shifted.mask(g.shape, slack=1)
            else:  # no stripes in it (a slice that came through clean): left as it is
                unstriped += 1
        return Corruption(masks, False, pattern, typical, field, missing_value=missing_value,
                          left=int((in_view & ~masks).sum()), unstriped=unstriped)
    strokes = in_view if in_view.any() else gaps  # no gap inside any field of view: learn on the gaps as they are
    return Corruption(gaps, False, None, typical, field, strokes=strokes, missing_value=missing_value)


def _per_image_stripes(masks: np.ndarray, views: np.ndarray) -> StripePattern | None:
    """The stripe pattern most of a sample of per-image masks share (orientation, period, missing), or None."""
    pick = np.linspace(0, len(masks) - 1, min(PATTERN_SAMPLE, len(masks))).astype(int)
    fits = [find_stripes(masks[i], views[i]) for i in pick]
    keys = [(f.orientation, f.period, f.missing) for f in fits if f is not None]
    if not keys:
        return None
    top = max(set(keys), key=keys.count)
    if keys.count(top) < 0.75 * len(pick):
        return None
    return next(f for f in fits if f is not None and (f.orientation, f.period, f.missing) == top)
