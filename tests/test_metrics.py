import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medinpaint.metrics import InpaintingMetrics, dice, jaccard, mae, mae_in_mask, psnr, ssim
from medinpaint.plots import plot_progress


def test_mae_and_psnr_equal_hand_computed_values() -> None:
    pred = np.array([[0, 10], [20, 30]], np.uint8)
    truth = np.array([[0, 12], [16, 30]], np.uint8)  # errors 0, 2, 4, 0 (uint8 must not wrap around)
    assert mae(pred, truth) == 1.5
    assert mae_in_mask(pred, truth, np.array([[0, 1], [1, 0]], bool)) == 3.0
    assert psnr(pred, truth) == pytest.approx(10 * math.log10(255**2 / 5.0))
    assert psnr(pred, pred) == math.inf


def test_ssim_is_one_for_equal_images_and_drops_with_noise() -> None:
    rng = np.random.default_rng(0)
    img = (rng.random((32, 32)) * 255).astype(np.uint8)
    noise = rng.normal(0, 1, img.shape)
    mild, strong = np.clip(img + 10 * noise, 0, 255), np.clip(img + 60 * noise, 0, 255)
    assert ssim(img, img) == pytest.approx(1.0)
    assert 1.0 > ssim(img, mild) > ssim(img, strong)
    noisy = strong
    assert ssim(img, noisy) == pytest.approx(ssim(noisy, img))


def _test_images(shape: tuple[int, int], seed: int) -> list[np.ndarray]:
    """Noise, a noisy copy of it, a ramp and a smooth pattern with an edge: uint8, `shape`."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, shape, dtype=np.uint8)
    noisy = np.clip(noise + rng.normal(0, 25, shape), 0, 255).astype(np.uint8)
    y, x = np.mgrid[: shape[0], : shape[1]]
    ramp = ((3 * x + 2 * y) % 256).astype(np.uint8)
    wave = ((np.sin(x / 5) * np.cos(y / 7) + 1) * 100 + 50 * (x > shape[1] // 2)).astype(np.uint8)
    return [noise, noisy, ramp, wave]


@pytest.mark.parametrize("shape", [(64, 64), (50, 70)])
def test_ssim_equals_scikit_image(shape: tuple[int, int]) -> None:
    from skimage.metrics import structural_similarity

    images = _test_images(shape, seed=shape[1])
    for a in images:
        for b in images:
            ref = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                        data_range=255)
            assert ssim(a, b) == pytest.approx(ref, abs=1e-6)


def test_ssim_of_constant_images_follows_the_luminance_term() -> None:
    a, b = np.full((24, 24), 100.0), np.full((24, 24), 50.0)
    c1 = (0.01 * 255) ** 2
    assert ssim(a, b) == pytest.approx((2 * 100 * 50 + c1) / (100**2 + 50**2 + c1))


def test_dice_and_jaccard_equal_hand_computed_values() -> None:
    p = np.array([1, 1, 0, 0], bool)
    t = np.array([1, 0, 1, 0], bool)
    assert dice(p, t) == 0.5 and jaccard(p, t) == pytest.approx(1 / 3)
    assert dice(np.zeros(3), np.zeros(3)) == 1.0 and jaccard(np.zeros(3), np.zeros(3)) == 1.0


def test_accumulator_aggregates_means_first_then_count() -> None:
    m = InpaintingMetrics()
    truth = np.zeros((8, 8), np.uint8)
    mask = np.ones((8, 8), bool)
    m("a", np.full((8, 8), 2, np.uint8), truth, mask)
    m("b", np.full((8, 8), 4, np.uint8), truth, mask)
    summary = m.aggregate()
    assert list(summary)[0] == "mae" and list(summary)[-1] == "n"
    assert summary["mae"] == 3.0 and summary["n"] == 2
    exact = InpaintingMetrics()
    exact("a", truth, truth, mask)  # PSNR is infinite: no mean, and JSON null rather than NaN
    assert exact.aggregate()["psnr"] is None and summary["psnr"] == pytest.approx(np.mean([psnr(np.full((8, 8), v, np.uint8), truth) for v in (2, 4)]))


@pytest.mark.parametrize("header, rows", [
    ("step,loss,val_mae", ["1,0.5,", "2,0.4,", "3,0.3,12.5", "4,0.25,", "5,0.2,10.0"]),
    ("step,loss,val_loss,val_dice_fat", ["1,0.5,,", "2,0.4,0.6,0.7", "3,0.3,,", "4,0.2,0.5,0.8"]),
    ("step,elapsed_s,lr,loss,images_per_s", [f"{i},{i},0.001,{1 / i},30" for i in range(1, 120)]),
])
def test_plot_progress_draws_whatever_validation_columns_the_log_has(header: str, rows: list[str],
                                                                     tmp_path: Path) -> None:
    log, png = tmp_path / "log.csv", tmp_path / "progress.png"
    log.write_text("\n".join([header, *rows]) + "\n")
    plot_progress(log, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000


def test_importing_the_figure_modules_keeps_the_matplotlib_backend() -> None:
    code = ("import matplotlib; before = matplotlib.get_backend(); "
            "import medinpaint.plots, medinpaint.fillgaps.figures, medinpaint.synthesis.figures; "
            "print(before, matplotlib.get_backend())")
    env = {**os.environ, "MPLBACKEND": "svg"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["svg", "svg"]
