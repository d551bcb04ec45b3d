"""The learned lesion-mask generator: lesion-centred patches, a tiny VAE that learns a shape family, its one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medinpaint.checkpoint import read_metadata
from medinpaint.errors import InputError
from medinpaint.lesions.learned import LearnedMasks, MaskGenTrainConfig, lesion_patches, train_mask_generator
from medinpaint.models.lesion_vae import MaskVAEConfig

SIZE = 48


def body() -> np.ndarray:
    """Background, a big rectangle of class 1 with a band of class 2 on its right."""
    anatomy = np.zeros((SIZE, SIZE), np.uint8)
    anatomy[6:42, 4:44] = 1
    anatomy[6:42, 36:44] = 2
    return anatomy


def bars(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One horizontal bar (3-4 px tall, 12-16 px wide) a slice, always inside class 1."""
    masks = np.zeros((n, SIZE, SIZE), bool)
    for m in masks:
        h, w = rng.integers(3, 5), rng.integers(12, 17)
        y, x = rng.integers(8, 40 - h), rng.integers(6, 34 - w)
        m[y : y + h, x : x + w] = True
    return masks, np.stack([body()] * n)


@pytest.fixture(scope="module")
def bar_training(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A tiny mask VAE trained on 200 bars; without augmentation, since the 8 symmetries would teach it vertical bars too."""
    masks, anatomy = bars(200, np.random.default_rng(0))
    cfg = MaskGenTrainConfig(steps=120, batch_size=16, lr=3e-3, warmup_steps=20, seed=0, augment=False,
                             network=MaskVAEConfig(patch=32, base_channels=8, latent=4))
    weights = train_mask_generator(masks, anatomy, tmp_path_factory.mktemp("maskgen") / "run", cfg, device="cpu", progress=False)
    return weights, masks


def test_lesion_patches_centre_each_lesion_alone_with_its_class_and_depth() -> None:
    masks = np.zeros((3, 20, 20), bool)
    anatomy = np.zeros((3, 20, 20), np.uint8)
    anatomy[:, :, :6], anatomy[:, :, 6:] = 1, 2
    masks[0, 2:5, 2:5] = True  # centroid (3, 3), class 1, 3 px from class 2
    masks[0, 4, 7:10] = True  # centroid (4, 8), class 2, 3 px from class 1; inside the first lesion's patch
    masks[2, 0:3, 17:20] = True  # centroid (1, 18), at the slice's corner
    windows, anats, classes, depths = lesion_patches(masks, anatomy, 16)
    assert windows.shape == anats.shape == (3, 16, 16) and windows.dtype == bool and anats.dtype == np.uint8
    assert classes.tolist() == [1, 2, 2] and depths.tolist() == [3.0, 3.0, 13.0]
    assert windows[0].sum() == 9 and windows[0][7:10, 7:10].all()  # the other lesion is zeroed
    assert windows[1].sum() == 3 and windows[1][8, 7:10].all()
    assert windows[2].sum() == 9 and windows[2][7:10, 7:10].all()
    assert (anats[0][:5] == 0).all() and (anats[0][5:, :5] == 0).all() and anats[0][8, 8] == 1  # zero beyond the slice
    assert (anats[2][:, 10:] == 0).all() and anats[2][8, 8] == 2


def test_the_learned_generator_reproduces_a_shape_family(bar_training: tuple[Path, np.ndarray]) -> None:
    weights, masks = bar_training
    sampling = read_metadata(weights).sampling
    assert sampling["centre_classes"] == [0.0, 1.0, 0.0] and sampling["centre_depths"][0] == []
    generator, anatomy, rng = LearnedMasks.from_pretrained(weights), body(), np.random.default_rng(1)
    mean_area = masks.sum(axis=(1, 2)).mean()
    good = 0
    for _ in range(30):
        mask = generator(np.zeros_like(anatomy), anatomy, rng)
        ys, xs = np.nonzero(mask)
        wide = np.ptp(xs) + 1 >= 2 * (np.ptp(ys) + 1)
        good += wide and 0.4 * mean_area <= mask.sum() <= 2.5 * mean_area and (anatomy[mask] == 1).mean() >= 0.9
    assert good >= 24


def test_sampling_is_seeded_and_falls_back_to_the_body(bar_training: tuple[Path, np.ndarray]) -> None:
    generator = LearnedMasks.from_pretrained(bar_training[0])
    anatomy = body()
    draw = lambda a, seed: generator(np.zeros_like(a), a, np.random.default_rng(seed))  # noqa: E731
    assert (draw(anatomy, 5) == draw(anatomy, 5)).all()
    no_class_1 = np.where(anatomy == 1, 2, anatomy).astype(np.uint8)
    mask = draw(no_class_1, 0)
    assert mask.any() and (no_class_1[mask] > 0).all()
    assert not draw(np.zeros_like(anatomy), 0).any()  # no body: no room, the caller draws another slice


def test_training_without_lesions_is_a_one_line_error(tmp_path: Path) -> None:
    masks, anatomy = np.zeros((4, SIZE, SIZE), bool), np.stack([body()] * 4)
    with pytest.raises(InputError, match="needs at least one lesion") as err:
        train_mask_generator(masks, anatomy, tmp_path / "run", MaskGenTrainConfig(steps=1), device="cpu", progress=False)
    assert "\n" not in str(err.value)


def test_patches_grow_to_hold_the_largest_lesion() -> None:
    from medinpaint.lesions.learned import fitting_patch

    masks = np.zeros((2, 96, 96), dtype=bool)
    masks[0, 10:14, 10:20] = True  # 10 px wide
    assert fitting_patch(masks) == 16
    masks[1, 20:60, 30:41] = True  # 40 px tall: 50 with the spare quarter, so 56
    assert fitting_patch(masks) == 56
    lobes = np.zeros((1, 96, 96), dtype=bool)
    for k in range(3):  # three 14 px lobes touching corner to corner: one 42 px lesion, as lesions are counted
        lobes[0, 14 * k : 14 * (k + 1), 14 * k : 14 * (k + 1)] = True
    assert fitting_patch(lobes) == 56


@pytest.mark.parametrize("spoil", [lambda s: s.pop("centre_depths"), lambda s: s["centre_classes"].pop(), lambda s: s.clear()],
                         ids=["no-depths", "lengths-differ", "empty"])
def test_a_malformed_placement_record_is_one_line(bar_training: tuple[Path, np.ndarray], tmp_path: Path, spoil) -> None:
    import json

    from safetensors.torch import load_file, safe_open, save_file

    weights, _ = bar_training
    with safe_open(str(weights), framework="pt") as f:
        meta = json.loads(f.metadata()["medinpaint"])
    spoil(meta["sampling"])
    bad = tmp_path / "bad.safetensors"
    save_file(load_file(str(weights)), str(bad), metadata={"medinpaint": json.dumps(meta)})
    with pytest.raises(InputError, match=r"bad.safetensors: (malformed lesion placement|the metadata lacks the lesion placement)"):
        LearnedMasks.from_pretrained(bad)
