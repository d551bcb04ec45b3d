"""NIfTI volumes in and out with their geometry kept, and the view of a volume as a stack of display-oriented slices.

A volume is kept as it is stored (the unscaled voxels, the scaling slope and intercept, the affine and the header),
so that writing it back after a fill changes only the filled voxels: every other voxel is bit-identical, and the
shape, affine, header and data type are those of the input. The networks were trained on slices as a radiologist
sees them (anterior at the top, the patient's right on the left of an axial slice), so `display_stack` turns the
volume to the closest RAS orientation and each slice to that view; `from_display_stack` undoes both.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from medinpaint.errors import InputError
from medinpaint.outputs import atomic_file

NIFTI_SUFFIXES = (".nii.gz", ".nii")
# canonical (RAS) axes of each slicing direction: (stack, rows, columns); both in-plane axes are then reversed so
# that rows run anterior->posterior or superior->inferior and columns patient right->left
DISPLAY_AXES = {2: (2, 1, 0), 1: (1, 2, 0), 0: (0, 2, 1)}
AXIS_NAMES = {0: "sagittal", 1: "coronal", 2: "axial"}


def is_nifti(path: Path) -> bool:
    return path.name.endswith(NIFTI_SUFFIXES)


def nifti_stem(path: Path) -> str:
    """`scan_2024.nii.gz` -> `scan_2024`: the name without its NIfTI suffix."""
    return next((path.name[: -len(s)] for s in NIFTI_SUFFIXES if path.name.endswith(s)), path.stem)


def case_name(path: Path) -> str:
    """`case_0000.nii.gz` -> `case` (nnU-Net's channel suffix dropped), `scan.nii` -> `scan`."""
    name = nifti_stem(path)
    return name[:-5] if len(name) > 5 and name[-5] == "_" and name[-4:].isdigit() else name


def case_names(images: list[Path]) -> dict[Path, str]:
    """The name each image of a folder goes by in its outputs: its case name, unless another image has the same
    one (`pt_0001` and `pt_0002`, or two channels of one case), in which case each keeps its own stem, so that no
    output is written over another's."""
    cases = [case_name(p) for p in images]
    return {p: c if cases.count(c) == 1 else nifti_stem(p) for p, c in zip(images, cases)}


def channels_of_cases(images: list[Path]) -> dict[Path, str]:
    """The channel (`0001`) of each image that is one channel of a multi-channel case, nnU-Net style: the folder
    holds at least two cases and each has the same channels 0000..000k (k >= 1), `a_0000`, `a_0001`, `b_0000`,
    `b_0001`. Any other folder ({} here) is one volume per patient: `pt_0001`, `pt_0002` or `pt_0000..pt_0099`
    are patients numbered, not channels of `pt`."""
    if any(case_name(p) == nifti_stem(p) for p in images):
        return {}  # a volume with no channel suffix
    channel = {p: nifti_stem(p)[-4:] for p in images}
    per_case: dict[str, set[str]] = {}
    for p in images:
        per_case.setdefault(case_name(p), set()).add(channel[p])
    sets = list(per_case.values())
    wanted = {f"{k:04d}" for k in range(len(sets[0]))} if sets else set()
    return channel if len(sets) >= 2 and len(wanted) >= 2 and all(c == wanted for c in sets) else {}


def case_volume(folder: Path, image: Path, what: str) -> Path:
    """The `what` (mask, tissue map, ...) of `image` in `folder`: the volume of the image's own name, else of its case
    name (nnU-Net style: `case.nii.gz` for `case_0000.nii.gz`); a one-line InputError if there is neither."""
    for name in dict.fromkeys((nifti_stem(image), case_name(image))):
        for suffix in NIFTI_SUFFIXES:
            if (folder / f"{name}{suffix}").is_file():
                return folder / f"{name}{suffix}"
    raise InputError(f"{folder}: no {what} named {case_name(image)}.nii.gz (or .nii) for {image.name}")


@dataclass
class Volume:
    raw: np.ndarray  # the voxels as stored, unscaled, 3-D
    slope: float  # stored -> physical units (Hounsfield units for CT): raw * slope + inter
    inter: float
    affine: np.ndarray
    header: object  # the nibabel header, written back as it came
    path: Path | None = None
    dicom: list | None = None  # a DICOM series' datasets in slice order (for --dicom-out), None for NIfTI

    @property
    def values(self) -> np.ndarray:
        """The voxels in physical units, float64."""
        return self.raw.astype(np.float64) * self.slope + self.inter

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size along the three array axes, in mm."""
        return tuple(float(z) for z in self.header.get_zooms()[:3])

    def with_values(self, values: np.ndarray, where: np.ndarray) -> Volume:
        """A copy whose voxels `where` hold `values` (physical units) in the stored type; the rest untouched."""
        raw = self.raw.copy()
        raw[where] = self._stored(values[where])
        return replace(self, raw=raw)

    def with_shown_values(self, stack: np.ndarray, where: np.ndarray, axis: int) -> Volume:
        """`with_values` for a display stack along `axis` (`display_stack`'s layout) and its mask: the voxels are
        set in that layout and in the stored type, so no float64 copy of the whole volume is turned back."""
        raw = display_stack(self.raw, self.affine, axis)
        raw[where] = self._stored(stack[where])
        return replace(self, raw=from_display_stack(raw, self.affine, axis))

    def _stored(self, values: np.ndarray) -> np.ndarray:
        """Physical values -> the stored type (rounded and clipped to its range for an integer type)."""
        stored = (values - self.inter) / self.slope
        if np.issubdtype(self.raw.dtype, np.integer):
            info = np.iinfo(self.raw.dtype)
            stored = np.clip(np.rint(stored), info.min, info.max)
        return stored.astype(self.raw.dtype)


def read_nifti(path: Path) -> Volume:
    """A 3-D NIfTI volume (one stored as (X, Y, Z, 1), as many tools write them, reads as 3-D and is written back in
    its own shape); a one-line InputError for a missing, unreadable or truly 4-D file."""
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        image = nib.load(str(path))
        raw = np.asanyarray(image.dataobj.get_unscaled())
    except Exception as exc:  # nibabel raises many types for a damaged or foreign file
        raise InputError(f"{path}: not a readable NIfTI volume ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") from None
    if raw.ndim > 3 and all(n == 1 for n in raw.shape[3:]):
        raw = raw.reshape(raw.shape[:3])
    if raw.ndim != 3:
        raise InputError(f"{path}: a {raw.ndim}-D image of shape {raw.shape}; medinpaint reads 3-D volumes only")
    slope, inter = (float(v) if v is not None and np.isfinite(v) else d for v, d in ((image.dataobj.slope, 1.0), (image.dataobj.inter, 0.0)))
    return Volume(raw, slope or 1.0, inter, np.asarray(image.affine), image.header.copy(), path)


def read_like(path: Path, reference: Volume, what: str) -> Volume:
    """A volume that must share `reference`'s grid (a mask, a tissue map): same shape and affine, or an InputError."""
    volume = read_nifti(path)
    if volume.raw.shape != reference.raw.shape:
        raise InputError(f"{path}: {what} of shape {volume.raw.shape}, but the image {reference.path} is {reference.raw.shape}")
    if not np.allclose(volume.affine, reference.affine, atol=1e-3):
        raise InputError(f"{path}: the {what}'s affine differs from that of the image {reference.path} (another grid)")
    return volume


def read_mask(path: Path, reference: Volume) -> np.ndarray:
    """A binary mask volume (0/1, or 0 and one other value) on the image's grid -> bool, True = missing. The check
    runs on the stored voxels (their distinct values, scaled), not on a float64 copy of the volume."""
    volume = read_like(path, reference, "mask")
    raw = volume.raw
    low, high = raw.min(), raw.max()
    if raw.dtype.kind in "iub" and not ((raw != low) & (raw != high)).any():
        stored = np.unique([low, high])  # at most two values: no sort of the whole volume
    else:
        stored = np.unique(raw)
    values = stored.astype(np.float64) * volume.slope + volume.inter
    if len(values) > 2 or (len(values) == 2 and values[0] != 0) or (len(values) == 1 and values[0] not in (0, 1)):
        shown = ", ".join(f"{v:g}" for v in values[:5]) + (", ..." if len(values) > 5 else "")
        raise InputError(f"{path}: a mask must be binary (0 and one other value), found {shown}")
    return raw == stored[values > 0][0] if (values > 0).any() else np.zeros(raw.shape, bool)


def write_nifti(path: Path, volume: Volume) -> Path:
    """Write `volume` with its own header, affine, data type and scaling, atomically: NIfTI-2 if it was read from
    NIfTI-2 (its header says), else NIfTI-1."""
    import nibabel as nib

    on_disk = tuple(volume.header.get_data_shape())  # (X, Y, Z, 1) for a volume read from such a file
    raw = volume.raw.reshape(on_disk) if on_disk[:3] == volume.raw.shape and len(on_disk) > 3 else volume.raw
    kind = nib.Nifti2Image if isinstance(volume.header, nib.Nifti2Header) else nib.Nifti1Image  # Nifti2Header is a Nifti1Header
    image = kind(raw, volume.affine, volume.header.copy())
    image.header.set_data_dtype(raw.dtype)
    image.header.set_slope_inter(volume.slope, volume.inter)  # given, not recomputed: the stored voxels stay as they are
    if not is_nifti(path):
        raise InputError(f"{path}: a NIfTI output must end in .nii.gz or .nii")
    with atomic_file(path, suffix=next(s for s in NIFTI_SUFFIXES if path.name.endswith(s))) as tmp:
        nib.save(image, str(tmp))
    return path


def canonical_transform(affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(to RAS, back) orientation transforms of nibabel for a volume with this affine."""
    from nibabel.orientations import axcodes2ornt, io_orientation, ornt_transform

    own = io_orientation(affine)
    ras = axcodes2ornt("RAS")
    return ornt_transform(own, ras), ornt_transform(ras, own)


def display_stack(array: np.ndarray, affine: np.ndarray, axis: int) -> np.ndarray:
    """(N, H, W) slices along canonical `axis` (0 sagittal, 1 coronal, 2 axial), each in the radiological view."""
    from nibabel.orientations import apply_orientation

    to_ras, _ = canonical_transform(affine)
    ras = apply_orientation(array, to_ras)
    return np.ascontiguousarray(ras.transpose(DISPLAY_AXES[axis])[:, ::-1, ::-1])


def from_display_stack(stack: np.ndarray, affine: np.ndarray, axis: int) -> np.ndarray:
    """The inverse of `display_stack`: back to the volume's own array layout."""
    from nibabel.orientations import apply_orientation

    _, back = canonical_transform(affine)
    ras = stack[:, ::-1, ::-1].transpose(np.argsort(DISPLAY_AXES[axis]))
    return np.ascontiguousarray(apply_orientation(ras, back))


def display_spacing(volume: Volume, axis: int) -> tuple[float, float]:
    """(row, column) pixel spacing in mm of the display slices along canonical `axis`."""
    to_ras, _ = canonical_transform(volume.affine)
    zooms = np.asarray(volume.spacing)
    ras_zooms = np.empty(3)
    for own_axis, (ras_axis, _) in enumerate(to_ras):
        ras_zooms[int(ras_axis)] = zooms[own_axis]
    _, rows, cols = DISPLAY_AXES[axis]
    return float(ras_zooms[rows]), float(ras_zooms[cols])
