"""Pack the synthesis training data for a GPU machine: slices at the model's size, no masks, under a size limit.

    .venv/bin/python benchmarks/synth_pack.py --data ../shared/data/dmiai-ct --size 64 -o packed/synth-64
    .venv/bin/python benchmarks/synth_pack.py --data ../shared/data/dmiai-ct --size 256 -o packed/synth-256

Keeps up to --validation-cases slices of patients 450-499 (the report's held-out side) and then as many training
patients, in order, as fit in --max-mb (a carry to the GPU machine is 64 MiB with the repository). At 64x64 all
5,000 slices fit in a few MB; at 256x256 a patient subset does (the count is printed).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np

from medinpaint.data import read_slices, split_by_patient
from medinpaint.data.cache import pack
from medinpaint.data.slices import SliceSet
from medinpaint.synthesis.data import require_triples, resize_pairs


def folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.iterdir()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--max-mb", type=float, default=62.0)
    parser.add_argument("--validation-cases", type=int, default=200)
    args = parser.parse_args()

    slices = read_slices(args.data)
    require_triples(slices, str(args.data))
    train_idx, val_idx = split_by_patient(slices.ids)
    pairs = resize_pairs(slices, args.size)
    small = SliceSet(slices.ids, pairs[:, 0], tissue=pairs[:, 1], vertebrae=slices.vertebrae, layout="dmiai")
    keep_val = val_idx[: args.validation_cases]
    n_train = len(train_idx)
    with tempfile.TemporaryDirectory() as probe:  # bytes per slice, from a packed sample of 200
        pack(small.subset(train_idx[:200]), Path(probe))
        per_slice = folder_mb(Path(probe)) / min(200, n_train)
    n_train = min(n_train, int((args.max_mb * 0.99 / per_slice) - len(keep_val)))
    while True:
        subset = small.subset(np.sort(np.concatenate([train_idx[:n_train], keep_val])))
        shutil.rmtree(args.output, ignore_errors=True)
        pack(subset, args.output)
        if folder_mb(args.output) <= args.max_mb:
            break
        n_train = int(n_train * 0.95)
    print(f"{args.output}: {n_train} training and {len(keep_val)} validation slices of {args.size}x{args.size}, "
          f"{folder_mb(args.output):.1f} MB")


if __name__ == "__main__":
    main()
