"""Recognise periodic stripes in a mask: orientation, period, missing pixels per period, straight or wavy.

A stripe mask crosses every line (an image row for vertical stripes) with the same run of `missing` pixels out of
every `period`, shifted by an offset that is constant along the stripes (straight) or drifts (wavy). The fit looks
only at `valid` pixels, so gaps that could be background elsewhere do not bias it, and it rebuilds the pattern
over the whole image, where the data cannot show it. A run along a line as long as a period cannot be one stripe:
it is black beside the stripes (air in a lung, between arms and torso), so the fit of that period ignores it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_AGREEMENT = 0.9  # share of valid pixels the periodic pattern must explain
MIN_CONSISTENT = 0.9  # share of lines that must show the same number of missing pixels per period


@dataclass(frozen=True)
class StripePattern:
    orientation: str  # "vertical" (stripes run top to bottom) or "horizontal"
    period: int
    missing: int  # missing pixels in every period
    offsets: np.ndarray  # per line across the stripes: where the missing run starts, unwrapped (float, NaN-free)
    agreement: float  # share of valid pixels that the pattern explains
    measured: np.ndarray  # per line: True where the offset was read from the line, not taken from its neighbours

    @property
    def duty(self) -> float:
        return self.missing / self.period

    @property
    def amplitude(self) -> float:
        """Half the range of the stripes' sideways drift, in pixels (0 for straight stripes)."""
        return float(np.ptp(self.offsets) / 2)

    @property
    def wavy(self) -> bool:
        return self.amplitude >= 0.5

    @property
    def wavelength(self) -> float | None:
        """Length of one wave along the stripes, from the strongest frequency of the drift (None if straight)."""
        if not self.wavy:
            return None
        drift = self.offsets - self.offsets.mean()
        spectrum = np.abs(np.fft.rfft(drift))
        k = int(np.argmax(spectrum[1:]) + 1)
        return len(drift) / k

    def mask(self, shape: tuple[int, int], slack: int = 0) -> np.ndarray:
        """The pattern over a whole (H, W) image; with `slack`, each stripe widened by that many pixels either side
        on the lines whose offset was not measured (wavy stripes drift from the neighbours' offset it took)."""
        h, w = shape
        lines, length = (h, w) if self.orientation == "vertical" else (w, h)
        widen = np.where(self.measured[:lines], 0, slack)[:, None]
        pos = (np.arange(length)[None, :] - np.rint(self.offsets)[:lines, None].astype(int) + widen) % self.period
        m = pos < self.missing + 2 * widen
        return m if self.orientation == "vertical" else m.T

    def describe(self) -> str:
        shape = "straight"
        if self.wavy:
            shape = f"wavy (drift +-{self.amplitude:.1f} px, wavelength ~{self.wavelength:.0f} px)"
        return (f"{self.orientation} stripes, {self.missing} missing of every {self.period} px "
                f"(duty {self.duty:.0%}), {shape}; the pattern explains {self.agreement:.1%} of the pixels it covers")


def find_stripes(mask: np.ndarray, valid: np.ndarray | None = None, max_period: int = 32) -> StripePattern | None:
    """The periodic stripe pattern that best explains `mask` on the `valid` pixels, or None (free-form)."""
    valid = np.ones(mask.shape, bool) if valid is None else valid
    fits = [_fit_lines(mask, valid, max_period, "vertical"), _fit_lines(mask.T, valid.T, max_period, "horizontal")]
    fits = [f for f in fits if f is not None]
    return max(fits, key=lambda f: f.agreement) if fits else None


def _fit_lines(mask: np.ndarray, valid: np.ndarray, max_period: int, orientation: str) -> StripePattern | None:
    """Fit stripes that cross every row of `mask`: the smallest period whose agreement is (nearly) the best."""
    runs = _run_lengths(mask & valid)
    gaps = int((mask & valid).sum())
    # a period whose filter drops most of the gaps is too short for them (3 missing of every 4 is no period 2)
    fits = [f for p in range(2, min(max_period, mask.shape[1] // 2) + 1)
            if 2 * int((mask & valid & (runs < p)).sum()) >= gaps and (f := _fit_period(mask, valid & (runs < p), p, orientation))]
    if not fits:
        return None
    best = max(f.agreement for f in fits)
    return min((f for f in fits if f.agreement >= best - 0.01), key=lambda f: f.period)


def _fit_period(mask: np.ndarray, valid: np.ndarray, p: int, orientation: str) -> StripePattern | None:
    onehot = (np.arange(mask.shape[1])[:, None] % p == np.arange(p)[None, :]).astype(np.float64)
    seen = valid.astype(np.float64) @ onehot  # valid pixels per (line, phase)
    hit = (mask & valid).astype(np.float64) @ onehot  # of them missing
    lines = np.flatnonzero((seen > 0).all(axis=1) & (seen.sum(axis=1) >= 2 * p))
    if len(lines) < 2:
        return None
    runs = hit[lines] > seen[lines] / 2  # the missing phases of each line
    counts = runs.sum(axis=1)
    values, freq = np.unique(counts, return_counts=True)
    k = int(values[np.argmax(freq)])
    if not 0 < k < p or freq.max() < MIN_CONSISTENT * len(lines):
        return None
    starts = runs & ~np.roll(runs, 1, axis=1)  # a contiguous (cyclic) run has exactly one start
    good = (counts == k) & (starts.sum(axis=1) == 1)
    if good.sum() < MIN_CONSISTENT * len(lines):
        return None
    agreement = float(np.maximum(hit, seen - hit)[lines].sum() / seen[lines].sum())
    if agreement < MIN_AGREEMENT:
        return None
    known = lines[good]
    drift = np.unwrap(np.argmax(starts[good], axis=1).astype(np.float64), period=p)
    offsets = np.interp(np.arange(mask.shape[0]), known, drift)  # lines without data take their neighbours' offset
    return StripePattern(orientation, p, k, offsets, agreement, np.isin(np.arange(mask.shape[0]), known))


def _run_lengths(m: np.ndarray) -> np.ndarray:
    """Per pixel of (lines, length) `m`: the length of the run of True along its line that holds it (0 where False)."""
    def upto(a: np.ndarray) -> np.ndarray:  # pixels of the run so far, this one included
        c = np.cumsum(a, axis=1)
        return c - np.maximum.accumulate(np.where(a, 0, c), axis=1)

    return np.where(m, upto(m) + upto(m[:, ::-1])[:, ::-1] - 1, 0)
