"""A DICOM series in: written here with pydicom, read back as a volume whose geometry survives into NIfTI."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from medinpaint.data.dicom import describe, is_dicom_folder, read_dicom_series
from medinpaint.data.volumes import Volume
from medinpaint.errors import InputError
from medinpaint.inference import Inpainter
from medinpaint.volume_inference import fill_nifti

pydicom = pytest.importorskip("pydicom")
nib = pytest.importorskip("nibabel")


def write_series(folder: Path, hu: np.ndarray, spacing=(0.7, 0.8), step: float = 2.5, origin=(-100.0, -120.0, 50.0),
                 description: str = "AXIAL", uid: str | None = None, shuffle: bool = True, skip: int | None = None) -> Path:
    """`hu` (rows, cols, slices) as CT images stored uint16 with intercept -1024, files in shuffled order."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    uid = uid or generate_uid()
    order = np.random.default_rng(0).permutation(hu.shape[2]) if shuffle else np.arange(hu.shape[2])
    for k in order:
        if k == skip:
            continue
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        name = folder / f"{description.lower()}{k:03d}.dcm"
        ds = FileDataset(str(name), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID, ds.SeriesInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID, uid
        ds.Modality, ds.SeriesDescription, ds.InstanceNumber = "CT", description, int(k) + 1
        ds.Rows, ds.Columns = hu.shape[:2]
        ds.PixelSpacing = [spacing[0], spacing[1]]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [origin[0], origin[1], origin[2] + k * step]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.PixelData = (hu[:, :, k] + 1024).astype(np.uint16).tobytes()
        ds.save_as(name, enforce_file_format=True)
    (folder / "README.txt").write_text("not DICOM: skipped")
    return folder


def hu_volume(shape=(24, 20, 5)) -> np.ndarray:
    hu = np.full(shape, -1000, np.int16)
    hu[4:-4, 4:-4] = np.random.default_rng(1).integers(-120, 80, (shape[0] - 8, shape[1] - 8, shape[2]))
    return hu


def test_a_series_reads_in_order_with_its_rescale_and_geometry(tmp_path: Path) -> None:
    hu = hu_volume()
    folder = write_series(tmp_path / "s", hu)
    assert is_dicom_folder(folder) and describe(folder)[0][1:] == ("AXIAL", 5)
    vol = read_dicom_series(folder)
    assert vol.raw.shape == (20, 24, 5) and vol.raw.dtype == np.uint16  # (columns, rows, slices)
    assert np.array_equal(vol.values, hu.transpose(1, 0, 2))
    assert vol.spacing == pytest.approx((0.8, 0.7, 2.5))
    # voxel (i, j, k) lies at LPS origin + i * 0.8 x + j * 0.7 y + k * 2.5 z; RAS flips x and y
    assert np.allclose(vol.affine @ [2, 3, 4, 1], [100 - 2 * 0.8, 120 - 3 * 0.7, 50 + 4 * 2.5, 1])


def series_with_mask(tmp_path: Path, k: int) -> tuple[np.ndarray, Path, Volume, np.ndarray]:
    """(Hounsfield units, the series folder, the series read back, a mask on slice k saved as mask.nii.gz)."""
    hu = hu_volume()
    folder = write_series(tmp_path / "s", hu)
    vol = read_dicom_series(folder)
    mask = np.zeros(vol.raw.shape, np.uint8)
    mask[6:12, 6:14, k] = 1
    nib.save(nib.Nifti1Image(mask, vol.affine), str(tmp_path / "mask.nii.gz"))
    return hu, folder, vol, mask


def test_dicom_in_nifti_out_keeps_the_geometry(tmp_path: Path, tiny_checkpoint: Path) -> None:
    _, folder, vol, mask = series_with_mask(tmp_path, 2)
    record = fill_nifti(Inpainter.from_pretrained(tiny_checkpoint, backend="torch"), folder, tmp_path / "mask.nii.gz",
                        tmp_path / "filled.nii.gz", modality="mri")
    out = nib.load(str(tmp_path / "filled.nii.gz"))
    assert np.allclose(out.affine, vol.affine) and out.header.get_zooms() == pytest.approx((0.8, 0.7, 2.5))
    values = out.get_fdata()
    assert np.array_equal(values[mask == 0], vol.values[mask == 0]) and record["slices_filled"] == 1


def test_series_problems_are_one_line_errors(tmp_path: Path) -> None:
    hu = hu_volume()
    with pytest.raises(InputError, match="uneven slice spacing"):
        read_dicom_series(write_series(tmp_path / "gap", hu, skip=2))
    both = write_series(tmp_path / "two", hu, description="AXIAL")
    write_series(both, hu[:, :, :3], description="SCOUT")
    with pytest.raises(InputError, match=r"2 series \(.*AXIAL.*UID.*SCOUT|2 series \(.*SCOUT.*UID.*AXIAL"):
        read_dicom_series(both)
    assert read_dicom_series(both, series="SCOUT").raw.shape[2] == 3
    with pytest.raises(InputError, match="no series described or identified as 'CORONAL'"):
        read_dicom_series(both, series="CORONAL")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="no DICOM images"):
        read_dicom_series(tmp_path / "empty")


def test_the_cli_fills_a_dicom_series_into_nifti(tmp_path: Path, tiny_checkpoint: Path) -> None:
    from typer.testing import CliRunner

    from medinpaint.cli import app

    folder = write_series(tmp_path / "s", hu_volume())
    write_series(folder, hu_volume()[:, :, :2], description="SCOUT")
    vol = read_dicom_series(folder, series="AXIAL")
    mask = np.zeros(vol.raw.shape, np.uint8)
    mask[5:9, 5:9, 1] = 1
    nib.save(nib.Nifti1Image(mask, vol.affine), str(tmp_path / "mask.nii.gz"))
    args = ["predict", "-i", folder, "--mask", tmp_path / "mask.nii.gz", "-o", tmp_path / "out.nii.gz",
            "--weights", tiny_checkpoint, "--modality", "mri", "--no-progress"]
    asks = CliRunner().invoke(app, [str(a) for a in args])
    assert asks.exit_code == 2 and "choose one with --series" in asks.output and not (tmp_path / "out.nii.gz").exists()
    done = CliRunner().invoke(app, [str(a) for a in [*args, "--series", "AXIAL"]])
    assert done.exit_code == 0, done.output
    assert np.allclose(nib.load(str(tmp_path / "out.nii.gz")).affine, vol.affine)


def test_dicom_out_is_a_new_derived_series_with_the_same_geometry(tmp_path: Path, tiny_checkpoint: Path) -> None:
    hu, folder, vol, mask = series_with_mask(tmp_path, 3)
    fill_nifti(Inpainter.from_pretrained(tiny_checkpoint, backend="torch"), folder, tmp_path / "mask.nii.gz",
               tmp_path / "out", modality="mri", dicom_out=True)
    back = read_dicom_series(tmp_path / "out")
    assert np.allclose(back.affine, vol.affine) and back.raw.shape == vol.raw.shape
    assert np.array_equal(back.values[mask == 0], vol.values[mask == 0])
    assert not np.array_equal(back.values[mask == 1], vol.values[mask == 1])
    first = pydicom.dcmread(sorted((tmp_path / "out").glob("*.dcm"))[0])
    assert first.SeriesInstanceUID != vol.dicom[0].SeriesInstanceUID and first.ImageType[0] == "DERIVED"
    assert first.SeriesDescription == "AXIAL (medinpaint fill)"
    nifti = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(hu.astype(np.int16), vol.affine), str(nifti))
    with pytest.raises(InputError, match="--dicom-out needs a DICOM series"):
        fill_nifti(Inpainter.from_pretrained(tiny_checkpoint, backend="torch"), nifti, tmp_path / "mask.nii.gz",
                   tmp_path / "out2", dicom_out=True)


def test_a_dicom_ct_series_is_taken_for_ct_from_its_header(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """No voxel below -100 HU (a crop inside the body), so the intensities alone would say MRI; the header says CT,
    and this checkpoint has no CT window to map Hounsfield units with."""
    hu = np.random.default_rng(2).integers(-50, 80, (16, 16, 3)).astype(np.int16)
    folder = write_series(tmp_path / "s", hu)
    vol = read_dicom_series(folder)
    mask = np.zeros(vol.raw.shape, np.uint8)
    mask[4:8, 4:8, 1] = 1
    nib.save(nib.Nifti1Image(mask, vol.affine), str(tmp_path / "mask.nii.gz"))
    inpainter = Inpainter.from_pretrained(tiny_checkpoint, backend="torch")
    with pytest.raises(InputError, match="records no intensity window"):
        fill_nifti(inpainter, folder, tmp_path / "mask.nii.gz", tmp_path / "out.nii.gz")
    record = fill_nifti(inpainter, folder, tmp_path / "mask.nii.gz", tmp_path / "out.nii.gz", modality="mri")
    assert record["intensity"]["kind"] == "percentiles"


@pytest.mark.parametrize(("spoil", "message"), [
    (lambda ds: delattr(ds, "ImagePositionPatient"), "no image geometry ('ImagePositionPatient')"),
    (lambda ds: setattr(ds, "PixelSpacing", [0.7]), "malformed image geometry"),
    (lambda ds: setattr(ds, "ImageOrientationPatient", [1, 0, 0]), "malformed image geometry"),
    (lambda ds: setattr(ds, "PixelData", ds.PixelData[:100]), "unreadable pixel data"),
], ids=["no-position", "one-spacing", "three-cosines", "short-pixels"])
def test_a_damaged_image_of_a_series_is_named(tmp_path: Path, spoil, message: str) -> None:
    import pydicom

    folder = write_series(tmp_path / "series", hu_volume(), shuffle=False)
    damaged = sorted(folder.glob("*.dcm"))[2]
    ds = pydicom.dcmread(damaged)
    spoil(ds)
    ds.save_as(damaged)
    with pytest.raises(InputError, match=re.escape(f"{damaged}: {message}")):
        read_dicom_series(folder)


def test_dicom_out_of_a_compressed_series_is_readable(tmp_path: Path, tiny_checkpoint: Path) -> None:
    from pydicom.uid import RLELossless

    _, folder, vol, mask = series_with_mask(tmp_path, 1)
    for f in folder.glob("*.dcm"):
        ds = pydicom.dcmread(f)
        ds.compress(RLELossless)
        ds.save_as(f)
    fill_nifti(Inpainter.from_pretrained(tiny_checkpoint, backend="torch"), folder, tmp_path / "mask.nii.gz",
               tmp_path / "out", modality="mri", dicom_out=True)
    back = read_dicom_series(tmp_path / "out")  # raw pixels under a compressed transfer syntax did not decode
    assert np.array_equal(back.values[mask == 0], vol.values[mask == 0])


def test_a_file_of_the_series_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    """A link to /proc/self/mem is a file that exists but fails to read (EIO), whoever runs the tests."""
    folder = write_series(tmp_path / "s", hu_volume())
    (folder / "broken").symlink_to("/proc/self/mem")
    with pytest.raises(InputError, match=re.escape(f"{folder / 'broken'}: unreadable (Input/output error)")):
        is_dicom_folder(folder)


def test_an_empty_rescale_is_the_identity_in_and_out(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """An empty RescaleSlope and RescaleIntercept (present, no value: pydicom reads None) mean slope 1, intercept 0,
    as absent ones do; an ImageType of one value keeps it whole in a --dicom-out series."""
    hu, folder, vol, mask = series_with_mask(tmp_path, 2)
    for f in folder.glob("*.dcm"):
        ds = pydicom.dcmread(f)
        ds.RescaleSlope, ds.RescaleIntercept, ds.ImageType = None, None, "ORIGINAL"
        ds.save_as(f)
    empty = read_dicom_series(folder)
    assert empty.slope == 1 and empty.inter == 0 and np.array_equal(empty.values, vol.raw)
    fill_nifti(Inpainter.from_pretrained(tiny_checkpoint, backend="torch"), folder, tmp_path / "mask.nii.gz",
               tmp_path / "out", modality="mri", dicom_out=True)
    back = read_dicom_series(tmp_path / "out")
    assert np.array_equal(back.values[mask == 0], vol.raw[mask == 0])
    first = pydicom.dcmread(sorted((tmp_path / "out").glob("*.dcm"))[0])
    assert list(first.ImageType) == ["DERIVED", "SECONDARY"]


def test_a_colour_or_multi_frame_image_in_a_series_is_named(tmp_path: Path) -> None:
    import pydicom

    folder = write_series(tmp_path / "series", hu_volume(), shuffle=False)
    colour = sorted(folder.glob("*.dcm"))[1]
    ds = pydicom.dcmread(colour)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = np.zeros((ds.Rows, ds.Columns, 3), np.uint8).tobytes()
    ds.save_as(colour)
    with pytest.raises(InputError, match=re.escape(f"{colour}: 3 samples per pixel and 1 frames; a series must hold one grey slice per file")):
        read_dicom_series(folder)


def test_a_folder_of_nifti_volumes_with_a_stray_dicom_file_is_not_a_series(tmp_path: Path) -> None:
    import nibabel as nib

    folder = write_series(tmp_path / "mixed", hu_volume())
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 2), np.int16), np.eye(4)), str(folder / "case.nii.gz"))
    assert not is_dicom_folder(folder) and is_dicom_folder(write_series(tmp_path / "pure", hu_volume()))
