"""`medinpaint fill-gaps` end to end on a tiny phantom case, its datasets, its training sources and its bad input."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY
from test_fillgaps_detect import lung_phantoms, phantoms
from typer.testing import CliRunner

from medinpaint.checkpoint import shipped_weights_dir
from medinpaint.cli import app
from medinpaint.errors import InputError
from medinpaint.fillgaps import corrupted_pairs, fill_gaps, target_dataset
from medinpaint.fillgaps.sources import _size_note, images_from_generator, resample
from medinpaint.masks import BrushStrokes, Stripes

runner = CliRunner()
STRIPES = Stripes(4, 2, "vertical", amplitude=1, wavelength=16)(np.random.default_rng(0), (32, 32))  # the stripe case's


def cli(*args: object) -> tuple[int, str]:
    result = runner.invoke(app, ["fill-gaps", *map(str, args)])
    return result.exit_code, result.output


@pytest.fixture
def stripe_case(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """A (12, 1, 32, 32) float64 target with shared wavy stripes over phantoms with a black 'lung', 40 clean 48x48
    uint8 training slices, and the target's truth."""
    truth = lung_phantoms(12, 32, seed=1)[0][:, None] / 255.0
    np.save(tmp_path / "target.npy", np.where(STRIPES, 0, truth))
    np.save(tmp_path / "train.npy", phantoms(40, 48, seed=2))
    return tmp_path / "target.npy", tmp_path / "train.npy", np.where(STRIPES, 0, truth), truth


def test_the_command_fills_in_order_shape_and_dtype_and_keeps_known_pixels(stripe_case, tmp_path: Path) -> None:
    target_path, train_path, target, truth = stripe_case
    out, figs = tmp_path / "filled.npy", tmp_path / "figures"
    code, text = cli("-i", target_path, "-o", out, "--train-images", train_path, "--steps", 3, "--device", "cpu",
                     "--figures", figs, "--no-progress")
    assert code == 0, text
    filled = np.load(out)
    assert filled.shape == target.shape and filled.dtype == np.float64
    known = target != 0
    assert np.array_equal(filled[known], target[known])  # bit for bit, image by image: the order is kept
    lung = np.broadcast_to(lung_phantoms(1, 32)[1] & ~STRIPES, target.shape)
    assert lung.sum() > 100 and (filled[lung] == 0).all()  # black between the stripes is known: kept
    assert (filled[(target == 0) & (truth > 0)] > 0).all() and filled.max() <= 1  # every gap over a body is filled
    assert "vertical stripes, 2 missing of every 4 px" in text and "shared by all images" in text
    assert "resampled from 48x48 to 32x32" in text
    assert {p.name for p in figs.iterdir()} == {"training_slices.png", "training_pairs.png", "target_filled.png",
                                                "training_progress.png", "report.txt"}
    assert (figs / "report.txt").read_text().startswith("input: ")


def test_the_python_api_fills_uint8_per_image_masks(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    truth = phantoms(6, 32, seed=4)
    masks = np.stack([BrushStrokes()(rng, (32, 32)) for _ in truth])
    images = np.where(masks, 0, truth).astype(np.uint8)
    result = fill_gaps(images, phantoms(30, 32, seed=5), tmp_path / "run", steps=2, minutes=None, network=TINY, progress=False)
    assert not result.corruption.shared and result.config.mask_symmetries and result.config.ambiguous_value == 0
    assert result.filled.dtype == np.uint8 and result.filled.shape == images.shape
    keep = ~result.corruption.masks
    assert np.array_equal(result.filled[keep], images[keep])
    assert result.steps == 2 and result.weights.is_file()


def test_the_report_says_when_black_may_be_filled_too(stripe_case, tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    truth = phantoms(6, 32, seed=7)
    target = tmp_path / "brush.npy"
    np.save(target, np.where(np.stack([BrushStrokes()(rng, (32, 32)) for _ in truth]), 0, truth).astype(np.uint8))
    code, text = cli("-i", target, "-o", tmp_path / "out.npy", "--train-images", stripe_case[1], "--steps", 1,
                     "--device", "cpu", "--no-progress")
    assert code == 0, text
    assert "every other pixel is returned unchanged" not in text and "are taken as background" not in text
    assert "so true black may come back changed too; every pixel of another value is returned unchanged" in text


def test_the_budget_is_checked_before_detection_and_sampling(stripe_case, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    def slow(*args: object, **kwargs: object) -> None:
        raise AssertionError("called before the budget was checked")

    for name in ("detect_corruption", "images_from_generator", "images_from_path"):
        monkeypatch.setattr(f"medinpaint.fillgaps.command.{name}", slow)
    code, text = cli("-i", stripe_case[0], "-o", tmp_path / "out.npy", "--minutes", 0)
    assert code == 2 and "--minutes above 0" in text, text


def test_oblong_targets_get_training_slices_scaled_and_cropped_not_stretched() -> None:
    square = np.zeros((1, 20, 20), np.float32)
    square[0, 6:14, 6:14] = 1  # an 8x8 block
    wide = resample(square, (10, 40))  # x2, then the middle 10 rows
    assert wide.shape == (1, 10, 40) and wide[0, :, 14:26].min() > 0.99 and wide[0, :, :10].max() == 0
    assert (wide[0, 5] > 0.5).sum() == 16  # the block is 16 wide, as it is tall
    tall = resample(square, (40, 8))  # fewer pixels than the source, yet grown x2 to cover it: bilinear
    assert tall.shape == (1, 40, 8) and (tall[0, :, 4] > 0.5).sum() == 16
    assert ((tall > 0.01) & (tall < 0.99)).any()  # interpolated, not repeated as area averaging grows
    assert _size_note((20, 20), (10, 40)) == ", resampled from 20x20 to 40x40 and cropped to its middle 40x10"


def test_training_pairs_are_corrupted_like_the_target() -> None:
    clean = phantoms(5, 32)
    pool = np.stack([Stripes(4, 1, "vertical")(np.random.default_rng(s), (32, 32)) for s in range(2)])
    corrupted, mask, truth = corrupted_pairs(clean, pool).tensors
    assert corrupted.shape == mask.shape == truth.shape == (5, 1, 32, 32)
    assert np.allclose(truth[:, 0].numpy(), clean / 255.0)
    assert (corrupted[mask > 0] == 0).all() and (corrupted[mask == 0] == truth[mask == 0]).all()
    assert all(any(np.array_equal(m, p) for p in pool) for m in mask[:, 0].numpy().astype(bool))
    images, masks = target_dataset(np.where(pool[0], 0, clean), np.broadcast_to(pool[0], clean.shape)).tensors
    assert images.shape == masks.shape == (5, 1, 32, 32) and images.dtype == masks.dtype


def test_a_generator_of_another_size_is_resampled_and_said_so() -> None:
    shipped = shipped_weights_dir() / "synth-vae-64.safetensors"  # the real generator, 64x64
    images, note = images_from_generator(shipped, (32, 32), 4)
    assert images.shape == (4, 32, 32) and images.dtype == np.float32 and 0 <= images.min() < images.max() <= 1
    assert "resampled from 64x64 to 32x32" in note
    same, note = images_from_generator(None, (64, 64), 2)  # the shipped generator of the target's size, as it is
    assert same.shape == (2, 64, 64) and "resampled" not in note
    large, note = images_from_generator(None, (256, 256), 2)  # none shipped at 256 (yet): the 64x64 one, grown
    assert large.shape == (2, 256, 256) and "the shipped 64x64 generator, resampled from 64x64 to 256x256" in note


def test_a_broken_import_is_a_bug_not_a_missing_feature(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "medinpaint.synthesis", None)  # the package's own import fails
    with pytest.raises(ImportError):  # a traceback to report, never "synthesis is not available"
        images_from_generator(None, (32, 32), 2)


def test_a_generator_that_cannot_be_loaded_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="missing.safetensors.*pass --train-images PATH"):
        images_from_generator(tmp_path / "missing.safetensors", (32, 32), 2)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((4, 8)), "expected an array \\(N,H,W\\) or \\(N,1,H,W\\)"),
        (np.full((2, 8, 8), np.nan), "NaN"),
        (np.full((2, 8, 8), 3.0), "float values must lie in \\[0, 1\\]"),
        (np.full((2, 8, 8), 300, np.int16), "expected uint8 or float values"),
        (np.full((2, 8, 8), 9, np.uint8), "bad.npy: no pixel equals the missing value 0"),
    ],
    ids=["2-D", "nan", "float-range", "int16", "no-zeros"],
)
def test_bad_input_is_one_clear_line(stripe_case, tmp_path: Path, array: np.ndarray, message: str) -> None:
    bad = tmp_path / "bad.npy"
    np.save(bad, array)
    code, text = cli("-i", bad, "-o", tmp_path / "out.npy", "--train-images", stripe_case[1], "--steps", 1)
    assert code == 2 and text.count("\n") == 1
    assert re.search(message, text), text


def test_an_npz_archive_is_one_clear_line(stripe_case, tmp_path: Path) -> None:
    """np.load gives an .npz archive, not an array; it used to end in an AttributeError traceback."""
    bad = tmp_path / "target.npz"
    np.savez(bad, images=np.zeros((2, 8, 8), np.uint8))
    code, text = cli("-i", bad, "-o", tmp_path / "out.npy", "--train-images", stripe_case[1], "--steps", 1)
    assert code == 2 and text.count("\n") == 1
    assert f"{bad}: not a .npy file" in text and "np.save" in text, text


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["-o", "{target}"], "must not be the input"),
        (["-o", "{train}", "--overwrite"], "must not be the input"),
        (["-o", "{tmp}/out.txt"], "must be a .npy file"),
        (["-o", "{tmp}/out.npy", "--generator", "g.safetensors"], "not both"),
        (["-o", "{tmp}/out.npy", "--missing-value", "3"], "must lie in \\[0, 1\\] for float images"),
        (["-o", "{tmp}/out.npy", "--missing-value", "nan"], "--missing-value must be a finite number"),
    ],
    ids=["output-is-input", "output-is-training-set", "not-npy", "two-sources", "missing-value", "missing-value-nan"],
)
def test_bad_options_are_one_clear_line(stripe_case, tmp_path: Path, extra: list[str], message: str) -> None:
    target, train = stripe_case[:2]
    args = [a.format(target=target, train=train, tmp=tmp_path) for a in extra]
    code, text = cli("-i", target, "--train-images", train, "--steps", 1, *args)
    assert code == 2 and text.count("\n") == 1
    assert re.search(message, text), text


def test_a_missing_training_path_is_a_clear_error(stripe_case, tmp_path: Path) -> None:
    code, text = cli("-i", stripe_case[0], "-o", tmp_path / "o.npy", "--train-images", tmp_path / "none.npy")
    assert code == 2 and "none.npy: no such file or folder" in text
    code, text = cli("-i", tmp_path / "gone.npy", "-o", tmp_path / "o.npy", "--train-images", stripe_case[1])
    assert code == 2 and text.strip().endswith("gone.npy: no such file"), text


def test_the_figures_never_replace_the_folder_of_the_training_set(stripe_case, tmp_path: Path) -> None:
    folder = tmp_path / "clean"
    folder.mkdir()
    train = folder / "train.npy"
    train.write_bytes(stripe_case[1].read_bytes())
    code, text = cli("-i", stripe_case[0], "-o", tmp_path / "out.npy", "--train-images", train, "--figures", folder,
                     "--overwrite", "--steps", 1)
    assert code == 2 and f"{folder}: output must not be a folder that holds the input {train}" in text, text
    assert train.read_bytes() == stripe_case[1].read_bytes() and not (tmp_path / "out.npy").exists()


def test_outputs_that_could_not_be_written_are_refused_before_training(stripe_case, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A figures folder with a file of the user's, or a folder where the .npy goes, would be refused only once
    the network had trained, and the work lost."""
    monkeypatch.setattr("medinpaint.fillgaps.command.fill_gaps", lambda *a, **k: pytest.fail("trained before the check"))
    figures = tmp_path / "figs"
    figures.mkdir()
    (figures / "notes.txt").write_text("mine")
    code, text = cli("-i", stripe_case[0], "-o", tmp_path / "out.npy", "--train-images", stripe_case[1], "--figures", figures,
                     "--overwrite", "--steps", 1)
    assert code == 2 and f"{figures}: holds notes.txt that medinpaint did not write" in text and text.count("\n") == 1, text
    (tmp_path / "taken.npy").mkdir()
    code, text = cli("-i", stripe_case[0], "-o", tmp_path / "taken.npy", "--train-images", stripe_case[1], "--steps", 1)
    assert code == 2 and f"{tmp_path / 'taken.npy'}: is a folder; the output is a file" in text, text
    assert (figures / "notes.txt").read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == [
        "figs", "taken.npy", "target.npy", "train.npy"]


def test_corrupted_slices_are_not_taken_for_clean_training_images(stripe_case, tmp_path: Path) -> None:
    """A set with masks and no truth holds corrupted slices: trained on, they would teach that the gaps are black."""
    from conftest import write_dmiai

    folder = write_dmiai(tmp_path / "dmiai", [0, 1], per_patient=2)
    for kind in ("ct", "tissue", "vertebrae"):  # corrupted/ and mask/ left
        for f in (folder / kind).iterdir():
            f.unlink()
        (folder / kind).rmdir()
    code, text = cli("-i", stripe_case[0], "-o", tmp_path / "out.npy", "--train-images", folder, "--steps", 1)
    assert code == 2 and "the slices have masks but no clean version" in text and text.count("\n") == 1, text
    assert not (tmp_path / "out.npy").exists()
