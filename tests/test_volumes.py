"""NIfTI volumes: geometry kept on the way through, intensities mapped exactly, the same pixels as the PNG path."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from medinpaint.checkpoint import Preprocessing
from medinpaint.constants import DMIAI_PIXEL_SPACING_MM, DMIAI_WINDOW_HU
from medinpaint.data import read_slices
from medinpaint.data.volumes import (Volume, display_spacing, display_stack, from_display_stack, read_mask, read_nifti,
                                     write_nifti)
from medinpaint.errors import InputError
from medinpaint.inference import Inpainter, save_inpainter
from medinpaint.models import MaskAwareUNet
from medinpaint.volume_inference import choose_intensity, fill_nifti, volume_pairs

from conftest import TINY

nib = pytest.importorskip("nibabel")

RAS_2MM = np.diag([2.0, 2.0, 5.0, 1.0])


def save(path: Path, raw: np.ndarray, affine: np.ndarray, slope: float = 1.0, inter: float = 0.0, descrip: bytes = b"") -> Path:
    image = nib.Nifti1Image(raw, affine)
    image.header.set_slope_inter(slope, inter)
    image.header["descrip"] = descrip
    nib.save(image, str(path))
    return path


@pytest.fixture(scope="module")
def ct_inpainter(tmp_path_factory: pytest.TempPathFactory) -> Inpainter:
    """A tiny untrained U-Net whose checkpoint says it was trained on DM-i-AI CT (window, 2 mm pixels)."""
    torch.manual_seed(0)
    prep = Preprocessing(intensity_window=DMIAI_WINDOW_HU, pixel_spacing_mm=DMIAI_PIXEL_SPACING_MM)
    path = save_inpainter(tmp_path_factory.mktemp("w") / "ct.safetensors", MaskAwareUNet(TINY), name="ct", preprocessing=prep)
    return Inpainter.from_pretrained(path, backend="torch")


def ct_volume(rng: np.random.Generator, shape: tuple[int, int, int] = (40, 36, 4)) -> np.ndarray:
    """int16 Hounsfield units: air around a soft-tissue body with fat."""
    hu = np.full(shape, -1000, dtype=np.int16)
    hu[6:-6, 6:-6] = rng.integers(-120, 80, (shape[0] - 12, shape[1] - 12, shape[2]))
    return hu


def test_a_volume_round_trips_with_its_geometry_and_scaling(tmp_path: Path) -> None:
    raw = np.random.default_rng(0).integers(0, 3000, (9, 7, 5)).astype(np.uint16)
    affine = np.array([[0, 0, -2.5, 10], [-0.8, 0, 0, 20], [0, 0.8, 0, -30], [0, 0, 0, 1]], dtype=float)  # LPS-like, permuted
    vol = read_nifti(save(tmp_path / "a.nii.gz", raw, affine, slope=1.0, inter=-1024.0, descrip=b"scanner"))
    write_nifti(tmp_path / "b.nii.gz", vol.with_values(vol.values + 5, np.zeros(raw.shape, bool)))
    back = nib.load(str(tmp_path / "b.nii.gz"))
    assert back.get_data_dtype() == np.uint16 and np.array_equal(back.dataobj.get_unscaled(), raw)
    assert np.allclose(back.affine, affine) and back.header["descrip"] == b"scanner"
    assert (back.dataobj.slope, back.dataobj.inter) == (1.0, -1024.0)
    assert back.header.get_zooms() == nib.load(str(tmp_path / "a.nii.gz")).header.get_zooms()


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_display_stacks_invert_for_any_orientation(axis: int) -> None:
    a = np.random.default_rng(1).random((5, 6, 7))
    for affine in (RAS_2MM, np.diag([-1.0, -1.0, 3.0, 1.0]), np.array([[0, 0, 2.0, 0], [1.0, 0, 0, 0], [0, -1.0, 0, 0], [0, 0, 0, 1]])):
        assert np.array_equal(from_display_stack(display_stack(a, affine, axis), affine, axis), a)


def test_an_axial_slice_is_shown_anterior_up_and_patient_right_on_the_left() -> None:
    a = np.zeros((4, 6, 3))
    a[3, 5, 1] = 1  # RAS (+x to the patient's right): the right-most, most anterior voxel of axial slice 1
    for affine in (RAS_2MM, np.diag([-2.0, -2.0, 5.0, 1.0])):  # the same anatomy stored RAS and LPS
        arr = a if affine[0, 0] > 0 else a[::-1, ::-1]
        shown = display_stack(arr, affine, 2)
        assert shown.shape == (3, 6, 4) and shown[1, 0, 0] == 1  # top row (anterior), left column (patient right)
    assert display_spacing(Volume(a, 1, 0, RAS_2MM, nib.Nifti1Image(a, RAS_2MM).header), 2) == (2.0, 2.0)


@pytest.mark.parametrize("stored", ["ras", "yxz"])
def test_display_spacing_follows_each_axis_of_an_anisotropic_volume(stored: str) -> None:
    """0.7 mm left-right, 0.8 mm front-back, 5 mm head-foot, stored as RAS or with the first two axes swapped: a
    slice's rows and columns get the spacing of the anatomical axes they show."""
    affine = np.diag([0.7, 0.8, 5.0, 1.0]) if stored == "ras" else np.array(
        [[0, 0.7, 0, 0], [0.8, 0, 0, 0], [0, 0, 5.0, 0], [0, 0, 0, 1.0]])
    a = np.zeros((4, 6, 3))
    volume = Volume(a, 1, 0, affine, nib.Nifti1Image(a, affine).header)
    assert display_spacing(volume, 2) == pytest.approx((0.8, 0.7))  # axial: rows front-back, columns left-right
    assert display_spacing(volume, 1) == pytest.approx((5.0, 0.7))  # coronal: rows head-foot, columns left-right
    assert display_spacing(volume, 0) == pytest.approx((5.0, 0.8))  # sagittal: rows head-foot, columns front-back


def test_hounsfield_units_are_exact_outside_the_mask(tmp_path: Path, ct_inpainter: Inpainter) -> None:
    rng = np.random.default_rng(2)
    hu = ct_volume(rng)
    mask = np.zeros(hu.shape, np.uint8)
    mask[12:20, 10:24, 1:3] = 1
    scan = save(tmp_path / "scan.nii.gz", hu, RAS_2MM)
    save(tmp_path / "mask.nii.gz", mask, RAS_2MM)
    record = fill_nifti(ct_inpainter, scan, tmp_path / "mask.nii.gz", tmp_path / "out" / "filled.nii.gz")
    out = nib.load(str(tmp_path / "out" / "filled.nii.gz"))
    filled = np.asanyarray(out.dataobj)
    assert out.get_data_dtype() == np.int16 and np.allclose(out.affine, RAS_2MM)
    assert np.array_equal(filled[mask == 0], hu[mask == 0])
    inside = filled[mask == 1]
    assert inside.min() >= DMIAI_WINDOW_HU[0] and inside.max() <= DMIAI_WINDOW_HU[1] and not np.array_equal(inside, hu[mask == 1])
    assert record["intensity"] == {"kind": "ct-window", "low": -150.0, "high": 250.0}
    assert record["slices_filled"] == 2 and record["resampled_to"] is None
    assert json.loads((tmp_path / "out" / "filled.json").read_text())["output"].endswith("filled.nii.gz")


def test_the_bundled_samples_fill_through_nifti_as_through_png(tmp_path: Path, samples: Path, ct_inpainter: Inpainter) -> None:
    """The 12 sample slices stacked as an axial CT volume (uint8 stored, scaled to the DM-i-AI Hounsfield window)."""
    s = read_slices(samples)
    lo, hi = DMIAI_WINDOW_HU
    to_volume = lambda stack: np.ascontiguousarray(stack[:, ::-1, ::-1].transpose(2, 1, 0))  # noqa: E731  display -> RAS
    scan = save(tmp_path / "ct.nii.gz", to_volume(s.images), RAS_2MM, slope=(hi - lo) / 255, inter=lo)
    save(tmp_path / "mask.nii.gz", to_volume(s.masks.astype(np.uint8)), RAS_2MM)
    save(tmp_path / "tissue.nii.gz", to_volume(s.tissue), RAS_2MM)
    fill_nifti(ct_inpainter, scan, tmp_path / "mask.nii.gz", tmp_path / "filled.nii.gz", tissue=tmp_path / "tissue.nii.gz")
    through_nifti = display_stack(nib.load(str(tmp_path / "filled.nii.gz")).dataobj.get_unscaled(), RAS_2MM, 2)
    through_png = ct_inpainter.predict_batch(s.images, s.masks, s.tissue, None)
    diff = np.abs(through_nifti.astype(int) - through_png.astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() >= 0.9999  # float rounding may move a rare pixel by one level


def test_finer_pixels_are_resampled_to_the_model_and_back(tmp_path: Path, ct_inpainter: Inpainter) -> None:
    hu = ct_volume(np.random.default_rng(3), (64, 60, 2))
    mask = np.zeros(hu.shape, bool)
    mask[20:30, 20:40, 0] = True
    filled, record = ct_inpainter.predict_volume(hu, mask, spacing=(1.0, 1.0, 3.0), axis=2)
    assert record["resampled_to"] == [32, 30] and record["slices_filled"] == 1
    assert np.array_equal(filled[~mask], hu[~mask]) and filled.dtype == np.float64


def test_a_hole_smaller_than_a_model_pixel_still_reaches_the_model(ct_inpainter: Inpainter, monkeypatch: pytest.MonkeyPatch) -> None:
    hu = ct_volume(np.random.default_rng(4), (64, 64, 1))
    mask = np.zeros(hu.shape, bool)
    mask[43:45, 43:45, 0] = True  # 2x2 voxels of 0.5 mm: an eighth of a 2 mm model pixel's area, between the samples
    seen = []
    real = ct_inpainter.predict_batch
    monkeypatch.setattr(ct_inpainter, "predict_batch", lambda images, masks, *a, **k: (seen.append(masks.sum()), real(images, masks, *a, **k))[1])
    filled, record = ct_inpainter.predict_volume(hu, mask, spacing=(0.5, 0.5, 3.0), axis=2)
    assert record["resampled_to"] == [16, 16] and seen and seen[0] >= 1  # the model was asked to fill it
    assert np.array_equal(filled[~mask], hu[~mask])


def test_a_volume_stored_with_a_fourth_dimension_of_one_comes_back_in_its_shape(tmp_path: Path, ct_inpainter: Inpainter) -> None:
    hu = ct_volume(np.random.default_rng(6))[..., None]  # (X, Y, Z, 1), as many tools write a 3-D volume
    mask = np.zeros(hu.shape, np.uint8)
    mask[10:20, 10:20, 1] = 1
    scan = save(tmp_path / "scan.nii.gz", hu, RAS_2MM)
    record = fill_nifti(ct_inpainter, scan, save(tmp_path / "mask.nii.gz", mask[..., 0], RAS_2MM), tmp_path / "filled.nii.gz")
    out = np.asanyarray(nib.load(str(tmp_path / "filled.nii.gz")).dataobj)
    assert record["slices_filled"] == 1 and out.shape == hu.shape and out.dtype == hu.dtype
    assert np.array_equal(out[mask == 0], hu[mask == 0]) and not np.array_equal(out[mask == 1], hu[mask == 1])


def test_mri_is_scaled_by_percentiles_and_says_so() -> None:
    values = np.random.default_rng(4).gamma(2.0, 300.0, (20, 20, 3))
    known = np.ones(values.shape, bool)
    mapping = choose_intensity(values, known, DMIAI_WINDOW_HU, "auto")
    assert mapping.kind == "percentiles" and mapping.low == pytest.approx(np.percentile(values, 0.5))
    assert mapping.high == pytest.approx(np.percentile(values, 99.5))
    assert choose_intensity(values - 1000, known, DMIAI_WINDOW_HU, "auto").kind == "ct-window"
    with pytest.raises(InputError, match="records no intensity window"):
        choose_intensity(values - 1000, known, None, "auto")


def test_the_ct_test_by_counting_agrees_with_the_first_percentile() -> None:
    """Counting decides whether the known voxels' 1st percentile is below -100 HU without sorting them; it must agree
    with np.percentile everywhere, also when the percentile falls between the two samples around the threshold."""
    from medinpaint.volume_inference import _first_percentile_below

    rng = np.random.default_rng(6)
    for n in (1, 2, 101, 1000):
        for share in (0.0, 0.005, 0.01, 0.02, 0.5):
            values = np.where(rng.random(n) < share, -1000.0, rng.uniform(-99, 400, n))
            usable = rng.random(n) < 0.9
            if usable.any():
                assert _first_percentile_below(values, usable, -100.0) == (np.percentile(values[usable], 1) < -100)
    edge = np.r_[np.full(2, -1000.0), np.full(99, 0.0)]  # i = 1: the percentile lies between samples 1 and 2
    assert _first_percentile_below(edge, np.ones(101, bool), -100.0) == (np.percentile(edge, 1) < -100)


def test_bad_volumes_are_one_line_errors(tmp_path: Path) -> None:
    hu = ct_volume(np.random.default_rng(5))
    scan = read_nifti(save(tmp_path / "scan.nii.gz", hu, RAS_2MM))
    cases = {
        "shape": (save(tmp_path / "m1.nii.gz", np.zeros((5, 5, 5), np.uint8), RAS_2MM), "mask of shape (5, 5, 5)"),
        "affine": (save(tmp_path / "m2.nii.gz", np.zeros(hu.shape, np.uint8), np.diag([1.0, 1, 1, 1])), "affine differs"),
        "binary": (save(tmp_path / "m3.nii.gz", np.arange(hu.size, dtype=np.int16).reshape(hu.shape) % 3, RAS_2MM), "must be binary"),
    }
    for path, message in cases.values():
        with pytest.raises(InputError, match=re.escape(message)):
            read_mask(path, scan)
    assert read_mask(save(tmp_path / "m4.nii.gz", np.ones(hu.shape, np.uint8), RAS_2MM), scan).all()  # all 1: all missing
    empty = save(tmp_path / "m5.nii.gz", np.zeros(hu.shape, np.uint8), RAS_2MM)
    with pytest.raises(InputError, match="m5.nii.gz: the mask marks no missing voxels"):
        fill_nifti(Inpainter(MaskAwareUNet(TINY)), tmp_path / "scan.nii.gz", empty, tmp_path / "out" / "f.nii.gz")
    assert not (tmp_path / "out").exists()
    with pytest.raises(InputError, match="4-D image"):
        read_nifti(save(tmp_path / "four.nii.gz", np.zeros((4, 4, 4, 2), np.int16), RAS_2MM))
    (tmp_path / "junk.nii.gz").write_bytes(b"not a volume")
    with pytest.raises(InputError, match="not a readable NIfTI volume"):
        read_nifti(tmp_path / "junk.nii.gz")


def test_volume_folders_are_matched_by_case_name(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "msk").mkdir()
    for name in ("a_0000.nii.gz", "b_0000.nii.gz"):
        (tmp_path / "img" / name).write_bytes(b"")
    (tmp_path / "msk" / "a.nii.gz").write_bytes(b"")
    (tmp_path / "msk" / "b.nii").write_bytes(b"")
    assert [(i.name, m.name, c) for i, m, c in volume_pairs(tmp_path / "img", tmp_path / "msk")] == [
        ("a_0000.nii.gz", "a.nii.gz", "a"), ("b_0000.nii.gz", "b.nii", "b")]
    (tmp_path / "msk" / "c.nii.gz").write_bytes(b"")  # meant for a volume that is not there: never filled
    with pytest.raises(InputError, match=r"c.nii.gz: a mask with no image in .*img"):
        volume_pairs(tmp_path / "img", tmp_path / "msk")
    (tmp_path / "msk" / "c.nii.gz").unlink()
    (tmp_path / "msk" / "b.nii").unlink()
    with pytest.raises(InputError, match="no mask named b"):
        volume_pairs(tmp_path / "img", tmp_path / "msk")


def test_volumes_that_share_a_case_name_keep_their_own_masks_and_outputs(tmp_path: Path) -> None:
    """`pt_0001` and `pt_0002` are two patients, not two channels of `pt`: each has its own mask and output; two
    channels of one case share its mask and keep their own names."""
    for folder in ("img", "msk", "chan", "cmsk"):
        (tmp_path / folder).mkdir()
    for name in ("pt_0001", "pt_0002"):
        (tmp_path / "img" / f"{name}.nii.gz").write_bytes(b"")
        (tmp_path / "msk" / f"{name}.nii.gz").write_bytes(b"")
    assert [(m.name, c) for _, m, c in volume_pairs(tmp_path / "img", tmp_path / "msk")] == [
        ("pt_0001.nii.gz", "pt_0001"), ("pt_0002.nii.gz", "pt_0002")]
    for name in ("brain_0000", "brain_0001"):
        (tmp_path / "chan" / f"{name}.nii.gz").write_bytes(b"")
    (tmp_path / "cmsk" / "brain.nii.gz").write_bytes(b"")
    assert [(m.name, c) for _, m, c in volume_pairs(tmp_path / "chan", tmp_path / "cmsk")] == [
        ("brain.nii.gz", "brain_0000"), ("brain.nii.gz", "brain_0001")]
    (tmp_path / "cmsk" / "brain_0001.nii.gz").write_bytes(b"")  # channel 1's own mask: brain.nii.gz is channel 0's only
    assert [m.name for _, m, _ in volume_pairs(tmp_path / "chan", tmp_path / "cmsk")] == ["brain.nii.gz", "brain_0001.nii.gz"]
    (tmp_path / "img" / "pt_0001.nii").write_bytes(b"")
    with pytest.raises(InputError, match="pt_0001.nii.gz has the same name"):
        volume_pairs(tmp_path / "img", tmp_path / "msk")


def test_a_nan_among_the_known_voxels_does_not_spread_into_the_fill(ct_inpainter: Inpainter) -> None:
    hu = ct_volume(np.random.default_rng(8)).astype(np.float32)
    hu[0, 0, :] = np.nan
    mask = np.zeros(hu.shape, bool)
    mask[12:20, 10:24, 1] = True
    filled, record = ct_inpainter.predict_volume(hu, mask, spacing=(2.0, 2.0, 5.0))
    assert record["intensity"]["kind"] == "ct-window" and np.isfinite(filled[mask]).all()
    assert np.array_equal(filled[~mask], hu[~mask], equal_nan=True)
    with pytest.raises(InputError, match="along all three axes"):
        ct_inpainter.predict_volume(hu, mask, spacing=(2.0, 2.0))
    for level in (356.0, 100.7):  # the uint8 cast wrapped 356 onto 100 and cut 100.7 to it: both passed as body
        with pytest.raises(InputError, match="tissue map values must be"):
            ct_inpainter.predict_volume(np.nan_to_num(hu), mask, tissue=np.full(hu.shape, level))


def test_the_cli_fills_a_volume_and_a_folder_and_refuses_bad_outputs(tmp_path: Path, tiny_checkpoint: Path) -> None:
    from typer.testing import CliRunner

    from medinpaint.cli import app

    hu = ct_volume(np.random.default_rng(6))
    mask = np.zeros(hu.shape, np.uint8)
    mask[10:20, 10:20, 2] = 1
    (tmp_path / "img").mkdir()
    (tmp_path / "msk").mkdir()
    scan = save(tmp_path / "img" / "case_0000.nii.gz", hu, RAS_2MM)
    save(tmp_path / "msk" / "case.nii.gz", mask, RAS_2MM)
    run = lambda *a: CliRunner().invoke(app, [str(x) for x in a])  # noqa: E731
    args = ("predict", "--weights", tiny_checkpoint, "--mask", tmp_path / "msk" / "case.nii.gz", "--modality", "mri", "--no-progress")
    done = run(*args, "-i", scan, "-o", tmp_path / "filled.nii.gz")
    assert done.exit_code == 0, done.output
    assert "filled 1 of 4 slices" in done.output and "percentiles" in done.output and "--modality ct" not in done.output
    soft = save(tmp_path / "soft.nii.gz", np.clip(hu, 20, None), RAS_2MM)  # a CT crop with no air nor fat
    guessed = run(*args[:5], "--no-progress", "-i", soft, "-o", tmp_path / "soft-filled.nii.gz")
    assert guessed.exit_code == 0 and "percentiles; taken for MRI" in guessed.output and "pass --modality ct" in guessed.output
    assert np.array_equal(np.asanyarray(nib.load(str(tmp_path / "filled.nii.gz")).dataobj)[mask == 0], hu[mask == 0])
    again = run(*args, "-i", scan, "-o", tmp_path / "filled.nii.gz")
    assert again.exit_code == 2 and "already exists" in again.output
    same = run(*args, "-i", scan, "-o", scan, "--overwrite")
    assert same.exit_code == 2 and "must not be the input itself" in same.output
    assert np.array_equal(np.asanyarray(nib.load(str(scan)).dataobj), hu)
    no_mask = run("predict", "--weights", tiny_checkpoint, "-i", scan, "-o", tmp_path / "x.nii.gz")
    assert no_mask.exit_code == 2 and "needs --mask" in no_mask.output
    folder = run("predict", "--weights", tiny_checkpoint, "-i", tmp_path / "img", "--mask", tmp_path / "msk",
                 "--modality", "mri", "-o", tmp_path / "out", "--no-progress")
    assert folder.exit_code == 0, folder.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["case.json", "case.nii.gz"]
    assert json.loads((tmp_path / "out" / "case.json").read_text())["output"] == str(tmp_path / "out" / "case.nii.gz")
    dated = run(*args, "-i", scan, "-o", tmp_path / "scan_2024.nii.gz")
    assert dated.exit_code == 0 and (tmp_path / "scan_2024.json").is_file()  # the record keeps the output's whole name
    from_folder = run(*args[:3], "--mask", tmp_path / "msk", *args[5:], "-i", scan, "-o", tmp_path / "f.nii.gz")
    assert from_folder.exit_code == 0, from_folder.output  # one volume, its mask matched by name in a folder
    assert json.loads((tmp_path / "f.json").read_text())["mask"] == str(tmp_path / "msk" / "case.nii.gz")
    (tmp_path / "other").mkdir()
    unmatched = run(*args[:3], "--mask", tmp_path / "other", *args[5:], "-i", scan, "-o", tmp_path / "g.nii.gz")
    assert unmatched.exit_code == 2 and "no mask named case.nii.gz" in unmatched.output and not (tmp_path / "g.nii.gz").exists()


def volume_folder(root: Path, cases: int = 3) -> Path:
    """`images/` of CT volumes (1 mm pixels, so they are resampled), `masks/` and `labels/` named by case."""
    rng = np.random.default_rng(7)
    for kind in ("images", "masks", "labels"):
        (root / kind).mkdir(parents=True)
    affine = np.diag([1.0, 1.0, 3.0, 1.0])
    for c in range(cases):
        hu = ct_volume(rng, (300, 280, 2 + c))
        mask = np.zeros(hu.shape, np.uint8)
        mask[100:140, 100:160] = 1
        save(root / "images" / f"case{c}_0000.nii.gz", hu, affine)
        save(root / "masks" / f"case{c}.nii.gz", mask, affine)
        save(root / "labels" / f"case{c}.nii.gz", (hu > -500).astype(np.uint8), affine)
    return root


def test_a_folder_of_volumes_reads_packs_and_trains_as_slices(tmp_path: Path) -> None:
    from medinpaint.checkpoint import read_metadata
    from medinpaint.data import split_by_patient
    from medinpaint.data.cache import load, pack
    from medinpaint.data.split import patient_of
    from medinpaint.training import TrainConfig, train

    s = read_slices(volume_folder(tmp_path / "vols"))
    assert s.layout == "nifti" and s.images.shape == (9, 256, 256) and s.ids[:3] == ["case0:z0000", "case0:z0001", "case1:z0000"]
    assert s.masks.shape == s.labels.shape == s.images.shape and s.masks.any() and set(np.unique(s.labels)) == {0, 1}
    assert s.intensity_window == DMIAI_WINDOW_HU and s.pixel_spacing_mm == DMIAI_PIXEL_SPACING_MM
    train_idx, val_idx = split_by_patient(s.ids)
    assert not {patient_of(s.ids[i]) for i in train_idx} & {patient_of(s.ids[i]) for i in val_idx}  # whole volumes
    # 300 x 280 pixels of 1 mm are 150 x 140 of 2 mm, centred: the corners are padding
    assert s.images[0, :50].max() == 0 and s.images[0, 128, 128] > 0
    pack(s, tmp_path / "packed")
    back = load(tmp_path / "packed")
    assert back.layout == "nifti" and back.pixel_spacing_mm == 2.0 and np.array_equal(back.labels, s.labels)
    weights = train(s, tmp_path / "run", TrainConfig(steps=1, batch_size=2, val_cases=2, network=TINY), device="cpu", progress=False)
    prep = read_metadata(weights).preprocessing
    assert prep.intensity_window == DMIAI_WINDOW_HU and prep.pixel_spacing_mm == DMIAI_PIXEL_SPACING_MM


def test_two_channels_of_one_case_are_one_patient_to_the_validation_split(tmp_path: Path) -> None:
    """nnU-Net's `a_0000`, `a_0001` are two contrasts of one patient: validating on one after training on the other
    would score anatomy the network has seen. Patients numbered `pt_0000`, `pt_0001` stay patients."""
    from medinpaint.data.split import patient_of, split_by_patient
    from medinpaint.data.volumes import channels_of_cases

    rng = np.random.default_rng(12)
    (tmp_path / "chan").mkdir()
    for case in ("a", "b", "c"):
        for channel in ("0000", "0001"):
            save(tmp_path / "chan" / f"{case}_{channel}.nii.gz", ct_volume(rng, (40, 40, 2)), RAS_2MM)
    s = read_slices(tmp_path / "chan")
    assert s.ids[:3] == ["a:c0000:z0000", "a:c0000:z0001", "a:c0001:z0000"]
    assert sorted({patient_of(i) for i in s.ids}) == ["a", "b", "c"]
    train_idx, val_idx = split_by_patient(s.ids, val_fraction=0.34)
    assert len(val_idx) == 4 and not {patient_of(s.ids[i]) for i in train_idx} & {patient_of(s.ids[i]) for i in val_idx}
    names = lambda *stems: [Path(f"{n}.nii.gz") for n in stems]  # noqa: E731
    assert channels_of_cases(names("pt_0000", "pt_0001", "pt_0002")) == {}  # one prefix: patients numbered
    assert channels_of_cases(names("a_0000", "a_0001", "b_0000")) == {}  # b lacks a channel: not nnU-Net's layout
    assert channels_of_cases(names("a_0001", "a_0002", "b_0001", "b_0002")) == {}  # channels count from 0000
    assert channels_of_cases(names("a_0000", "a_0001", "b")) == {}


def test_a_nifti2_volume_is_written_back_as_nifti2(tmp_path: Path, ct_inpainter: Inpainter) -> None:
    hu = ct_volume(np.random.default_rng(9))
    nib.save(nib.Nifti2Image(hu, RAS_2MM), str(tmp_path / "scan.nii.gz"))
    mask = np.zeros(hu.shape, np.uint8)
    mask[10:20, 10:20, 1] = 1
    save(tmp_path / "mask.nii.gz", mask, RAS_2MM)
    fill_nifti(ct_inpainter, tmp_path / "scan.nii.gz", tmp_path / "mask.nii.gz", tmp_path / "out.nii.gz")
    back = nib.load(str(tmp_path / "out.nii.gz"))
    assert isinstance(back, nib.Nifti2Image) and np.array_equal(np.asanyarray(back.dataobj)[mask == 0], hu[mask == 0])
    write_nifti(tmp_path / "one.nii", read_nifti(tmp_path / "mask.nii.gz"))
    assert type(nib.load(str(tmp_path / "one.nii"))) is nib.Nifti1Image  # and NIfTI-1 stays NIfTI-1


def test_fill_nifti_never_writes_over_its_inputs_or_an_earlier_output(tmp_path: Path, ct_inpainter: Inpainter,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    hu = ct_volume(np.random.default_rng(10))
    scan, mask = save(tmp_path / "scan.nii.gz", hu, RAS_2MM), np.zeros(hu.shape, np.uint8)
    mask[10:20, 10:20, 1] = 1
    mask_path = save(tmp_path / "mask.nii.gz", mask, RAS_2MM)
    tissue = save(tmp_path / "tissue.nii.gz", np.zeros(hu.shape, np.uint8), RAS_2MM)
    for target in (scan, mask_path, tissue):
        with pytest.raises(InputError, match="must not be the input itself"):
            fill_nifti(ct_inpainter, scan, mask_path, target, tissue=tissue, overwrite=True)
    assert np.array_equal(np.asanyarray(nib.load(str(scan)).dataobj), hu)
    out = tmp_path / "out.nii.gz"
    fill_nifti(ct_inpainter, scan, mask_path, out)
    written = out.read_bytes()
    with pytest.raises(InputError, match=re.escape(f"{out}: already exists")):
        fill_nifti(ct_inpainter, scan, mask_path, out)
    out.unlink()
    with pytest.raises(InputError, match=re.escape(f"{tmp_path / 'out.json'}: already exists")):
        fill_nifti(ct_inpainter, scan, mask_path, out)  # the record of an earlier run is not replaced either
    assert not out.exists()
    fill_nifti(ct_inpainter, scan, mask_path, out, overwrite=True)
    assert out.read_bytes() == written
    notes = tmp_path / "notes.json"
    notes.write_text('{"reader": "me"}')  # a JSON file of the record's name that medinpaint did not write
    with pytest.raises(InputError, match=re.escape(f"{notes}: is not a record medinpaint wrote")):
        fill_nifti(ct_inpainter, scan, mask_path, tmp_path / "notes.nii.gz", overwrite=True)
    assert notes.read_text() == '{"reader": "me"}' and not (tmp_path / "notes.nii.gz").exists()
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path / "empty")
    for here in (Path("."), Path(".."), Path("a/..")):  # no name of its own: it cannot be replaced
        with pytest.raises(InputError, match="not the current folder"):
            fill_nifti(ct_inpainter, scan, mask_path, here, overwrite=True)
    assert list((tmp_path / "empty").iterdir()) == []


def test_errors_about_a_volume_name_the_file_at_fault(tmp_path: Path, ct_inpainter: Inpainter) -> None:
    hu = ct_volume(np.random.default_rng(11))
    scan = save(tmp_path / "scan.nii.gz", hu, RAS_2MM)
    mask = np.zeros(hu.shape, np.uint8)
    mask[10:20, 10:20, 1] = 1
    mask_path = save(tmp_path / "mask.nii.gz", mask, RAS_2MM)
    tissue = save(tmp_path / "tissue.nii.gz", np.full(hu.shape, 7, np.uint8), RAS_2MM)
    with pytest.raises(InputError, match=re.escape(f"{tissue}: tissue map values must be (0, 100, 255), found [7")):
        fill_nifti(ct_inpainter, scan, mask_path, tmp_path / "a.nii.gz", tissue=tissue)
    everything = save(tmp_path / "all.nii.gz", np.ones(hu.shape, np.uint8), RAS_2MM)
    with pytest.raises(InputError, match=re.escape(f"{everything}: every voxel is masked")):
        fill_nifti(ct_inpainter, scan, everything, tmp_path / "b.nii.gz")
    nan = save(tmp_path / "nan.nii.gz", np.full(hu.shape, np.nan, np.float32), RAS_2MM)
    with pytest.raises(InputError, match=re.escape(f"{nan}: every voxel is masked (or not a number)")):
        fill_nifti(ct_inpainter, nan, mask_path, tmp_path / "c.nii.gz")  # no known voxel is a number: the scan's fault
    assert not [p for p in tmp_path.iterdir() if p.name in ("a.nii.gz", "b.nii.gz", "c.nii.gz")]


def test_the_cli_fills_an_images_and_masks_folder_as_volumes(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """README's NIfTI layout `images/` + `masks/`: filled as volumes (masks/ the default --mask), not cut into PNG
    slices; the volume options are refused for slices."""
    from typer.testing import CliRunner

    from medinpaint.cli import app

    root = tmp_path / "vols"
    for kind in ("images", "masks"):
        (root / kind).mkdir(parents=True)
    hu = ct_volume(np.random.default_rng(12))
    mask = np.zeros(hu.shape, np.uint8)
    mask[10:20, 10:20, 2] = 1
    save(root / "images" / "case_0000.nii.gz", hu, RAS_2MM)
    save(root / "masks" / "case.nii.gz", mask, RAS_2MM)
    run = lambda *a: CliRunner().invoke(app, [str(x) for x in ("predict", "--weights", tiny_checkpoint, "--no-progress", *a)])  # noqa: E731
    done = run("-i", root, "-o", tmp_path / "out", "--modality", "mri")
    assert done.exit_code == 0, done.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["case.json", "case.nii.gz"]
    filled = np.asanyarray(nib.load(str(tmp_path / "out" / "case.nii.gz")).dataobj)
    assert np.array_equal(filled[mask == 0], hu[mask == 0]) and not np.array_equal(filled[mask == 1], hu[mask == 1])
    given = run("-i", root, "--mask", root / "masks", "-o", tmp_path / "out2", "--modality", "mri", "--axis", "1")
    assert given.exit_code == 0, given.output
    inside = run("-i", root, "-o", root / "out", "--modality", "mri")
    assert inside.exit_code == 2 and "inside the input folder" in inside.output
    named_as_file = run("-i", root, "-o", tmp_path / "out.nii.gz", "--modality", "mri")
    assert named_as_file.exit_code == 2 and "the output of a folder of volumes is a folder" in named_as_file.output
    assert not (tmp_path / "out.nii.gz").exists()
    (tmp_path / "bare" / "images").mkdir(parents=True)
    save(tmp_path / "bare" / "images" / "case_0000.nii.gz", hu, RAS_2MM)
    no_masks = run("-i", tmp_path / "bare", "-o", tmp_path / "out3")
    assert no_masks.exit_code == 2 and "needs --mask" in no_masks.output
    slices = tmp_path / "slices"
    (slices / "images").mkdir(parents=True)
    (slices / "masks").mkdir()
    img = np.arange(64, dtype=np.uint8).reshape(8, 8)
    from medinpaint.data.png import write_gray_png
    write_gray_png(slices / "images" / "a.png", img)
    write_gray_png(slices / "masks" / "a.png", np.where(img > 30, 255, 0).astype(np.uint8))
    for option in (("--mask", root / "masks"), ("--tissue", root / "masks"), ("--axis", "0"), ("--series", "AXIAL"),
                   ("--modality", "ct"), ("--dicom-out",), ("--vertebra", "3")):
        refused = run("-i", slices, "-o", tmp_path / "sl", *option)
        assert refused.exit_code == 2 and refused.output.count("\n") == 1, refused.output
        assert refused.output.startswith(f"error: {slices}: {option[0]} is only for ") and "a set of slices" in refused.output
    on_volume = run("-i", root, "-o", tmp_path / "v", "--vertebra", "3")  # a level is one PNG slice's, never a volume's
    assert on_volume.exit_code == 2 and "--vertebra is only for one PNG slice, and this is a volume" in on_volume.output
    assert not (tmp_path / "sl").exists() and run("-i", slices, "-o", tmp_path / "sl").exit_code == 0


@pytest.mark.parametrize(("stored", "found"), [(300, "0..300"), (-3, "-3..1"), (1.5, "0..1.5")])
def test_a_label_map_outside_0_to_255_or_fractional_is_refused_not_clipped(tmp_path: Path, stored: float, found: str) -> None:
    """Clipped, label 300 became 255 and -3 background; truncated, 1.5 became 1: classes silently merged."""
    root = volume_folder(tmp_path / "vols", cases=1)
    labels = root / "labels" / "case0.nii.gz"
    values = np.asarray(nib.load(labels).dataobj).astype(np.float32)
    values[0, 0, 0] = stored
    save(labels, values, nib.load(labels).affine)
    with pytest.raises(InputError, match=re.escape(f"{labels}: label maps must hold whole numbers 0..255 (one per class), found {found}")):
        read_slices(root)


def test_label_maps_stored_as_whole_floats_are_read() -> None:
    from medinpaint.data.volume_slices import whole_labels

    out = whole_labels(np.array([[0.0, 1.0], [255.0, 2.0]], np.float32), Path("l.nii.gz"))
    assert out.dtype == np.uint8 and out.tolist() == [[0, 1], [255, 2]]


def test_dicom_out_folders_with_dots_in_their_names_get_records_of_their_own() -> None:
    from medinpaint.volume_inference import record_path

    assert record_path(Path("out/filled.nii.gz")) == Path("out/filled.json")
    assert record_path(Path("out/series.v1")) != record_path(Path("out/series.v2"))
    assert record_path(Path("out/series.v1")) == Path("out/series.v1.json")
