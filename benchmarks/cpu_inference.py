"""CPU inference: PyTorch eager against ONNX Runtime, side by side, per network, batch size and thread count.

    .venv/bin/python benchmarks/cpu_inference.py [--batches 1 4 8 16] [--threads 1 2] [--repeats 5] [--sizes] [--end-to-end] [--int8]

Prints markdown tables, ratio first (PyTorch ms / ONNX Runtime ms: above 1 means ONNX Runtime is faster), then the
absolute milliseconds per 256x256 slice; `--int8` adds the int8 backend (ONNX Runtime ms / int8 ms, and its ms). Each repeat times both backends back to back on the same slices, so a noisy
neighbour slows both alike; the figure is the median over repeats. `--sizes` adds untrained U-Nets of the sizes
worth shipping (speed does not depend on the weights); `--end-to-end` times `medinpaint predict` on the 12 bundled
samples as a fresh process (start-up included), in PyTorch, in ONNX Runtime with its export cached, and with an
empty cache (the export included).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np
import torch

from medinpaint.data import read_slices
from medinpaint.inference import Inpainter
from medinpaint.models import MaskAwareUNet, UNetConfig
from medinpaint.samples import sample_dir
from medinpaint.segmentation.inference import Segmenter

SIZES = [
    UNetConfig(base_channels=32, depth=4, blocks_per_level=2),
    UNetConfig(base_channels=48, depth=4, blocks_per_level=2),
]


def batch_of(n: int) -> tuple[np.ndarray, ...]:
    """`n` of the bundled samples (repeated as needed): images, masks, tissue maps, vertebra levels."""
    s = read_slices(sample_dir())
    take = np.arange(n) % len(s)
    return s.images[take], s.masks[take], s.tissue[take], s.vertebrae[take]


def inpainter_call(make: Callable[[str], Inpainter], backend: str, n: int) -> Callable[[], object]:
    model, (images, masks, tissue, verts) = make(backend), batch_of(n)
    return lambda: model.predict_batch(images, masks, tissue, verts, batch_size=n)


def segmenter_call(make: Callable[[str], Segmenter], backend: str, n: int) -> Callable[[], object]:
    model, images = make(backend), batch_of(n)[0]
    return lambda: model.predict(images, batch_size=n)


def side_by_side(calls: dict[str, Callable[[], object]], repeats: int, slices: int) -> dict[str, float]:
    """Median ms per slice of each call, timed in turn within every repeat after one warm-up each."""
    for call in calls.values():
        call()
    times: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append((time.perf_counter() - start) * 1000 / slices)
    return {k: statistics.median(v) for k, v in times.items()}


def networks(with_sizes: bool) -> list[tuple[str, Callable[[str, int], Callable[[], object]]]]:
    rows: list[tuple[str, Callable[[str, int], Callable[[], object]]]] = [
        ("shipped ct-unet (0.75 M)", lambda b, n: inpainter_call(lambda k: Inpainter.from_pretrained(backend=k), b, n)),
        ("shipped ct-segmenter (0.75 M)", lambda b, n: segmenter_call(lambda k: Segmenter.from_pretrained(backend=k), b, n)),
    ]
    for cfg in SIZES if with_sizes else []:
        torch.manual_seed(0)
        net = MaskAwareUNet(cfg)
        params = sum(p.numel() for p in net.parameters()) / 1e6
        label = f"U-Net base {cfg.base_channels}, {cfg.blocks_per_level} blocks ({params:.1f} M)"
        rows.append((label, lambda b, n, net=net: inpainter_call(lambda k: Inpainter(net, backend=k), b, n)))
    return rows


def grid(args: argparse.Namespace) -> None:
    int8 = " ONNX Runtime / int8 | int8 ms/slice |" if args.int8 else ""
    print(f"| network | threads | batch | PyTorch / ONNX Runtime | PyTorch ms/slice | ONNX Runtime ms/slice |{int8}")
    print("|---|---:|---:|---:|---:|---:|" + "---:|---:|" * args.int8)
    backends = ("torch", "onnx", "int8") if args.int8 else ("torch", "onnx")
    for label, make in networks(args.sizes):
        for threads in args.threads:
            torch.set_num_threads(threads)  # ONNX Runtime sessions take the same count (backends.OnnxNetwork)
            for n in args.batches:
                ms = side_by_side({b: make(b, n) for b in backends}, args.repeats, n)
                extra = f" **{ms['onnx'] / ms['int8']:.2f}x** | {ms['int8']:.0f} |" if args.int8 else ""
                print(f"| {label} | {threads} | {n} | **{ms['torch'] / ms['onnx']:.2f}x** | {ms['torch']:.0f} | {ms['onnx']:.0f} |{extra}",
                      flush=True)


def end_to_end(repeats: int) -> None:
    """`medinpaint predict` on the bundled samples as a new process, each variant once per repeat, in turn."""
    exe = [sys.executable, "-m", "medinpaint", "predict", "-i", str(sample_dir()), "--no-progress"]
    warm = tempfile.mkdtemp(prefix="onnx-cache-")
    variants = {"PyTorch": ("torch", warm), "ONNX Runtime, export cached": ("onnx", warm),
                "ONNX Runtime, empty cache (export included)": ("onnx", "fresh")}
    times: dict[str, list[float]] = {k: [] for k in variants}
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([*exe, "-o", f"{out}/warm", "--backend", "onnx"], check=True, capture_output=True,
                       env={**os.environ, "MEDINPAINT_CACHE": warm})
        for r in range(repeats):
            for v, (name, (backend, cache)) in enumerate(variants.items()):
                env = {**os.environ, "MEDINPAINT_CACHE": cache if cache != "fresh" else tempfile.mkdtemp(prefix="onnx-cache-")}
                start = time.perf_counter()
                subprocess.run([*exe, "-o", f"{out}/{r}-{v}", "--backend", backend],
                               check=True, capture_output=True, env=env)
                times[name].append(time.perf_counter() - start)
    print("\n| `medinpaint predict`, 12 bundled samples, a new process | median s | runs |")
    print("|---|---:|---:|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.2f} | {len(values)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", action="store_true", help="also untrained U-Nets of larger sizes")
    parser.add_argument("--end-to-end", action="store_true", help="also `medinpaint predict` as a new process")
    parser.add_argument("--int8", action="store_true", help="also the int8 backend")
    args = parser.parse_args()
    import onnxruntime

    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, {os.cpu_count()} CPUs\n")
    grid(args)
    if args.end_to_end:
        end_to_end(args.repeats)


if __name__ == "__main__":
    main()
