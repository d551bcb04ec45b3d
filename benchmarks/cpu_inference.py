"""CPU milliseconds per 256x256 slice for U-Net sizes, with and without test-time flips.

    .venv/bin/python benchmarks/cpu_inference.py [--weights PATH ...] [--repeats 10]

Without --weights it times untrained networks of the sizes worth shipping (speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from medinpaint.inference import Inpainter
from medinpaint.models import MaskAwareUNet, UNetConfig
from medinpaint.samples import sample_dir
from medinpaint.data import read_slices

SIZES = [
    UNetConfig(base_channels=16, depth=4, blocks_per_level=1),
    UNetConfig(base_channels=24, depth=4, blocks_per_level=1),
    UNetConfig(base_channels=32, depth=4, blocks_per_level=1),
    UNetConfig(base_channels=32, depth=4, blocks_per_level=2),
]


def time_one(model: Inpainter, repeats: int) -> float:
    s = read_slices(sample_dir())
    model.predict(s.images[0], s.masks[0], s.tissue[0], int(s.vertebrae[0]))  # warm-up
    times = []
    for i in range(repeats):
        k = i % len(s)
        start = time.perf_counter()
        model.predict(s.images[k], s.masks[k], s.tissue[k], int(s.vertebrae[k]))
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, nargs="*", default=[])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    candidates = [(str(w), lambda f, w=w: Inpainter.from_pretrained(w, flips=f)) for w in args.weights]
    if not candidates:
        for cfg in SIZES:
            net = MaskAwareUNet(cfg)
            params = sum(p.numel() for p in net.parameters()) / 1e6
            label = f"base {cfg.base_channels}, depth {cfg.depth}, {cfg.blocks_per_level} block(s), {params:.1f}M params"
            candidates.append((label, lambda f, net=net: Inpainter(net, flips=f)))
    for label, make in candidates:
        plain, flipped = time_one(make(False), args.repeats), time_one(make(True), args.repeats)
        print(f"{label}: {plain:.0f} ms per slice, {flipped:.0f} ms with flips")


if __name__ == "__main__":
    main()
