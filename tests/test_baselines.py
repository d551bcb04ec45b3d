import numpy as np

from medinpaint.baselines import OFFICIAL_FILL_VALUE, TissueMeanFill, official_fill, telea_fill, zero_fill
from medinpaint.data import read_slices
from medinpaint.data.slices import SliceSet
from medinpaint.metrics import mae


def toy() -> SliceSet:
    truth = np.array([[[0, 40, 110], [0, 30, 120]]], np.uint8)
    tissue = np.array([[[0, 255, 100], [0, 255, 100]]], np.uint8)
    masks = np.array([[[True, True, True], [False, False, False]]])
    return SliceSet(["001_0"], np.where(masks, 0, truth).astype(np.uint8), masks, truth, tissue)


def test_zero_and_official_fill() -> None:
    s = toy()
    assert zero_fill(s)[0, 0].tolist() == [0, 0, 0]
    assert official_fill(s)[0, 0].tolist() == [0, OFFICIAL_FILL_VALUE, OFFICIAL_FILL_VALUE]
    assert official_fill(s)[0, 1].tolist() == [0, 30, 120]  # known pixels untouched


def test_tissue_mean_fill_uses_fitted_class_means() -> None:
    fill = TissueMeanFill.fit(toy())
    assert fill.means == {0: 0.0, 100: 115.0, 255: 35.0}
    assert fill(toy())[0, 0].tolist() == [0, 35, 115]


def test_baselines_rank_as_measured_on_the_samples(samples) -> None:
    """On real slices the per-tissue mean beats the official fill, which beats zero fill."""
    s = read_slices(samples)
    scores = {name: mae(fn(s), s.truth) for name, fn in
              {"zero": zero_fill, "official": official_fill, "tissue": TissueMeanFill(), "telea": telea_fill}.items()}
    assert scores["tissue"] < scores["official"] < scores["zero"]
    assert scores["telea"] < scores["zero"]
