"""Measure DM-i-AI masks beside the procedural brush strokes: coverage, stroke width, border contact, pieces.

    .venv/bin/python benchmarks/mask_stats.py --data ../shared/data/dmiai-ct --n 200
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from medinpaint.data import read_slices
from medinpaint.masks import BrushStrokes, mask_statistics


def summarise(name: str, masks: list[np.ndarray]) -> None:
    stats = [mask_statistics(m) for m in masks]
    for key in stats[0]:
        values = np.array([s[key] for s in stats])
        q = np.percentile(values, [0, 5, 50, 95, 100])
        print(f"{name:10s} {key:9s} min {q[0]:7.3f}  p5 {q[1]:7.3f}  median {q[2]:7.3f}  p95 {q[3]:7.3f}  max {q[4]:7.3f}  mean {values.mean():7.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    real = read_slices(args.data).masks
    pick = np.linspace(0, len(real) - 1, args.n).astype(int)
    summarise("real", list(real[pick]))
    rng = np.random.default_rng(0)
    summarise("generated", [BrushStrokes()(rng, real.shape[1:]) for _ in range(args.n)])


if __name__ == "__main__":
    main()
