"""Corruption detection on generated patterns over phantoms with true black background."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import phantom

from medinpaint.errors import InputError
from medinpaint.fillgaps import detect_corruption, find_stripes
from medinpaint.fillgaps.detect import fields_of_view
from medinpaint.masks import Blobs, BrushStrokes, Stripes


def phantoms(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    """CT-like slices: an ellipse of body on exact-zero background (about half of every image)."""
    rng = np.random.default_rng(seed)
    return np.stack([phantom(rng, size)[0] for _ in range(n)])


def lung_phantoms(n: int, size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Phantoms with a 'lung': true black inside every body, at the same place in every image, as air is in a
    patient's adjacent slices; and the lung's (H, W) mask."""
    yy, xx = np.mgrid[:size, :size] / size
    lung = ((yy - 0.44) / 0.12) ** 2 + ((xx - 0.34) / 0.08) ** 2 < 1
    images = phantoms(n, size, seed)
    images[:, lung] = 0
    return images, lung


@pytest.mark.parametrize(
    "stripes",
    [
        Stripes(4, 2, "vertical"),
        Stripes(6, 1, "horizontal"),
        Stripes(5, 3, "vertical", amplitude=3, wavelength=32),
        Stripes(8, 2, "horizontal", amplitude=2, wavelength=16),
        Stripes(4, 3, "vertical"),  # one known pixel of every four: no period 2 of the known ones
        Stripes(6, 5, "horizontal", amplitude=2, wavelength=24),
    ],
    ids=str,
)
def test_shared_stripes_are_found_with_their_period_orientation_and_shape(stripes: Stripes) -> None:
    images = phantoms(20)
    truth = stripes(np.random.default_rng(1), images.shape[1:])
    c = detect_corruption(np.where(truth, 0, images))
    assert c.shared and c.masks.shape == images.shape
    p = c.pattern
    assert (p.orientation, p.period, p.missing) == (stripes.orientation, stripes.period, stripes.missing)
    assert p.duty == pytest.approx(stripes.missing / stripes.period)
    assert p.wavy == (stripes.amplitude > 0)
    if p.wavy:
        assert p.amplitude == pytest.approx(stripes.amplitude, abs=0.5)
        assert p.wavelength == pytest.approx(stripes.wavelength, rel=0.15)
    body = images > 0
    assert (c.masks[0] | ~truth)[body.any(axis=0)].all()  # every gap over some body is found
    assert (c.masks & ~truth & body).sum() == 0  # and no known pixel is taken for a gap


def test_naive_majority_would_swallow_the_background_the_robust_mask_does_not() -> None:
    images = phantoms(30)
    truth = Stripes(4, 2, "vertical", amplitude=2, wavelength=24)(np.random.default_rng(2), images.shape[1:])
    target = np.where(truth, 0, images)
    naive = (target == 0).mean(axis=0) > 0.5
    robust = detect_corruption(target).masks[0]
    swallowed = lambda m: (m & ~truth & (images > 0)).sum()  # noqa: E731  (body pixels wrongly marked missing)
    assert swallowed(naive) > 100 * max(1, swallowed(robust))
    assert swallowed(robust) == 0


def test_full_field_images_get_the_stripes_up_to_the_border() -> None:
    rng = np.random.default_rng(3)
    images = rng.integers(1, 256, (8, 48, 40), dtype=np.uint8)
    truth = Stripes(4, 2, "vertical", random_phase=False)(rng, (48, 40))  # columns 0-1 missing: outside the hull
    c = detect_corruption(np.where(truth, 0, images))
    assert c.shared and np.array_equal(c.masks[0], truth)


@pytest.mark.parametrize("make", [BrushStrokes(), Blobs()], ids=["brush", "blobs"])
def test_free_form_masks_per_image_are_not_taken_for_shared(make) -> None:
    images = phantoms(20)
    rng = np.random.default_rng(4)
    truth = np.stack([make(rng, images.shape[1:]) for _ in images])
    c = detect_corruption(np.where(truth, 0, images))
    assert not c.shared and c.pattern is None and c.ambiguous
    body = images > 0
    assert (c.masks & ~truth & body).sum() == 0  # known body pixels are never taken for gaps
    assert c.masks[truth].all()  # every gap is filled, those over the body's outline too
    assert not (c.pool & ~c.masks).any() and (c.pool & truth & body).sum() > 0.7 * (truth & body).sum()
    assert "every pixel holding the missing value" in c.describe()


def test_stripes_with_their_own_phase_per_image_are_per_image_stripes() -> None:
    images = phantoms(12)
    rng = np.random.default_rng(5)
    truth = np.stack([Stripes(5, 2, "horizontal")(rng, images.shape[1:]) for _ in images])
    c = detect_corruption(np.where(truth, 0, images))
    assert not c.shared
    assert (c.pattern.orientation, c.pattern.period, c.pattern.missing) == ("horizontal", 5, 2)
    assert (c.masks == truth)[:, c.field].mean() > 0.97


def test_one_shared_free_form_mask_is_shared_without_a_pattern() -> None:
    images = phantoms(10)
    truth = BrushStrokes()(np.random.default_rng(6), images.shape[1:])
    c = detect_corruption(np.where(truth, 0, images))
    assert c.shared and c.pattern is None and c.ambiguous
    body = images > 0
    assert (c.masks & ~truth & body).sum() == 0
    # where a stroke cuts the edge of every body it cannot be told from background: so all that is black in
    # every image is filled, and the network trains on the in-view part plus its slices' own black
    assert c.masks[0][truth].all()
    assert c.pool.shape == (1, *truth.shape) and (c.pool[0] & truth & body.any(axis=0)).sum() > 0
    assert "every pixel holding the missing value in every image" in c.describe()


def test_a_shared_block_over_the_corner_of_full_frame_images_is_filled_whole() -> None:
    rng = np.random.default_rng(10)
    images = rng.integers(30, 250, (8, 32, 32)).astype(np.uint8)  # no background: the hull stops short of the corner
    truth = np.zeros((32, 32), bool)
    truth[:10, :10] = True
    c = detect_corruption(np.where(truth, 0, images))
    assert c.shared and np.array_equal(c.masks[0], truth)


def test_a_missing_value_other_than_zero_leaves_the_background_alone() -> None:
    images = phantoms(6).astype(np.float32) / 255
    truth = Stripes(3, 1, "vertical")(np.random.default_rng(7), images.shape[1:])
    c = detect_corruption(np.where(truth, 1.0, images), missing_value=1.0)
    assert c.shared and np.array_equal(c.masks[0], truth)


def test_no_missing_pixel_is_an_error() -> None:
    with pytest.raises(InputError, match="no pixel equals the missing value 7"):
        detect_corruption(np.full((3, 8, 8), 5, np.uint8), missing_value=7)


def test_free_form_masks_are_not_stripes() -> None:
    rng = np.random.default_rng(8)
    for _ in range(10):
        assert find_stripes(BrushStrokes()(rng, (64, 64))) is None


def test_stripe_pattern_rebuilds_the_mask() -> None:
    truth = Stripes(7, 3, "horizontal", amplitude=2.5, wavelength=20)(np.random.default_rng(9), (50, 60))
    assert np.array_equal(find_stripes(truth).mask(truth.shape), truth)


def test_a_band_along_the_border_missing_in_every_full_frame_image_is_shared() -> None:
    rng = np.random.default_rng(8)
    images = rng.integers(30, 250, (6, 32, 32)).astype(np.uint8)  # anatomy fills the frame: no background
    images[:, :, :4] = 0  # the band lies outside every field of view
    c = detect_corruption(images)
    assert c.shared and c.masks[0][:, :4].all() and c.masks[0].sum() == 32 * 4
    assert c.pool.sum() > 0  # the network trains with the gap (it trained on empty masks)


def test_free_form_gaps_all_outside_the_fields_of_view_still_train_the_network() -> None:
    rng = np.random.default_rng(9)
    images = rng.integers(30, 250, (4, 32, 32)).astype(np.uint8)
    for k, image in enumerate(images):
        image[:, : 2 + k] = 0  # a border band of its own per image
    c = detect_corruption(images)
    assert not c.shared and c.pool.any(axis=(1, 2)).all()  # every training mask holds the gaps as they are


def test_gaps_of_an_images_own_beside_a_shared_mask_are_reported_as_left() -> None:
    images = phantoms(8)
    truth = np.zeros(images.shape[1:], bool)
    truth[20:30, 20:44] = True
    corrupted = np.where(truth, 0, images)
    before = detect_corruption(corrupted)  # the phantoms' own black inside their outlines counts as left too
    assert (images[0, 34:37, 30:33] > 0).all()
    corrupted[0, 34:37, 30:33] = 0  # one image's own small hole inside the body
    c = detect_corruption(corrupted)
    assert c.shared and np.array_equal(c.masks[0], before.masks[0]) and c.left == before.left + 9
    assert f"{c.left} pixels inside the field of view hold the missing value outside the shared mask" in c.describe()


@pytest.mark.parametrize("stripes", [Stripes(4, 2, "vertical"), Stripes(5, 2, "horizontal", amplitude=2, wavelength=24)],
                         ids=str)
def test_true_black_inside_the_body_off_shared_stripes_is_left(stripes: Stripes) -> None:
    images, lung = lung_phantoms(12)
    truth = stripes(np.random.default_rng(11), lung.shape)
    c = detect_corruption(np.where(truth, 0, images))
    assert c.shared and (c.pattern.period, c.pattern.missing) == (stripes.period, stripes.missing)
    assert not (c.masks[0] & lung & ~truth).any()  # the lung between the stripes is known: black, kept
    assert c.masks[0][truth & (images > 0).any(axis=0)].all()  # every gap over some body is found
    assert c.left >= len(images) * (lung & ~truth).sum()
    assert "outside the shared mask and are left as they are" in c.describe()


def test_true_black_inside_the_body_off_per_image_stripes_is_left() -> None:
    images, lung = lung_phantoms(12, seed=12)
    rng = np.random.default_rng(12)
    truth = np.stack([Stripes(4, 2, "vertical")(rng, lung.shape) for _ in images])
    truth[-1] = False  # one slice came through clean
    c = detect_corruption(np.where(truth, 0, images))
    assert not c.shared and (c.pattern.period, c.pattern.missing) == (4, 2)
    assert not (c.masks & lung & ~truth).any()  # nor the clean slice's lung
    body = images > 0
    assert c.masks[truth & body].all() and not (c.masks & ~truth & body).any()
    assert c.left >= len(images) * (lung & ~truth[0]).sum()
    text = c.describe()
    assert "off the stripes and are left as they are" in text and "no stripes of their own found in 1 image" in text


def test_an_image_with_too_little_body_to_fit_takes_the_sets_stripes_at_its_own_phase() -> None:
    images, lung = lung_phantoms(12, seed=14)
    rng = np.random.default_rng(14)
    truth = np.stack([Stripes(4, 2, "vertical")(rng, lung.shape) for _ in images])
    images[-1] = 0
    images[-1, 28:32, 26:34] = 120  # a sliver of body: too few stripes in view to fit its own
    corrupted = np.where(truth, 0, images)
    views = fields_of_view(corrupted != 0)
    assert find_stripes((corrupted[-1] == 0) & views[-1], views[-1], max_period=4) is None  # its own fit fails
    c = detect_corruption(corrupted)
    assert not c.shared and c.unstriped == 0
    assert c.masks[-1][truth[-1] & (images[-1] > 0)].all()  # its gaps over the body found all the same


def test_air_between_arms_and_torso_neither_hides_the_stripes_nor_is_filled() -> None:
    rng = np.random.default_rng(13)
    yy, xx = np.mgrid[:64, :64]
    images = np.zeros((10, 64, 64), np.uint8)
    for image in images:  # a torso with an arm each side, moving a pixel: the air between them is black throughout
        d = rng.integers(-1, 2)
        torso = ((yy - 32) / 18) ** 2 + ((xx - 32 - d) / 16) ** 2 < 1
        arms = ((yy - 32) / 10) ** 2 + (((np.abs(xx - 32 - d) - 26) / 4) ** 2) < 1
        image[torso | arms] = rng.integers(60, 160, (torso | arms).sum())
    air = images == 0
    truth = Stripes(6, 3, "vertical")(rng, (64, 64))
    c = detect_corruption(np.where(truth, 0, images))
    assert c.shared and (c.pattern.orientation, c.pattern.period, c.pattern.missing) == ("vertical", 6, 3)
    assert not (c.masks & air & ~truth).any()


def test_one_image_is_described_as_one_image() -> None:
    images = phantoms(1)
    truth = Stripes(4, 2, "vertical")(np.random.default_rng(14), images.shape[1:])
    text = detect_corruption(np.where(truth, 0, images)).describe()
    assert text.startswith("one image; vertical stripes, 2 missing of every 4 px")
    assert "phase" not in text and "shared" not in text
