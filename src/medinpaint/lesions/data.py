"""Lesion cases on disk and in memory: slices, their lesion masks and their anatomy maps, grouped by patient.

A lesion folder is the PNG-pairs layout `images/NAME.png` + `labels/NAME.png` (nonzero = lesion) + `anatomy/NAME.png`
(an integer class map, 0 outside the body). A folder of healthy cases may leave `labels/` out, and may be any
layout `read_slices` knows that carries DM-i-AI tissue maps (a DM-i-AI folder, a packed cache): its anatomy is then
the tissue classes (0 background, 1 soft tissue, 2 fat). NAME is `PATIENT_K` so that slices group by patient.
An optional `anatomy.json` (`{"classes": ["background", "soft tissue", "fat"]}`) names the classes; the folders
this package writes carry one, so CT anatomy read back is still known for CT (and painters get it as a tissue map).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medinpaint.constants import TISSUE_LEVELS
from medinpaint.data import read_slices
from medinpaint.data.png import read_gray_png, write_gray_png
from medinpaint.data.slices import tissue_to_classes, to_uint8
from medinpaint.data.split import patient_of
from medinpaint.errors import InputError

CT_ANATOMY = ("background", "soft tissue", "fat")  # the DM-i-AI tissue classes, as anatomy


@dataclass
class LesionSet:
    ids: list[str]
    images: np.ndarray  # uint8 (N, H, W)
    lesions: np.ndarray  # bool (N, H, W), all False for healthy slices
    anatomy: np.ndarray  # uint8 (N, H, W) class ids, 0 outside the body
    anatomy_names: tuple[str, ...] = CT_ANATOMY

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index: np.ndarray | list[int]) -> LesionSet:
        idx = np.asarray(index, dtype=np.int64)
        return LesionSet([self.ids[i] for i in idx], self.images[idx], self.lesions[idx], self.anatomy[idx], self.anatomy_names)

    @property
    def patients(self) -> list[str]:
        return [patient_of(i) for i in self.ids]

    def of_patients(self, patients: set[str]) -> LesionSet:
        return self.subset([i for i, p in enumerate(self.patients) if p in patients])

    def as_tissue(self) -> np.ndarray | None:
        """The anatomy as a DM-i-AI tissue map (what the inpainting networks take), when it has the CT classes."""
        return np.asarray(TISSUE_LEVELS, dtype=np.uint8)[self.anatomy] if self.anatomy_names == CT_ANATOMY else None


def read_lesion_folder(path: Path, require_lesions: bool) -> LesionSet:
    """Slices, lesion masks and anatomy of a folder (see the module's docstring); one-line errors name the folder."""
    path = Path(path)
    slices = read_slices(path)
    slices.require_clean()  # corrupted slices (zeros under a mask) are no healthy anatomy to paint into or learn from
    if (path / "anatomy").is_dir():
        maps = []
        for i in slices.ids:
            f = path / "anatomy" / f"{i}.png"
            if not f.is_file():
                raise InputError(f"{path / 'anatomy'}: no file for {i}.png")
            maps.append(read_gray_png(f))
            if maps[-1].shape != slices.images.shape[1:]:
                raise InputError(f"{f}: a map of {maps[-1].shape[1]}x{maps[-1].shape[0]} for a slice of "
                                 f"{slices.images.shape[2]}x{slices.images.shape[1]}")
        anatomy = np.stack(maps)
        names = _class_names(path / "anatomy.json", int(anatomy.max()))
    elif slices.tissue is not None:
        anatomy, names = tissue_to_classes(slices.tissue).astype(np.uint8), CT_ANATOMY
    else:
        raise InputError(f"{path}: no anatomy maps (an anatomy/ folder of class maps, or DM-i-AI tissue maps)")
    if slices.labels is not None:
        lesions = slices.labels > 0
    elif require_lesions:
        raise InputError(f"{path}: no lesion masks (labels/NAME.png, nonzero where the lesion is)")
    else:
        lesions = np.zeros(slices.images.shape, dtype=bool)
    if require_lesions and not lesions.any():
        raise InputError(f"{path}: the lesion masks are all empty")
    return LesionSet(list(slices.ids), to_uint8(slices.clean), lesions, anatomy, names)


def read_healthy_folder(path: Path) -> LesionSet:
    """Healthy cases to paint lesions into or to simulate them in: a folder whose labels/ mark lesions is refused,
    since the new lesions would be labelled while the old ones stayed in the images unlabelled."""
    cases = read_lesion_folder(path, require_lesions=False)
    sick = int(cases.lesions.reshape(len(cases), -1).any(1).sum())
    if sick:
        raise InputError(f"{path}: {sick} of {len(cases)} slices already hold lesions (labels/): give healthy cases")
    return cases


def _class_names(file: Path, top: int) -> tuple[str, ...]:
    """The anatomy's class names from `anatomy.json`, else `background, class_1, ...` up to class `top`."""
    if not file.is_file():
        return tuple(["background", *(f"class_{k}" for k in range(1, top + 1))])
    try:
        names = json.loads(file.read_text())["classes"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{file}: expected {{\"classes\": [names of class 0, 1, ...]}} ({exc})") from None
    if not isinstance(names, list) or len(names) <= top or not all(isinstance(n, str) for n in names):
        raise InputError(f"{file}: needs a name for each class 0..{top} of the anatomy maps, got {names!r}")
    return tuple(names)


def write_lesion_folder(folder: Path, cases: LesionSet) -> None:
    """`images/`, `labels/` (255 in the lesion), `anatomy/` PNGs and `anatomy.json` (the class names) into an existing
    folder (the caller makes it atomic)."""
    (folder / "anatomy.json").write_text(json.dumps({"classes": list(cases.anatomy_names)}))
    for part in ("images", "labels", "anatomy"):
        (folder / part).mkdir()
    for i, case in enumerate(cases.ids):
        write_gray_png(folder / "images" / f"{case}.png", cases.images[i])
        write_gray_png(folder / "labels" / f"{case}.png", cases.lesions[i].astype(np.uint8) * 255)
        write_gray_png(folder / "anatomy" / f"{case}.png", cases.anatomy[i])
