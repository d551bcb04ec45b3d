"""Patient-grouped splits: slices of one patient never straddle train and validation."""

from __future__ import annotations

import re

import numpy as np

from medinpaint.errors import error_about

VALIDATION_PATIENTS = range(450, 500)  # this project's fixed validation split of the DM-i-AI set

_VOLUME_SLICE = re.compile(r"^(.+?)(?::c\d+)?:z\d+$")  # slice k of a volume read by `volume_slices`: `case[:cCCCC]:zNNNN`
_PATIENT_SLICE = re.compile(r"^(.+)_\d+$")  # slice k of a patient: `PATIENT_K` (DM-i-AI: `PPP_k`)
_DMIAI_SLICE = re.compile(r"^(\d{3})_\d+$")  # DM-i-AI's `PPP_k`: three-digit patient, slice k


def patient_of(case_id: str) -> str:
    """The patient of a case id: `PATIENT` of `PATIENT_K` (DM-i-AI's `PPP_k`, `sub01_3`), `case` of a volume's
    slice `case:zNNNN` or of its channel `case:cCCCC:zNNNN`; any other id (`17`, `synth-000003`) is its own patient."""
    m = _VOLUME_SLICE.match(case_id) or _PATIENT_SLICE.match(case_id)
    return m.group(1) if m else case_id


def is_validation_case(case_id: str) -> bool:
    """Whether `case_id` is a slice of the DM-i-AI validation patients 450-499 (`450_0`..`499_9`). Only DM-i-AI's
    `PPP_k` ids: a `.npy` stack's slice numbers (`0`..`N-1`) or a PNG named `0450.png` are not DM-i-AI patients."""
    m = _DMIAI_SLICE.match(case_id)
    return bool(m) and int(m.group(1)) in VALIDATION_PATIENTS


def outside_validation(ids: list[str]) -> np.ndarray:
    """Indices of the ids not of validation patients 450-499 (all of them for data of other ids): the slices
    anything learnt may see, with no random hold-out as `split_by_patient` makes for other data."""
    return np.flatnonzero([not is_validation_case(i) for i in ids])


def split_by_patient(
    ids: list[str], val_fraction: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val). DM-i-AI ids use patients 450-499 as validation when any are present;
    otherwise a seeded random `val_fraction` of patients is held out."""
    patients = [patient_of(i) for i in ids]
    fixed = {p for p, i in zip(patients, ids) if is_validation_case(i)}
    if fixed:
        val_patients = fixed
    else:
        unique = sorted(set(patients))
        rng = np.random.default_rng(seed)
        n_val = max(1, int(round(len(unique) * val_fraction))) if len(unique) > 1 else 0
        val_patients = set(rng.permutation(unique)[:n_val].tolist())
    is_val = np.array([p in val_patients for p in patients], dtype=bool)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def one_patient_note(source: str) -> str:
    """What a task validating on its training slices (data of one patient, nobody to hold out) tells the user."""
    return f"{source or 'the data'} hold one patient: the validation curve is measured on training slices"


def training_split(ids: list[str], source: str = "") -> tuple[np.ndarray, np.ndarray]:
    """`split_by_patient` for training, which needs slices left to learn from; `source` names the data. The
    held-out patients are the data's, not the run's: the same whatever the training seed, so that a run resumed
    with another --seed, or a comparison's seeds, never train on patients another seed validates (or is scored) on."""
    train_idx, val_idx = split_by_patient(ids)
    if len(train_idx) == 0:
        raise error_about(source, "no training slices left: every slice is of the validation patients 450-499, "
                                  "which training holds out")
    return train_idx, val_idx
