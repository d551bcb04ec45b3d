"""Compare classical baselines and models on the same validation cases, with time per slice."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from medinpaint.data import read_slices, split_by_patient
from medinpaint.evaluation import baseline_methods, score
from medinpaint.inference import Inpainter


def compare(
    data: Path,
    weights: list[Path | None],
    limit: int | None = None,
    device: str = "cpu",
    flips: bool = False,
    progress: bool = False,
    ensemble: bool = False,
    backend: str = "auto",
) -> list[dict]:
    """One result row per method: the metric means on the validation patients of `data` (all cases when
    it has none), per-tissue means fitted on the rest, and wall-clock milliseconds per slice. `ensemble` adds
    the average of all `weights` as one more model."""
    slices = read_slices(data, require_masks=True, require_truth=True)
    train_idx, val_idx = split_by_patient(slices.ids)
    reference = slices.subset(val_idx if len(val_idx) else np.arange(len(slices)))
    if limit is not None:
        reference = reference.subset(np.arange(min(limit, len(reference))))
    methods = dict(baseline_methods(slices.subset(train_idx) if len(train_idx) and len(val_idx) else None,
                                    tissue_maps=reference.tissue is not None))
    models: list[Path | None | list[Path | None]] = list(weights) + ([list(weights)] if ensemble and len(weights) > 1 else [])
    for w in models:
        for use_flips in (False, True) if flips else (False,):
            model = Inpainter.from_pretrained(w, device=device, flips=use_flips, backend=backend)
            label = f"model {model.name}" + (" + flips" if use_flips else "")
            while label in methods:  # two checkpoints that share a name each keep their row
                label += "'"
            methods[label] = lambda s, m=model: m.predict_slices(s, batch_size=8, progress=progress)
    results = []
    for name, fill in methods.items():
        start = time.perf_counter()
        filled = fill(reference)
        ms = (time.perf_counter() - start) * 1000 / len(reference)
        results.append({"method": name, **score(reference, filled).aggregate(), "ms_per_slice": ms})
    return results
