"""Which int8 quantization of the shipped CT inpainter to ship: MAE and speed of a few recipes, side by side.

    .venv/bin/python benchmarks/int8_recipes.py --data VAL [--limit 500] [--calibrate DIR]

VAL is a DM-i-AI folder of validation patients (450-499, linked as `ct_validation.sh` does). Every recipe is
calibrated on the bundled sample cases (what `--backend int8` does) and scored on the same slices against the
float export; ms per slice at batch 8 on the machine's threads. The recipe `medinpaint.backends.quantize_int8`
uses is the last row; `--calibrate DIR` adds it calibrated on DIR's slices instead (training patients, say).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from medinpaint.backends import OnnxNetwork, export_onnx, quantize_int8
from medinpaint.data import read_slices
from medinpaint.evaluation import score
from medinpaint.inference import Inpainter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--calibrate", type=Path, default=None, help="also the shipped recipe calibrated on this folder")
    args = parser.parse_args()
    model = Inpainter.from_pretrained(backend="torch")
    val = read_slices(args.data)
    val = val.subset(np.arange(min(args.limit, len(val))))
    float_graph = export_onnx(model.network, model._example(), model.INPUT_NAMES)
    batches = model._calibration()
    int8 = lambda **kw: quantize_int8(float_graph, model.INPUT_NAMES, batches, **kw)  # noqa: E731
    graphs = {
        "float (the onnx backend)": float_graph,
        "every operator, min-max": int8(operators=None, keep_ends=False, percentile=False),
        "every operator, percentile": int8(operators=None, keep_ends=False),
        "Conv only, min-max": int8(keep_ends=False, percentile=False),
        "Conv only, first and last in float, min-max": int8(percentile=False),
        "Conv only, first and last in float, percentile (shipped)": int8(),
    }
    if args.calibrate:
        graphs[f"the same, calibrated on {args.calibrate}"] = quantize_int8(
            float_graph, model.INPUT_NAMES, model._calibration(args.calibrate))
    print(f"{len(val)} slices of {args.data}\n\n| recipe | MAE | MAE in mask | ms / slice |\n|---|---:|---:|---:|")
    for name, graph in graphs.items():
        model.runners = [OnnxNetwork(graph, model.INPUT_NAMES, model.network.stride)]
        model.predict_slices(val.subset(np.arange(8)), batch_size=8)  # warm-up
        start = time.perf_counter()
        filled = model.predict_slices(val, batch_size=8)
        ms = 1000 * (time.perf_counter() - start) / len(val)
        agg = score(val, filled).aggregate()
        print(f"| {name} | {agg['mae']:.4f} | {agg['mae_in_mask']:.3f} | {ms:.0f} |", flush=True)


if __name__ == "__main__":
    main()
