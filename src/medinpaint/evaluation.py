"""Score predictions against the truth: summary.json (means first), a per-case CSV and a best/worst figure."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from medinpaint.baselines import TissueMeanFill, official_fill, telea_fill, zero_fill
from medinpaint.data.png import read_gray_png
from medinpaint.data.readers import load_npy_images
from medinpaint.data.slices import SliceSet, to_uint8
from medinpaint.errors import InputError
from medinpaint.metrics import InpaintingMetrics
from medinpaint.plots import plot_cases


def score(reference: SliceSet, filled: np.ndarray) -> InpaintingMetrics:
    """Per-case metrics of `filled` (N,H,W) against `reference.truth`, in 0..255 units."""
    if reference.truth is None or reference.masks is None:
        raise InputError("scoring needs a dataset with ground truth and masks (e.g. DM-i-AI corrupted/ mask/ ct/)")
    metrics = InpaintingMetrics()
    truth, pred = to_uint8(reference.truth), to_uint8(filled)
    for i, case_id in enumerate(reference.ids):
        metrics(case_id, pred[i], truth[i], reference.masks[i])
    return metrics


def read_predictions(pred: Path, reference: SliceSet) -> np.ndarray:
    """Predictions for every case of `reference`, from `<case id>.png` files or an `images.npy` stack."""
    pred = Path(pred)
    if not pred.exists():
        raise InputError(f"{pred}: no such folder")
    npy = pred if pred.suffix == ".npy" else pred / "images.npy"
    if npy.is_file():
        arr = load_npy_images(npy)[0]
        if arr.shape != reference.images.shape:
            raise InputError(f"{npy}: shape {arr.shape} does not match the data {reference.images.shape}")
        return arr
    return np.stack([img for _, img in read_case_pngs(pred, reference.ids, reference.images.shape[1:])])


def read_case_pngs(folder: Path, ids: list[str], shape: tuple[int, ...]) -> list[tuple[Path, np.ndarray]]:
    """(file, image) of `<case id>.png` in `folder` for every case, each of `shape`; a missing or odd file is a
    one-line error naming it."""
    if ids and not any((folder / f"{case_id}.png").is_file() for case_id in ids):
        raise InputError(f"{folder}: holds none of the predictions (one <case id>.png per case, such as {ids[0]}.png, as "
                         "`medinpaint predict` and `segment predict` write them)")
    out = []
    for case_id in ids:
        f = folder / f"{case_id}.png"
        if not f.is_file():
            raise InputError(f"{f}: missing prediction for case {case_id}")
        img = read_gray_png(f)
        if img.shape != tuple(shape):
            raise InputError(f"{f}: size {img.shape[1]}x{img.shape[0]}, but case {case_id} of the data is {shape[1]}x{shape[0]}")
        out.append((f, img))
    return out


def write_tables(report: Path, summary: dict, rows: list[dict]) -> dict:
    """summary.json (means first, as aggregated) and per_case.csv (a row per case) into `report`; the summary."""
    (report / "summary.json").write_text(json.dumps(summary, indent=1))
    with open(report / "per_case.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return summary


def write_report(report: Path, reference: SliceSet, filled: np.ndarray, metrics: InpaintingMetrics, n_show: int = 3) -> dict:
    """Write summary.json, per_case.csv and cases.png into `report` (an existing folder); return the summary. The
    summary ends with `exact_cases`: cases filled without error, whose infinite PSNR the PSNR mean leaves out."""
    exact = sum(1 for r in metrics.rows if r["psnr"] == float("inf"))
    summary = write_tables(report, {**metrics.aggregate(), "exact_cases": exact}, metrics.rows)
    order = np.argsort([r["mae"] for r in metrics.rows])
    chosen = list(order[:n_show]) + [i for i in order[::-1][:n_show] if i not in order[:n_show]]
    pred = to_uint8(filled)
    rows = [
        (("best " if rank < n_show else "worst ") + reference.ids[i], float(metrics.rows[i]["mae"]),
         to_uint8(reference.images[i]), pred[i], to_uint8(reference.truth[i]))
        for rank, i in enumerate(chosen)
    ]
    plot_cases(rows, report / "cases.png", f"best and worst cases (mean MAE {summary['mae']:.2f}, n={summary['n']})")
    return summary


def baseline_methods(train: SliceSet | None, tissue_maps: bool = True) -> dict[str, Callable[[SliceSet], np.ndarray]]:
    """The classical fills, with the per-tissue means fitted on `train` when given; without `tissue_maps` (data
    that have none) only those that need none."""
    if not tissue_maps:
        return {"zero fill": zero_fill, "OpenCV Telea": telea_fill}
    tissue_mean = TissueMeanFill.fit(train) if train is not None and train.tissue is not None else TissueMeanFill()
    return {"zero fill": zero_fill, "official (fill 84)": official_fill, "per-tissue mean": tissue_mean, "OpenCV Telea": telea_fill}
