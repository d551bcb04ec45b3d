import math

import numpy as np
import pytest

from medinpaint.metrics import InpaintingMetrics, dice, jaccard, mae, mae_in_mask, psnr, ssim


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
