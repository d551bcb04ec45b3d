"""Read any supported dataset layout into a SliceSet.

Layouts (detected from what is on disk):
- DM-i-AI folder: `corrupted/ mask/ ct/ tissue/ vertebrae/` with files `<kind>_<PPP>_<k>.png|txt`; every
  sub-folder but one of `corrupted/` or `ct/` is optional (a folder with `ct/` only is a clean training set).
- `.npy` stack: a file `(N,H,W)` or `(N,1,H,W)` of uint8 or float in [0,1] (clean slices), or a folder holding
  `images.npy` and optionally `masks.npy`, `truth.npy`, `tissue.npy`, `vertebrae.npy`, `labels.npy`.
- PNG pairs: a folder with `images/NAME.png` and optionally `masks/NAME.png`, `truth/NAME.png`, `labels/NAME.png`.
`labels` are segmentation label maps (integers 0..255, one value per class) for `medinpaint segment`.
- NIfTI volumes: a folder of them, or `images/` with optional `masks/` and `labels/` (see `volume_slices`).
- A packed cache written by `medinpaint pack` (see `medinpaint.data.cache`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from medinpaint.data import cache
from medinpaint.data.files import reading
from medinpaint.data.png import read_gray_png
from medinpaint.constants import MASK_LEVELS, MAX_VERTEBRA, TISSUE_LEVELS, VERTEBRA_LEVELS
from medinpaint.data.slices import SliceSet, in_levels
from medinpaint.data.volume_slices import is_volume_folder, read_volume_slices
from medinpaint.data.volumes import is_nifti
from medinpaint.errors import InputError

DMIAI_KINDS = ("corrupted", "mask", "ct", "tissue")
NPY_PARTS = ("images", "masks", "truth", "tissue", "vertebrae", "labels")
VERTEBRAE = tuple(range(VERTEBRA_LEVELS))  # the levels a vertebra file may hold


def detect_layout(path: Path) -> str:
    """'cache', 'dmiai', 'npy' or 'png'; an InputError says why a path is none of them."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix == ".npy":
            return "npy"
        if is_nifti(path):
            hint = "; put this volume in a folder of its own, which is read as a folder of volumes"
        elif path.suffix.lower() == ".dcm":
            hint = "; `medinpaint predict -i SERIES_FOLDER` fills a DICOM series, read from the folder of its files"
        else:
            hint = ""
        raise InputError(f"{path}: not a dataset (a dataset is a folder, a .npy stack, or a folder of NIfTI volumes{hint})")
    if cache.is_cache(path):
        return "cache"
    if (path / "corrupted").is_dir() or (path / "ct").is_dir():
        return "dmiai"
    if (path / "images.npy").is_file():
        return "npy"
    if is_volume_folder(path):
        return "nifti"
    if (path / "images").is_dir():
        return "png"
    raise InputError(
        f"{path}: not a dataset (expected DM-i-AI sub-folders corrupted/ or ct/, images.npy, images/, or NIfTI volumes)"
    )


def read_slices(path: Path, require_masks: bool = False, workers: int = 8, require_truth: bool = False) -> SliceSet:
    """Read the dataset at `path`. With `require_masks`, a set without masks (nothing to fill) is an error; with
    `require_truth`, one without the clean slices to score against."""
    path = Path(path)
    layout = detect_layout(path)
    if layout == "cache":
        slices = cache.load(path)
    elif layout == "npy":
        slices = _read_npy(path)
    elif layout == "nifti":
        slices = read_volume_slices(path)
    else:
        slices = {"dmiai": _read_dmiai, "png": _read_png_pairs}[layout](path, workers)
    if len(slices) == 0:
        raise InputError(f"{path}: the dataset is empty")
    slices.source = str(path)
    if require_masks:
        if slices.masks is None:
            raise InputError(f"{path}: no masks found (nothing to fill)")
        empty = np.flatnonzero(~slices.masks.reshape(len(slices), -1).any(axis=1))
        if len(empty):
            raise InputError(f"{path}: mask of case {slices.ids[empty[0]]} has no missing pixels")
    if require_truth and slices.truth is None:
        raise InputError(f"{path}: no ground truth to score against (the clean slices: ct/, truth.npy or truth/)")
    return slices


def _png_files(folder: Path, prefix: str) -> dict[str, Path]:
    """Map case id -> file for `prefix_<id>.png` files; any other file is an error naming it."""
    files: dict[str, Path] = {}
    for f in sorted(folder.iterdir()):
        if f.name.startswith("."):
            continue
        if f.suffix.lower() != ".png" or f.is_dir():
            raise InputError(f"{f}: not a PNG file" + (" (a folder)" if f.is_dir() else ""))
        stem = f.stem
        case = stem[len(prefix) + 1 :] if stem.startswith(prefix + "_") else stem
        if case in files:
            raise InputError(f"{f}: the same case {case!r} as {files[case].name}: which one is meant?")
        files[case] = f
    return files


def _stack(files: list[Path], workers: int, shape: tuple[int, int] | None) -> np.ndarray:
    """The PNGs as one (N,H,W) stack, all of `shape` or else of the most common size, so the odd file is named."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        arrays = list(pool.map(read_gray_png, files))
    ref = shape or Counter(a.shape for a in arrays).most_common(1)[0][0]
    for f, a in zip(files, arrays):
        if a.shape != ref:
            raise InputError(f"{f}: size {a.shape[1]}x{a.shape[0]} differs from {ref[1]}x{ref[0]}")
    return np.stack(arrays)


def _check_levels(stack: np.ndarray, levels: tuple[int, ...], where: Path | list[Path], rule: str) -> None:
    """Refuse values outside `levels`, naming the first offending file: `where` is one file per slice (PNGs) or
    one .npy file for the whole stack, then named with the slice."""
    bad = ~in_levels(stack, levels)
    if bad.any():
        i = int(np.flatnonzero(bad.reshape(len(stack), -1).any(axis=1))[0])
        name = where[i] if isinstance(where, list) else f"{where} (slice {i})"
        raise InputError(f"{name}: {rule}, found {np.unique(stack[i][bad[i]])[:5].tolist()}")


def _as_mask(stack: np.ndarray, where: Path | list[Path]) -> np.ndarray:
    """Masks are 0/255 PNGs (or 0/1, or boolean arrays); True marks a missing pixel."""
    _check_levels(stack, MASK_LEVELS, where, "mask values must be 0 and 255 (or 0 and 1, or boolean)")
    return stack > 0


def _check_tissue(stack: np.ndarray, where: Path | list[Path]) -> None:
    _check_levels(stack, TISSUE_LEVELS, where, f"tissue values must be {TISSUE_LEVELS}")


def _check_vertebrae(values: np.ndarray, where: Path | list[Path]) -> None:
    _check_levels(values, VERTEBRAE, where, f"expected one integer 0..{MAX_VERTEBRA}")


def no_mask_without_image(masks: Iterable[Path], used: Iterable[Path], images: Path) -> None:
    """A mask that no image uses would be dropped silently, so the slice it was meant for would never be filled."""
    extra = sorted(set(masks) - set(used))
    if extra:
        raise InputError(f"{extra[0]}: a mask with no image in {images}")


def _read_dmiai(path: Path, workers: int) -> SliceSet:
    present = {k: _png_files(path / k, k) for k in DMIAI_KINDS if (path / k).is_dir()}
    main = "corrupted" if "corrupted" in present else "ct"
    ids = sorted(present[main])
    if not ids:
        raise InputError(f"{path / main}: the folder is empty")
    arrays: dict[str, np.ndarray] = {}
    shape = None
    for kind in (main, *[k for k in present if k != main]):
        missing = [i for i in ids if i not in present[kind]]
        if missing:
            raise InputError(f"{path / kind}: no file for case {missing[0]}")
        files = [present[kind][i] for i in ids]
        arrays[kind] = _stack(files, workers, shape)
        shape = arrays[kind].shape[1:]
        if kind == "mask":
            no_mask_without_image(present[kind].values(), files, path / main)
            arrays[kind] = _as_mask(arrays[kind], files)
        if kind == "tissue":
            _check_tissue(arrays[kind], files)
    if main == "corrupted" and "mask" not in arrays:
        raise InputError(f"{path}: corrupted/ needs a mask/ folder beside it")
    vertebrae = _read_vertebrae(path / "vertebrae", ids) if (path / "vertebrae").is_dir() else None
    return SliceSet(
        ids=ids,
        images=arrays[main],
        masks=arrays.get("mask"),
        truth=arrays.get("ct") if main == "corrupted" else None,
        tissue=arrays.get("tissue"),
        vertebrae=vertebrae,
        layout="dmiai",
    )


_INT = re.compile(r"^\s*-?\d+\s*$")


def _read_vertebrae(folder: Path, ids: list[str]) -> np.ndarray:
    files = [folder / f"vertebrae_{i}.txt" for i in ids]
    values = []
    for i, f in zip(ids, files):
        if not f.is_file():
            raise InputError(f"{f}: missing vertebra file for case {i}")
        try:
            with reading(f):
                text = f.read_text()
        except UnicodeDecodeError:
            raise InputError(f"{f}: not a text file (expected one integer 0..{MAX_VERTEBRA})") from None
        if not _INT.match(text):
            raise InputError(f"{f}: expected one integer 0..{MAX_VERTEBRA}, found {text[:20]!r}")
        values.append(int(text))
    _check_vertebrae(np.array(values), files)
    return np.array(values, dtype=np.int16)


_NPY_MAGIC = b"\x93NUMPY"


def load_npy(path: Path) -> np.ndarray:
    """One array from a .npy file, or a one-line error naming the file: not NumPy's format (an .npz archive holds
    several arrays and gets a hint), Python objects (never unpickled), or a truncated file."""
    try:
        with open(path, "rb") as f:
            magic = f.read(len(_NPY_MAGIC))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path}: unreadable .npy file ({exc.strerror or exc})") from exc
    if magic != _NPY_MAGIC:
        hint = "; it is a zip archive (.npz?): save the one stack with np.save" if magic[:2] == b"PK" else ""
        raise InputError(f"{path}: not a .npy file (no NumPy header{hint})")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{path}: unreadable .npy file ({exc})") from exc


def load_npy_images(path: Path, masked_later: bool = False) -> tuple[np.ndarray, tuple[int, ...]]:
    """An `(N,H,W)` or `(N,1,H,W)` array of uint8 or float in [0,1] -> (N,H,W) array (same dtype) and its source
    shape (`masked_later`: see `as_images`)."""
    return as_images(load_npy(path), path, masked_later)


def as_images(arr: np.ndarray, path: Path, masked_later: bool = False) -> tuple[np.ndarray, tuple[int, ...]]:
    """`arr`, read from `path`, checked as an image stack: (N,H,W) uint8 or float in [0,1], and its source shape.
    The dtype is kept, so predictions are written back in it and their known pixels stay bit-identical. With
    `masked_later`, NaN and infinite values are let through for `_missing_where_not_finite` to judge against the
    masks (under them they are gaps like any other)."""
    shape = arr.shape
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 3:
        raise InputError(f"{path}: expected an array (N,H,W) or (N,1,H,W), got shape {shape}")
    if arr.size == 0:
        raise InputError(f"{path}: the dataset is empty (shape {shape})")
    if arr.dtype == np.uint8:
        return arr, shape
    if not np.issubdtype(arr.dtype, np.floating):
        raise InputError(f"{path}: expected uint8 or float values, got {arr.dtype}")
    finite = np.isfinite(arr)
    all_finite = bool(finite.all())
    if not all_finite and not masked_later:
        raise InputError(f"{path}: contains NaN or infinite values")
    values = arr if all_finite else arr[finite]
    if values.size and (values.min() < 0 or values.max() > 1):
        raise InputError(f"{path}: float values must lie in [0, 1], found {values.min():.3g}..{values.max():.3g}")
    return arr, shape


def _missing_where_not_finite(images: np.ndarray, masks: np.ndarray | None, path: Path) -> np.ndarray:
    """`images` with a NaN or infinity under the mask set to 0, as a corrupted slice's gaps are (it is never looked
    at, but a NaN would pass for a clean pixel and poison training); one at a known pixel, or in a stack with no
    masks, is refused."""
    bad = ~np.isfinite(images)
    if not bad.any():
        return images
    known = bad if masks is None else bad & ~masks
    if known.any():
        where = "" if masks is None else f" at known pixels (slice {int(np.flatnonzero(known.reshape(len(known), -1).any(1))[0])})"
        raise InputError(f"{path}: contains NaN or infinite values{where}")
    images = images.copy()
    images[bad] = 0
    return images


def _label_map(arr: np.ndarray, f: Path) -> np.ndarray:
    """A label-map stack (N,H,W) or (N,1,H,W) of integers 0..255 -> uint8 (N,H,W)."""
    arr = arr[:, 0] if arr.ndim == 4 and arr.shape[1] == 1 else arr
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.bool_)):
        raise InputError(f"{f}: label maps must hold integers (one value per class), got {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise InputError(f"{f}: label values must lie in 0..255, found {int(arr.min())}..{int(arr.max())}")
    return arr.astype(np.uint8)


def _read_npy(path: Path) -> SliceSet:
    if path.is_file():
        images, shape = load_npy_images(path)
        return SliceSet(ids=[str(i) for i in range(len(images))], images=images, layout="npy", source_shape=shape)
    images, shape = load_npy_images(path / "images.npy", masked_later=True)
    parts: dict[str, np.ndarray] = {}
    for part in NPY_PARTS[1:]:
        f = path / f"{part}.npy"
        if not f.is_file():
            continue
        if part == "vertebrae":
            arr = load_npy(f).reshape(-1)
            _check_vertebrae(arr, f)
            arr = arr.astype(np.int16)
        elif part == "truth":
            arr = load_npy_images(f)[0]
        elif part == "labels":
            arr = _label_map(load_npy(f), f)
        else:
            arr = load_npy(f)
            arr = arr[:, 0] if arr.ndim == 4 and arr.shape[1] == 1 else arr
            if arr.shape != images.shape:  # before the values: a scalar or a cube has no slices to name
                raise InputError(f"{f}: shape {arr.shape} does not match images {images.shape}")
            if part == "masks":
                arr = _as_mask(arr, f)
            else:
                _check_tissue(arr, f)
                arr = arr.astype(np.uint8)
        expected = images.shape[:1] if part == "vertebrae" else images.shape
        if arr.shape != expected:
            raise InputError(f"{f}: shape {arr.shape} does not match images {expected}")
        parts[part] = arr
    return SliceSet(
        ids=[str(i) for i in range(len(images))],
        images=_missing_where_not_finite(images, parts.get("masks"), path / "images.npy"),
        masks=parts.get("masks"),
        truth=parts.get("truth"),
        tissue=parts.get("tissue"),
        vertebrae=parts.get("vertebrae"),
        labels=parts.get("labels"),
        layout="npy",
        source_shape=shape,
    )


def _paired(images: dict[str, Path], files: dict[str, Path]) -> dict[str, Path]:
    """Case id -> the file of another sub-folder that goes with its image: the one of the image's own name
    (`images/image_001.png` with `masks/image_001.png`), else the one of its case id (`masks/mask_001.png`)."""
    by_name = {f.stem: f for f in files.values()}
    return {i: by_name.get(f.stem, files.get(i)) for i, f in images.items() if f.stem in by_name or i in files}


def read_png_slice(image: Path, mask: Path, tissue: Path | None = None, vertebra: int | None = None) -> SliceSet:
    """One PNG slice with its mask (0/255, 255 = missing) and optionally its DM-i-AI tissue map (each a PNG of the
    image's size) and vertebra level: `medinpaint predict -i slice.png --mask mask.png -o filled.png`, without making
    a folder of one."""
    images = _stack([Path(image)], 1, None)
    masks = _as_mask(_stack([Path(mask)], 1, images.shape[1:]), [Path(mask)])
    if not masks.any():
        raise InputError(f"{mask}: the mask marks no missing pixels, so there is nothing to fill")
    tissue_map = None
    if tissue is not None:
        tissue_map = _stack([Path(tissue)], 1, images.shape[1:])
        _check_tissue(tissue_map, [Path(tissue)])
    levels = None
    if vertebra is not None:
        if not 0 <= vertebra <= MAX_VERTEBRA:
            raise InputError(f"--vertebra must be a level 0..{MAX_VERTEBRA}, got {vertebra}")
        levels = np.array([vertebra], np.int16)
    return SliceSet(ids=[Path(image).stem], images=images, masks=masks, tissue=tissue_map, vertebrae=levels, layout="png",
                    source=str(image))


def _read_png_pairs(path: Path, workers: int) -> SliceSet:
    images = _png_files(path / "images", "image")
    ids = sorted(images)
    if not ids:
        raise InputError(f"{path / 'images'}: the folder is empty")
    stacks: dict[str, np.ndarray] = {"images": _stack([images[i] for i in ids], workers, None)}
    for part, prefix in (("masks", "mask"), ("truth", "truth"), ("labels", "label")):
        if not (path / part).is_dir():
            continue
        files = _png_files(path / part, prefix)
        paired = _paired(images, files)
        if part == "masks":
            no_mask_without_image(files.values(), paired.values(), path / "images")
        missing = [i for i in ids if i not in paired]
        if missing:
            raise InputError(f"{path / part}: no file for {images[missing[0]].relative_to(path)}")
        chosen = [paired[i] for i in ids]
        stack = _stack(chosen, workers, stacks["images"].shape[1:])
        stacks[part] = _as_mask(stack, chosen) if part == "masks" else stack
    return SliceSet(ids=ids, images=stacks["images"], masks=stacks.get("masks"), truth=stacks.get("truth"),
                    labels=stacks.get("labels"), layout="png")
