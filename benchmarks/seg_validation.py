"""The body-composition segmenter against thresholding on every slice of validation patients 450-499.

    .venv/bin/python benchmarks/seg_validation.py --data ../shared/data/dmiai-ct [--weights RUN/model.safetensors] [--backends auto int8]

Prints one row per method (Dice and Jaccard per class, mean absolute error of the fat fraction of the body, CPU ms
per slice) as a markdown table, and writes it as JSON with --output.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from medinpaint.baselines import threshold_tissue
from medinpaint.data import split_by_patient
from medinpaint.segmentation.data import read_labelled
from medinpaint.segmentation.evaluate import score
from medinpaint.segmentation.inference import Segmenter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--weights", type=Path, default=None, help="default: the shipped segmenter")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--backends", nargs="+", default=["auto"], help="a U-Net row for each (auto, torch, onnx, int8)")
    args = parser.parse_args()

    data = read_labelled(args.data)
    _, val_idx = split_by_patient(data.ids)
    val = data.subset(val_idx)
    methods = {"thresholding (0 < value < 70 in the filled body)": threshold_tissue}
    for backend in args.backends:
        segmenter = Segmenter.from_pretrained(args.weights, backend=backend)
        methods[f"U-Net {segmenter.name} ({segmenter.backend})"] = lambda x, s=segmenter: s.predict(x, batch_size=8)
    rows = []
    for name, method in methods.items():
        t0 = time.perf_counter()
        pred = method(val.images)
        ms = 1000 * (time.perf_counter() - t0) / len(val)
        rows.append({"method": name, **score(val, pred).aggregate(), "ms_per_slice": ms})
    keys = ["dice_fat", "dice_body", "jaccard_fat", "jaccard_body", "fat_fraction_abs_error", "ms_per_slice"]
    print(f"{len(val)} slices of patients 450-499, torch threads {torch.get_num_threads()}\n")
    print("| method | " + " | ".join(keys) + " |\n|---|" + "---:|" * len(keys))
    for r in rows:
        print(f"| {r['method']} | " + " | ".join(f"{r[k]:.4f}" if k != "ms_per_slice" else f"{r[k]:.1f}" for k in keys) + " |")
    if args.output:
        args.output.write_text(json.dumps(rows, indent=1, default=float))


if __name__ == "__main__":
    main()
