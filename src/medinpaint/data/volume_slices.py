"""NIfTI volumes as training slices: `medinpaint pack` and `train` read a folder of volumes like any other layout.

The folder holds the volumes themselves, or `images/` with optional `masks/` and `labels/` matched by case name
(nnU-Net style: `images/case_0000.nii.gz` with `masks/case.nii.gz`). Every volume is cut into axial slices in the
radiological view, mapped to 0..255 the way `predict` maps a volume (CT through the DM-i-AI window of -150..250 HU,
MRI by robust percentiles), resampled to the DM-i-AI pixel size of 2 mm and padded or cropped to 256x256, so that
a model trained on them records, and later expects, what the shipped model does. Slice ids are `case:zNNNN`
(`case:cCCCC:zNNNN` for channel CCCC of a multi-channel nnU-Net case), so the validation split takes whole cases,
never slices of one volume, nor two channels of one case, on both sides.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from medinpaint.constants import DMIAI_PIXEL_SPACING_MM, DMIAI_WINDOW_HU
from medinpaint.data.resample import resize_labels, resize_mask, resize_stack
from medinpaint.data.slices import SliceSet, to_uint8
from medinpaint.data.volumes import case_name, case_names, case_volume, channels_of_cases, display_spacing, display_stack, is_nifti, read_like, read_mask, read_nifti
from medinpaint.errors import InputError

SLICE_SIZE = 256
VOLUME_LAYOUT = "nifti"


def whole_labels(values: np.ndarray, path: Path) -> np.ndarray:
    """A NIfTI label map -> uint8. Stored as floats often, but each value a class 0..255: a fraction, a negative
    or a label above 255 is refused, not clipped or truncated into another class."""
    finite = np.isfinite(values).all()
    if values.size and not (finite and np.array_equal(values, np.round(values)) and values.min() >= 0 and values.max() <= 255):
        found = f"{values.min():g}..{values.max():g}" if finite else "NaN or infinite values"
        raise InputError(f"{path}: label maps must hold whole numbers 0..255 (one per class), found {found}")
    return values.astype(np.uint8)


def volume_folder(path: Path) -> Path:
    """The folder of a volume folder's images: its `images/`, if it has one, else the folder itself."""
    return path / "images" if (path / "images").is_dir() else path


def is_volume_folder(path: Path) -> bool:
    """A folder of NIfTI volumes, or one with `images/` holding them."""
    return path.is_dir() and any(is_nifti(p) for p in volume_folder(path).iterdir())


def _fit(stack: np.ndarray, spacing: tuple[float, float], resize: Callable[[np.ndarray, tuple[int, int]], np.ndarray],
         fill: float) -> np.ndarray:
    """(N, H, W) slices resampled (by `resample`'s rule for their kind) to DMIAI_PIXEL_SPACING_MM and centred in
    SLICE_SIZE x SLICE_SIZE."""
    h, w = (max(1, int(round(n * s / DMIAI_PIXEL_SPACING_MM))) for n, s in zip(stack.shape[1:], spacing))
    if (h, w) != stack.shape[1:]:
        stack = resize(stack, (h, w))
    out = np.full((len(stack), SLICE_SIZE, SLICE_SIZE), fill, dtype=stack.dtype)
    sy, sx = max(0, (h - SLICE_SIZE) // 2), max(0, (w - SLICE_SIZE) // 2)  # crop start in the source
    dy, dx = max(0, (SLICE_SIZE - h) // 2), max(0, (SLICE_SIZE - w) // 2)  # paste start in the output
    ch, cw = min(h, SLICE_SIZE), min(w, SLICE_SIZE)
    out[:, dy : dy + ch, dx : dx + cw] = stack[:, sy : sy + ch, sx : sx + cw]
    return out


def read_volume_slices(path: Path) -> SliceSet:
    """Every axial slice of every volume under `path`, with masks and labels where their folders have them."""
    from medinpaint.volume_inference import choose_intensity

    folder = volume_folder(path)
    volumes = sorted(p for p in folder.iterdir() if is_nifti(p))
    if not volumes:
        raise InputError(f"{folder}: no NIfTI volumes")
    parts: dict[str, list[np.ndarray]] = {"images": [], "masks": [], "labels": []}
    ids: list[str] = []
    kinds = set()
    names, channels = case_names(volumes), channels_of_cases(volumes)
    for image_path in volumes:
        case = names[image_path]
        volume = read_nifti(image_path)
        spacing = display_spacing(volume, 2)
        values = display_stack(volume.values, volume.affine, 2)
        mapping = choose_intensity(values, np.ones(values.shape, bool), DMIAI_WINDOW_HU, "auto")
        kinds.add(mapping.kind)
        parts["images"].append(_fit(to_uint8(mapping.to_unit(values)), spacing, resize_stack, 0))
        for kind, reader in (("masks", read_mask), ("labels", None)):
            if not (path / kind).is_dir():
                continue
            found = case_volume(path / kind, image_path, kind[:-1])
            grid = reader(found, volume) if reader else read_like(found, volume, "label map").values
            stack = display_stack(grid, volume.affine, 2)
            if kind == "masks":
                fitted = _fit(stack.astype(bool), spacing, resize_mask, False)
            else:
                fitted = _fit(whole_labels(stack, found), spacing, resize_labels, 0)
            parts[kind].append(fitted)
        source = f"{case_name(image_path)}:c{channels[image_path]}" if image_path in channels else case
        ids += [f"{source}:z{k:04d}" for k in range(len(values))]
    if len(kinds) > 1:
        raise InputError(f"{path}: some volumes look like CT in Hounsfield units and some do not; train on one kind")
    arrays = {k: np.concatenate(v) if v else None for k, v in parts.items()}
    extras = {"intensity": kinds.pop(), "pixel_spacing_mm": str(DMIAI_PIXEL_SPACING_MM)}
    return SliceSet(ids=ids, images=arrays["images"], masks=arrays["masks"], labels=arrays["labels"],
                    layout=VOLUME_LAYOUT, extras=extras)
