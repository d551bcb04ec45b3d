"""Fill-gaps with known truth (issue 7): 100 CT slices of validation patients 450-499 at 64x64, under one wavy
vertical stripe mask (2 missing / 2 kept) shared by all, and under free-form brush masks of their own.

Scores MAE (0..255, whole image), MAE inside the true mask and SSIM against the truth for: row-wise linear
interpolation and OpenCV Telea (under the true mask, the robust estimate and the naive "zero in most images"
estimate), fill-gaps trained on real slices of patients 0-449 (robust and naive mask), and, with --generator,
fill-gaps trained on synthetic slices only.

    OMP_NUM_THREADS=1 python benchmarks/fill_gaps.py --data packed/dmiai-ct --minutes 4 --naive-minutes 2 \
        --freeform-minutes 3                                               # the CPU figures in BENCHMARKS.md
    python benchmarks/fill_gaps.py --data packed/dmiai-ct --write-small packed/dmiai-ct-64   # to carry to a GPU
    python benchmarks/fill_gaps.py --data packed/dmiai-ct-64 --device cuda --minutes 0 --naive-minutes 0 \
        --freeform-minutes 0 --generator shipped --synthetic-minutes 5    # one row per run, each under 10 minutes
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from medinpaint.data import read_slices, split_by_patient
from medinpaint.data.cache import pack
from medinpaint.data.slices import SliceSet, to_uint8
from medinpaint.baselines import telea_fill
from medinpaint.fillgaps import Corruption, detect_corruption, fill_gaps
from medinpaint.fillgaps.sources import images_from_generator, resample
from medinpaint.masks import BrushStrokes, Stripes
from medinpaint.metrics import mae, mae_in_mask, ssim

SIZE = (64, 64)
STRIPES = Stripes(period=4, missing=2, orientation="vertical", amplitude=3, wavelength=32)


def row_interpolation(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Each missing pixel linearly interpolated from the known pixels of its row (edges held constant)."""
    out = images.astype(np.float64)
    x = np.arange(images.shape[2])
    for img, m in zip(out, masks):
        for row, miss in zip(img, m):
            if miss.any() and not miss.all():
                row[miss] = np.interp(x[miss], x[~miss], row[~miss])
    return to_uint8(out / 255.0)


def telea(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    return telea_fill(SliceSet([str(i) for i in range(len(images))], images, masks))


def scores(filled: np.ndarray, truth: np.ndarray, masks: np.ndarray) -> dict[str, float]:
    return {
        "mae": float(np.mean([mae(f, t) for f, t in zip(filled, truth)])),
        "mae_in_mask": float(np.mean([mae_in_mask(f, t, m) for f, t, m in zip(filled, truth, masks)])),
        "ssim": float(np.mean([ssim(f, t) for f, t in zip(filled, truth)])),
    }


def mask_quality(estimate: np.ndarray, truth_mask: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Recall of the true gaps over the body, and the body pixels wrongly marked missing (known pixels lost)."""
    body = truth > 0
    return {"recall_in_body": float((estimate & truth_mask & body).sum() / max(1, (truth_mask & body).sum())),
            "precision": float((estimate & truth_mask).sum() / max(1, estimate.sum())),
            "coverage": float(estimate.mean())}


def train_and_fill(target: np.ndarray, clean: np.ndarray, corruption: Corruption, minutes: float, device: str) -> tuple[np.ndarray, dict]:
    with tempfile.TemporaryDirectory() as work:
        start = time.perf_counter()
        result = fill_gaps(target, clean, Path(work), corruption, minutes=minutes, device=device, progress=False)
        wall = time.perf_counter() - start
    info = {"steps": result.steps, "val_mae": result.val_mae, "wall_s": round(wall, 1), "minutes": minutes,
            "network": result.config.network.to_dict(), "train_slices": len(clean)}
    return result.filled, info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("packed/dmiai-ct"))
    ap.add_argument("--minutes", type=float, default=5.0, help="budget of the real-slice run, robust mask (0 skips)")
    ap.add_argument("--naive-minutes", type=float, default=None, help="the naive-mask run (default --minutes; 0 skips)")
    ap.add_argument("--freeform-minutes", type=float, default=None, help="the free-form run (default --minutes; 0 skips)")
    ap.add_argument("--synthetic-minutes", type=float, default=None, help="the synthetic run (default --minutes)")
    ap.add_argument("--n-train", type=int, default=4500, help="training slices (real: of patients 0-449; synthetic: sampled)")
    ap.add_argument("--generator", default=None, help="synthesis checkpoint, or 'shipped': adds the synthetic-only row")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="write all results as JSON here")
    ap.add_argument("--write-small", type=Path, default=None,
                    help="only write --data at 64x64 as a packed cache here (a few MB: carries to a GPU machine)")
    args = ap.parse_args()
    slices = read_slices(args.data)
    if args.write_small:
        pack(SliceSet(slices.ids, to_uint8(resample(slices.clean, SIZE))), args.write_small)
        return
    budget = {k: args.minutes if getattr(args, f"{k}_minutes") is None else getattr(args, f"{k}_minutes")
              for k in ("naive", "freeform", "synthetic")}

    rng = np.random.default_rng(args.seed)
    train_idx, val_idx = split_by_patient(slices.ids)
    pick = np.sort(rng.choice(val_idx, size=100, replace=False))
    truth = to_uint8(resample(slices.clean[pick], SIZE))
    real_idx = np.sort(rng.choice(train_idx, size=min(args.n_train, len(train_idx)), replace=False))
    real = resample(slices.clean[real_idx], SIZE)
    results: dict = {"target": {"n": len(truth), "size": SIZE, "patients": "450-499", "stripes": repr(STRIPES)}}

    # Case 1: one wavy stripe mask shared by all slices.
    mask = STRIPES(rng, SIZE)
    target = np.where(mask, 0, truth).astype(np.uint8)
    zeros = target == 0
    robust = detect_corruption(target)
    naive = zeros.mean(axis=0) > 0.5  # "every pixel that is zero in most images"
    true_masks = np.broadcast_to(mask, target.shape)
    estimates = {"true": true_masks, "robust": robust.masks, "naive": naive & zeros}
    results["detection"] = {"robust_found": robust.describe(), **{k: mask_quality(v, true_masks, truth) for k, v in estimates.items()}}
    rows = {}
    for name, m in estimates.items():
        rows[f"row interpolation, {name} mask"] = scores(row_interpolation(target, m), truth, true_masks)
        rows[f"Telea, {name} mask"] = scores(telea(target, m), truth, true_masks)
    runs = {}
    if args.minutes > 0:
        filled, runs["real, robust mask"] = train_and_fill(target, real, robust, args.minutes, args.device)
        rows["fill-gaps, real slices (0-449), robust mask"] = scores(filled, truth, true_masks)
    if budget["naive"] > 0:
        naive_corruption = Corruption(np.broadcast_to(naive, target.shape), True, None, float("nan"), np.ones(SIZE, bool))
        filled, runs["real, naive mask"] = train_and_fill(target, real, naive_corruption, budget["naive"], args.device)
        filled = np.where(zeros, filled, target)  # the naive mask would also overwrite known pixels: keep them
        rows["fill-gaps, real slices (0-449), naive mask"] = scores(filled, truth, true_masks)
    if args.generator and budget["synthetic"] > 0:
        synthetic, note = images_from_generator(None if args.generator == "shipped" else Path(args.generator), SIZE,
                                                args.n_train, args.seed, args.device)
        filled, runs["synthetic, robust mask"] = train_and_fill(target, synthetic, robust, budget["synthetic"], args.device)
        runs["synthetic, robust mask"]["source"] = note
        rows["fill-gaps, synthetic slices only, robust mask"] = scores(filled, truth, true_masks)
    results["stripes"] = {"rows": rows, "runs": runs}

    # Case 2: a free-form brush mask of its own for every slice.
    if budget["freeform"] > 0:
        masks = np.stack([BrushStrokes()(rng, SIZE) for _ in truth])
        target = np.where(masks, 0, truth).astype(np.uint8)
        found = detect_corruption(target)
        in_view = Corruption(found.pool, False, None, found.explained, found.field)  # gaps in each field of view only
        rows = {"Telea, true masks": scores(telea(target, masks), truth, masks),
                "Telea, in-view gaps": scores(telea(target, in_view.masks), truth, masks),
                "row interpolation, in-view gaps": scores(row_interpolation(target, in_view.masks), truth, masks)}
        runs = {}
        filled, runs["real, in-view gaps"] = train_and_fill(target, real, in_view, budget["freeform"], args.device)
        rows["fill-gaps, real slices (0-449), in-view gaps only"] = scores(filled, truth, masks)
        filled, runs["real, every gap"] = train_and_fill(target, real, found, budget["freeform"], args.device)
        rows["fill-gaps, real slices (0-449), every zero pixel filled (the default)"] = scores(filled, truth, masks)
        results["freeform"] = {"detection": {"found": found.describe(), "in_view": mask_quality(in_view.masks, masks, truth),
                                             "filled": mask_quality(found.masks, masks, truth)},
                               "rows": rows, "runs": runs}

    print(json.dumps(results, indent=1))
    for case in ("stripes", "freeform"):
        if case in results:
            print(f"\n{case}\n| method | MAE | MAE in mask | SSIM |\n|---|---|---|---|")
            for name, r in results[case]["rows"].items():
                print(f"| {name} | {r['mae']:.2f} | {r['mae_in_mask']:.2f} | {r['ssim']:.4f} |")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
