"""In-plane resampling: masks keep every hole, label maps stay on their image's pixel centres."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from medinpaint.data.resample import resize_labels, resize_mask, resize_stack


@pytest.mark.parametrize("shape", [(16, 16), (23, 29), (16, 90)])  # shrink both axes, unevenly, and shrink one while growing one
def test_no_hole_is_lost_however_thin(shape: tuple[int, int]) -> None:
    for offset in range(4):
        mask = np.zeros((1, 64, 64), bool)
        mask[0, 43 + offset : 45 + offset, 43 + offset : 45 + offset] = True  # a 2x2 hole
        mask[0, :, 10 + offset] = True  # a streak one pixel wide
        small = resize_mask(mask, shape)
        assert small[0, :, : small.shape[2] // 3].any(axis=1).all()  # the streak, in every row
        assert small[0, int(shape[0] * 0.6) :, int(shape[1] * 0.6) :].any()  # the little hole


def test_a_grown_mask_covers_the_hole_and_little_more() -> None:
    mask = np.zeros((1, 10, 10), bool)
    mask[0, 4:6, 4:6] = True
    big = resize_mask(mask, (40, 40))
    assert big[0, 16:24, 16:24].all() and big.sum() <= 12 * 12


def test_labels_stay_on_the_pixel_centres_of_their_image() -> None:
    def centroid(a: np.ndarray) -> np.ndarray:
        ys, xs = np.nonzero(a)
        w = a[ys, xs].astype(np.float64)
        return np.array([(ys * w).sum(), (xs * w).sum()]) / w.sum()

    shifts: dict[str, list[np.ndarray]] = {"image": [], "labels": [], "plain nearest": []}
    for offset in range(8):  # a 16-pixel square at every phase of the 4:1 grid
        image = np.zeros((1, 64, 64), np.float32)
        image[0, 20 + offset : 36 + offset, 20 + offset : 36 + offset] = 1
        labels = image.astype(np.uint8)
        centre = (20 + offset + 7.5 + 0.5) / 4 - 0.5  # where the square's centre lands on the 16-pixel grid
        shifts["image"].append(centroid(resize_stack(image, (16, 16))[0]) - centre)
        shifts["labels"].append(centroid(resize_labels(labels, (16, 16))[0]) - centre)
        shifts["plain nearest"].append(centroid(resize_stack(labels, (16, 16), cv2.INTER_NEAREST)[0]) - centre)
    mean = {k: float(np.abs(np.mean(v, axis=0)).max()) for k, v in shifts.items()}
    assert mean["image"] < 0.01 and mean["labels"] <= 0.125  # an eighth of a pixel: a nearest sample at an even factor
    assert mean["plain nearest"] >= 0.375  # what it replaces: (4 - 1) / 2 source pixels, 3/8 of a model pixel
