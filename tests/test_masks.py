import numpy as np
import pytest

from medinpaint.masks import Blobs, BrushStrokes, Stripes, mask_statistics
from medinpaint.samples import sample_dir
from medinpaint.data import read_slices


def test_brush_strokes_match_measured_dmiai_statistics() -> None:
    """Ranges measured on 200 DM-i-AI masks (benchmarks/mask_stats.py): coverage 13-74 % (median 40 %), median
    stroke width 6-82 px (median 29), 98 % touch the border, 1-7 pieces (median 3)."""
    rng = np.random.default_rng(0)
    gen = BrushStrokes()
    stats = [mask_statistics(gen(rng, (256, 256))) for _ in range(60)]
    cov = np.array([s["coverage"] for s in stats])
    width = np.array([s["width"] for s in stats])
    assert 0.30 <= np.median(cov) <= 0.45 and cov.min() >= 0.10 and cov.max() <= 0.80
    assert 18 <= np.median(width) <= 40
    assert np.mean([s["border"] for s in stats]) >= 0.8
    assert 1 <= np.median([s["pieces"] for s in stats]) <= 4


def test_real_mask_statistics_fall_in_the_same_ranges() -> None:
    masks = read_slices(sample_dir()).masks
    cov = [mask_statistics(m)["coverage"] for m in masks]
    assert 0.12 <= min(cov) and max(cov) <= 0.73


@pytest.mark.parametrize("orientation", ["vertical", "horizontal"])
def test_stripes_have_the_asked_period_and_duty(orientation: str) -> None:
    m = Stripes(period=4, missing=2, orientation=orientation, random_phase=False)(np.random.default_rng(0), (12, 16))
    line = m[0] if orientation == "vertical" else m[:, 0]
    assert line[:8].tolist() == [True, True, False, False] * 2
    assert m.mean() == 0.5
    assert (m == m[:1]).all() if orientation == "vertical" else (m == m[:, :1]).all()


def test_wavy_stripes_shift_along_the_stripe_and_keep_duty() -> None:
    m = Stripes(period=4, missing=2, amplitude=2.0, wavelength=16)(np.random.default_rng(0), (32, 32))
    assert m.mean() == 0.5
    assert not (m == m[:1]).all()  # rows differ: the stripes wave
    assert all(row.reshape(-1, 4).sum(1).tolist() == [2] * 8 for row in m)


def test_stripes_reject_impossible_duty() -> None:
    with pytest.raises(ValueError, match="0 < missing < period"):
        Stripes(period=3, missing=3)


def test_generators_share_one_signature_and_are_seeded() -> None:
    for gen in (BrushStrokes(), Stripes(), Blobs()):
        a = gen(np.random.default_rng(5), (20, 30))
        b = gen(np.random.default_rng(5), (20, 30))
        assert a.dtype == bool and a.shape == (20, 30) and np.array_equal(a, b)
