"""Fill 3-D volumes slice by slice with an `Inpainter`, in the units and at the pixel size its training data had.

Going in, intensities are mapped to the network's [0, 1]: CT in Hounsfield units through the intensity window the
checkpoint records (DM-i-AI: -150..250 HU), anything else (MRI) by robust percentiles of the known voxels; slices
are resampled in plane to the checkpoint's pixel spacing when theirs differs by more than 5 %. Coming out, the
filled pixels are resampled back, mapped back to the scan's units, and written only where voxels were missing:
every known voxel is returned as it came. What was done is returned as a record (written beside a NIfTI output
as JSON), so a user can see it.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medinpaint.data.volumes import (AXIS_NAMES, case_names, case_volume, display_spacing, display_stack, is_nifti,
                                     nifti_stem, read_like, read_mask, read_nifti, write_nifti)
from medinpaint.data.readers import no_mask_without_image
from medinpaint.data.resample import resize_labels, resize_mask, resize_stack
from medinpaint.data.slices import check_tissue_levels
from medinpaint.errors import InputError, about
from medinpaint.outputs import atomic_file, check_output_path, check_replaceable

if TYPE_CHECKING:
    from medinpaint.inference import Inpainter

MODALITIES = ("auto", "ct", "mri")
SPACING_TOLERANCE = 0.05  # relative difference of pixel size below which slices are not resampled
CT_AIR_HU = -100.0  # known voxels whose 1st percentile lies below this are taken for CT in Hounsfield units


@dataclass
class IntensityMap:
    """Scan units <-> the network's [0, 1]: `low` maps to 0 and `high` to 1 (values outside are clamped going in)."""

    kind: str  # "ct-window" or "percentiles"
    low: float
    high: float

    def to_unit(self, values: np.ndarray) -> np.ndarray:
        """Scan units -> [0, 1] float32; a NaN voxel becomes 0 (shown as `low`). One temporary, not four."""
        unit = values - self.low
        unit /= self.high - self.low
        np.clip(unit, 0, 1, out=unit)
        unit = unit.astype(np.float32)
        unit[np.isnan(unit)] = 0.0
        return unit

    def from_unit(self, unit: np.ndarray) -> np.ndarray:
        return unit.astype(np.float64) * (self.high - self.low) + self.low


def choose_intensity(values: np.ndarray, known: np.ndarray, window: tuple[float, float] | None, modality: str) -> IntensityMap:
    """The checkpoint's CT window for CT (asked for, or `auto` and the known voxels reach below -100, as air and fat
    do in Hounsfield units), else the 0.5th and 99.5th percentiles of the known voxels."""
    if modality not in MODALITIES:
        raise InputError(f"--modality must be one of {', '.join(MODALITIES)}, got {modality!r}")
    usable = known_voxels(values, known)
    if modality == "ct" or (modality == "auto" and _first_percentile_below(values, usable, CT_AIR_HU)):
        if window is None:
            raise InputError("the checkpoint records no intensity window, so Hounsfield units cannot be mapped to it "
                             "(use a checkpoint trained on CT, or --modality mri to scale by percentiles)")
        return IntensityMap("ct-window", float(window[0]), float(window[1]))
    low, high = (float(v) for v in np.percentile(values[usable], [0.5, 99.5]))
    return IntensityMap("percentiles", low, high if high > low else low + 1.0)


def known_voxels(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """The known voxels that are numbers, the only ones an intensity mapping can be drawn from; an InputError when
    there are none."""
    usable = known & np.isfinite(values)
    if not usable.any():
        raise InputError("every voxel is masked (or not a number): nothing is known to fill from")
    return usable


def _first_percentile_below(values: np.ndarray, usable: np.ndarray, threshold: float) -> bool:
    """np.percentile(values[usable], 1) < threshold, decided by counting: the percentile lies between the sorted
    samples i and i + 1 (i = floor(0.01 (n - 1))), so it is below when more than i + 1 samples are and not below
    when at most i are; only in between is it computed."""
    n = int(np.count_nonzero(usable))
    below = int(np.count_nonzero(usable & (values < threshold)))
    i = int(0.01 * (n - 1))
    if below != i + 1:
        return below > i + 1
    return float(np.percentile(values[usable], 1)) < threshold


def fill_stack(inpainter: Inpainter, values: np.ndarray, missing: np.ndarray, spacing: tuple[float, float] | None = None,
               tissue: np.ndarray | None = None, modality: str = "auto", batch_size: int = 8,
               progress: bool = False) -> tuple[np.ndarray, dict]:
    """Fill (N, H, W) slices in scan units (float) where `missing`; (filled values, record of what was done).
    `tissue`: maps in the checkpoint's coding (DM-i-AI 0 / 100 / 255) on the same grid, or None."""
    meta = inpainter.metadata[0].preprocessing if inpainter.metadata else None
    mapping = choose_intensity(values, ~missing, meta.intensity_window if meta else None, modality)
    todo = np.flatnonzero(missing.reshape(len(missing), -1).any(1))
    record: dict = {"intensity": asdict(mapping), "slices": int(len(values)), "slices_filled": int(len(todo)),
                    "slice_shape": list(values.shape[1:]), "resampled_to": None,
                    "model_pixel_spacing_mm": meta.pixel_spacing_mm if meta else None,
                    "pixel_spacing_mm": list(spacing) if spacing else None}
    filled = values.astype(np.float64, copy=True)
    if len(todo) == 0:
        return filled, record
    unit, holes = mapping.to_unit(values[todo]), missing[todo]
    tis = None if tissue is None else tissue[todo]
    if tis is not None:
        check_tissue_levels(tis)  # before the cast, which would wrap 356 onto 100
        tis = tis.astype(np.uint8)
    target = record["model_pixel_spacing_mm"]
    shape = values.shape[1:]
    if spacing and target and any(abs(s / target - 1) > SPACING_TOLERANCE for s in spacing):
        shape = tuple(max(8, int(round(n * s / target))) for n, s in zip(values.shape[1:], spacing))
        record["resampled_to"] = list(shape)
        unit, holes = resize_stack(unit, shape), resize_mask(holes, shape)  # any overlap with a hole is missing
        tis = None if tis is None else resize_labels(tis, shape)
    out = inpainter.predict_batch(unit, holes, tis, None, batch_size=batch_size, progress=progress)
    if record["resampled_to"]:
        out = resize_stack(out.astype(np.float32), values.shape[1:])
    z, y, x = np.nonzero(missing[todo])  # only the missing voxels change
    filled[todo[z], y, x] = mapping.from_unit(out[z, y, x])
    return filled, record


def fill_nifti(inpainter: Inpainter, image: Path, mask: Path, output: Path, tissue: Path | None = None, axis: int = 2,
               modality: str = "auto", batch_size: int = 8, progress: bool = False, series: str | None = None,
               dicom_out: bool = False, overwrite: bool = False, recorded_output: Path | None = None) -> dict:
    """Fill the masked voxels of a NIfTI volume (or of a folder holding one DICOM series, or the one described as
    `series`) slice by slice along canonical `axis` (2: axial) and write `output` (NIfTI: the input's shape, affine,
    header and data type; with `dicom_out`, a folder with a new DICOM series of the input's geometry) and
    `<output>.json` (the record, which names `recorded_output` as the output when the file is written elsewhere
    first). A DICOM series whose Modality is CT is taken for CT under `modality="auto"`. The output and record are
    refused, before any work, when one is an input, or exists and `overwrite` is not given. Returns the record."""
    from medinpaint.data.dicom import read_dicom_series, write_dicom_series

    if axis not in AXIS_NAMES:
        raise InputError(f"--axis must be 0 (sagittal), 1 (coronal) or 2 (axial), got {axis}")
    output = Path(output)
    check_replaceable(output)
    if not dicom_out and not is_nifti(output):
        raise InputError(f"{output}: the output of a NIfTI volume must end in .nii.gz or .nii")
    for target, kind in ((output, "folder" if dicom_out else "file"), (record_path(output), "file")):
        check_output_path(target, [Path(p) for p in (image, mask, tissue) if p is not None], overwrite, kind=kind)
    if overwrite:
        check_record_ours(record_path(output))
    volume = read_dicom_series(image, series) if Path(image).is_dir() else read_nifti(image)
    if dicom_out and volume.dicom is None:
        raise InputError(f"{image}: --dicom-out needs a DICOM series as input, not a NIfTI volume")
    if modality == "auto" and volume.dicom is not None and str(volume.dicom[0].get("Modality", "")) == "CT":
        modality = "ct"  # the header says so: rescaled DICOM CT is in Hounsfield units
    missing = read_mask(mask, volume)
    if not missing.any():
        raise InputError(f"{mask}: the mask marks no missing voxels, so there is nothing to fill")
    tissue_map = None
    if tissue is not None:
        tissue_map = read_like(tissue, volume, "tissue map").values
        with about(tissue):
            check_tissue_levels(tissue_map)
    as_stack = lambda a: display_stack(a, volume.affine, axis)  # noqa: E731
    shown, shown_missing = as_stack(volume.values), as_stack(missing)
    with about(mask if missing.all() else image):  # all masked: the mask's doing; else no known voxel is a number
        known_voxels(shown, ~shown_missing)
    filled, record = fill_stack(
        inpainter, shown, shown_missing, display_spacing(volume, axis),
        None if tissue_map is None else as_stack(tissue_map), modality, batch_size, progress)
    result = volume.with_shown_values(filled, shown_missing, axis)
    if dicom_out:
        write_dicom_series(output, result, overwrite)
    else:
        write_nifti(output, result)
    ours = (str(image), str(mask), str(recorded_output or output), inpainter.name, inpainter.checksum)
    record = {**dict(zip(RECORD_KEYS, ours, strict=True)), "axis": f"{axis} ({AXIS_NAMES[axis]})", **record}
    with atomic_file(record_path(output)) as tmp:
        tmp.write_text(json.dumps(record, indent=1))
    return record


def record_path(output: Path) -> Path:
    """`filled.nii.gz` -> `filled.json`, the record written beside it; a --dicom-out folder `series.v1` ->
    `series.v1.json` (its whole name: `series.v2` beside it has a record of its own)."""
    return output.with_name((nifti_stem(output) if is_nifti(output) else output.name) + ".json")


RECORD_KEYS = ("input", "mask", "output", "model", "checksum")  # how check_record_ours knows a record fill_nifti wrote


def check_record_ours(path: Path) -> None:
    """`--overwrite` replaces the record beside a volume output only if it is one: a JSON file of the same name that
    medinpaint did not write (a user's notes, a sidecar of another tool) is refused by name, never replaced."""
    if not path.is_file():
        return
    try:
        found = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        found = None
    if not (isinstance(found, dict) and found.keys() >= set(RECORD_KEYS)):
        raise InputError(f"{path}: is not a record medinpaint wrote, and the record of this fill goes there; --overwrite "
                         "replaces only its own (move it, or choose another output)")


def volume_pairs(images: Path, masks: Path) -> list[tuple[Path, Path, str]]:
    """(image, mask, output name) of the volumes of two folders: each image's mask is the one of its own name, else of
    its case name, nnU-Net style (`case_0000.nii.gz` with `case.nii.gz`); outputs are named as `case_names` says."""
    found = sorted(p for p in images.iterdir() if is_nifti(p))
    if not found:
        raise InputError(f"{images}: no NIfTI volumes (.nii or .nii.gz) in the folder")
    if not masks.is_dir():
        raise InputError(f"{masks}: the masks of a folder of volumes must be a folder")
    names = case_names(found)
    counts = Counter(names.values())
    clash = [p for p in found if counts[names[p]] > 1]  # scan.nii beside scan.nii.gz
    if clash:
        raise InputError(f"{clash[0]}: {clash[1].name} has the same name; keep one of them")
    pairs = [(p, case_volume(masks, p, "mask"), names[p]) for p in found]
    no_mask_without_image((m for m in masks.iterdir() if is_nifti(m)), (m for _, m, _ in pairs), images)
    return pairs
