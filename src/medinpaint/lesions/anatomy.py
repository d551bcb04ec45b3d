"""Anatomy out of the box. CT: the DM-i-AI tissue maps (`lesions.data`). Brain MRI: the MNI152 (ICBM 2009a) T1
template and its grey- and white-matter probability maps, which the nilearn package carries inside itself; they are
read here with nibabel, without importing nilearn and without a download.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medinpaint.errors import InputError

BRAIN_ANATOMY = ("background", "grey matter", "white matter")
MNI_FILE = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"


def nilearn_data() -> Path:
    """nilearn's bundled data folder; a one-line error says how to get it."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("the brain template ships inside the nilearn package: pip install nilearn (or medinpaint[brain])")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data"


@dataclass
class BrainTemplate:
    t1: np.ndarray  # uint8 (X, Y, Z), RAS voxel axes
    anatomy: np.ndarray  # uint8 class ids: BRAIN_ANATOMY

    def axial(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Axial slice `index` (along z) as (image, anatomy), each (Y, X) with anterior up, as radiologists view it."""
        turn = lambda a: np.ascontiguousarray(np.rot90(a[:, :, index]))  # noqa: E731
        return turn(self.t1), turn(self.anatomy)


def mni152(step: int = 2) -> BrainTemplate:
    """The template at `step` mm (every `step`-th voxel of the 1 mm grid). A voxel is brain where the grey- and
    white-matter probabilities sum past one half, and then whichever of the two is larger."""
    import nibabel as nib

    folder = nilearn_data()
    read = lambda kind: np.asarray(nib.load(folder / MNI_FILE.format(kind)).dataobj)[::step, ::step, ::step]  # noqa: E731
    t1, gm, wm = read("t1"), read("gm").astype(np.int32), read("wm").astype(np.int32)
    anatomy = np.where(gm + wm > 127, np.where(gm >= wm, 1, 2), 0).astype(np.uint8)
    return BrainTemplate(t1.astype(np.uint8), anatomy)
