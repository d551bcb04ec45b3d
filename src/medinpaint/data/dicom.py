"""A DICOM series in as a `Volume`: slices ordered by position along the slice normal, the rescale applied, the
geometry turned into a NIfTI affine (DICOM's patient coordinates are LPS, NIfTI's RAS), so the NIfTI path fills it.

Only what a slice-wise inpainter needs is checked, but checked loudly: one series (or the one asked for), one
orientation and size, and evenly spaced slices (a gap means a missing slice).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from medinpaint.data.files import reading
from medinpaint.data.volumes import Volume, is_nifti
from medinpaint.errors import InputError

SPACING_TOLERANCE_MM = 0.01  # slice gaps that differ by more than this (and by more than 1 %) are uneven


def _read_headers(folder: Path) -> dict[str, list]:
    """Every DICOM image in `folder` (any file name), grouped by series instance UID."""
    import pydicom

    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder of DICOM files")
    series: dict[str, list] = defaultdict(list)
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            ds = pydicom.dcmread(path)
        except Exception:  # not DICOM (a README, a thumbnail): skipped, as viewers do
            continue
        if "PixelData" in ds:
            series[str(ds.get("SeriesInstanceUID", ""))].append((path, ds))
    if not series:
        raise InputError(f"{folder}: no DICOM images in the folder")
    return series


def describe(folder: Path) -> list[tuple[str, str, int]]:
    """(series UID, description, number of images) of each series in `folder`."""
    return [(uid, str(items[0][1].get("SeriesDescription", "")), len(items)) for uid, items in _read_headers(folder).items()]


def _geometry(path: Path, ds) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(orientation: 6 direction cosines, position: 3 mm, pixel spacing: row and column mm) of one image, or a
    one-line error naming it when a tag is missing or malformed."""
    try:
        values = [np.asarray(getattr(ds, tag), dtype=float).reshape(-1)
                  for tag in ("ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing")]
    except AttributeError as exc:
        raise InputError(f"{path}: no image geometry ({exc.args[0].split()[-1]})") from None
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: unreadable image geometry ({exc})") from None
    if [v.size for v in values] != [6, 3, 2]:
        raise InputError(f"{path}: malformed image geometry (ImageOrientationPatient, ImagePositionPatient and PixelSpacing "
                         f"hold {', '.join(str(v.size) for v in values)} values, not 6, 3 and 2)")
    return values[0], values[1], values[2]


def _rescale(ds) -> tuple[float, float]:
    """(RescaleSlope, RescaleIntercept) of one image; a tag absent, or present with no value (pydicom reads None),
    is the identity's 1 or 0, as viewers take it."""
    slope, inter = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    return 1.0 if slope in (None, "") else float(slope), 0.0 if inter in (None, "") else float(inter)


def _values(ds, tag: str) -> list[str]:
    """A multi-valued tag as a list: pydicom gives a tag of one value as that value, so `list()` would split its
    letters."""
    value = ds.get(tag)
    return [] if value in (None, "") else [str(value)] if isinstance(value, str) else [str(v) for v in value]


def _pixels(path: Path, ds) -> np.ndarray:
    """One slice's grey values, (rows, columns): a colour image or a multi-frame file is refused by name."""
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # pydicom raises many kinds: short data, a compression with no decoder installed
        raise InputError(f"{path}: unreadable pixel data ({type(exc).__name__}: {exc})") from None
    if pixels.ndim != 2:
        raise InputError(f"{path}: {int(ds.get('SamplesPerPixel', 1))} samples per pixel and {int(ds.get('NumberOfFrames', 1) or 1)} "
                         f"frames; a series must hold one grey slice per file")
    return pixels


def read_dicom_series(folder: Path, series: str | None = None) -> Volume:
    """The one series of `folder`, or the one whose description or UID is `series`, as a Volume in RAS."""
    import nibabel as nib

    groups = _read_headers(Path(folder))
    if series is not None:
        groups = {uid: items for uid, items in groups.items()
                  if series in (uid, str(items[0][1].get("SeriesDescription", "")))}
        if not groups:
            raise InputError(f"{folder}: no series described or identified as {series!r} (see --series)")
    if len(groups) > 1:
        listed = "; ".join(f"{str(items[0][1].get('SeriesDescription', '')) or '(no description)'} ({len(items)} images, "
                           f"UID {uid})" for uid, items in groups.items())
        raise InputError(f"{folder}: {len(groups)} series ({listed}); choose one with --series DESCRIPTION or UID")
    (items,) = groups.values()
    first = items[0][1]
    geometry = [_geometry(path, ds) for path, ds in items]
    orientation, _, (row_spacing, col_spacing) = geometry[0]
    row_dir, col_dir = orientation[:3], orientation[3:]
    normal = np.cross(row_dir, col_dir)
    for (path, ds), (own_orientation, _, _) in zip(items, geometry):
        if not np.allclose(own_orientation, orientation, atol=1e-4):
            raise InputError(f"{path}: its orientation differs from the rest of the series")
        if (ds.Rows, ds.Columns) != (first.Rows, first.Columns):
            raise InputError(f"{path}: {ds.Rows}x{ds.Columns} pixels, the series' first image {first.Rows}x{first.Columns}")
    positions = np.array([position for _, position, _ in geometry])
    order = np.argsort(positions @ normal)
    items, positions = [items[i] for i in order], positions[order]
    gaps = np.diff(positions @ normal)
    if len(gaps) and (gaps.min() <= 0 or gaps.max() - gaps.min() > max(SPACING_TOLERANCE_MM, 0.01 * gaps.mean())):
        worst = int(np.argmax(np.abs(gaps - np.median(gaps)))) if gaps.min() > 0 else int(np.argmin(gaps))
        raise InputError(f"{folder}: uneven slice spacing ({gaps.min():.3g} to {gaps.max():.3g} mm; a missing or repeated "
                         f"slice near {items[worst][0].name})")
    scale = np.array([_rescale(ds) for _, ds in items])  # (slices, 2): slope, intercept
    pixels = np.stack([_pixels(path, ds) for path, ds in items], axis=-1)  # (rows, cols, slices)
    if (scale == scale[0]).all():
        raw, slope, inter = pixels, float(scale[0, 0]), float(scale[0, 1])
    else:  # a rescale per slice: store Hounsfield units as floats
        raw, slope, inter = (pixels * scale[:, 0] + scale[:, 1]).astype(np.float32), 1.0, 0.0
    raw = np.ascontiguousarray(raw.transpose(1, 0, 2))  # (columns, rows, slices): i along the row direction
    step = gaps.mean() if len(gaps) else float(first.get("SliceThickness", 1.0) or 1.0)
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = row_dir * col_spacing, col_dir * row_spacing, normal * step, positions[0]
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    header = nib.Nifti1Header()
    header.set_data_shape(raw.shape)
    header.set_data_dtype(raw.dtype)
    header.set_zooms((col_spacing, row_spacing, float(step)))
    header.set_xyzt_units("mm")
    return Volume(raw, slope, inter, affine, header, Path(folder), [ds for _, ds in items])


def write_dicom_series(folder: Path, volume: Volume, overwrite: bool = False, note: str = "medinpaint fill") -> Path:
    """`volume` (read from a DICOM series and filled) as a new series: the source's headers and geometry, a new series
    UID and instance UIDs, flagged DERIVED with `note` in its description, pixels uncompressed (explicit VR little
    endian, whatever the source's transfer syntax); written atomically into `folder`."""
    import copy

    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from medinpaint.outputs import atomic_dir

    if volume.dicom is None:
        raise InputError("--dicom-out needs a DICOM series as input")
    series_uid = generate_uid()
    with atomic_dir(folder, overwrite=overwrite) as tmp:
        for k, source in enumerate(volume.dicom):
            ds = copy.deepcopy(source)
            hu = volume.raw[:, :, k].T.astype(np.float64) * volume.slope + volume.inter  # (rows, columns)
            slope, inter = _rescale(ds)
            stored_type = np.dtype(source.pixel_array.dtype)
            info = np.iinfo(stored_type)
            ds.PixelData = np.clip(np.rint((hu - inter) / slope), info.min, info.max).astype(stored_type.newbyteorder("<")).tobytes()
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian  # the pixels are written raw, whatever the source's encoding
            ds.SeriesInstanceUID = series_uid
            ds.SOPInstanceUID = generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.ImageType = ["DERIVED", "SECONDARY", *_values(ds, "ImageType")[2:]]
            ds.SeriesDescription = f"{ds.get('SeriesDescription', '')} ({note})".strip()
            ds.DerivationDescription = note
            ds.save_as(tmp / f"{k:04d}.dcm", enforce_file_format=True)
    return folder


def is_dicom_folder(path: Path) -> bool:
    """A folder with at least one file that starts like DICOM (the 'DICM' mark at byte 128) and no NIfTI volume."""
    if not path.is_dir() or any(is_nifti(p) for p in path.iterdir()):
        return False
    for p in path.iterdir():
        if p.is_file():
            with reading(p), open(p, "rb") as f:
                head = f.read(132)
            if head[128:132] == b"DICM":
                return True
    return False
