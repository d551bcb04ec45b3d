"""Samples per second of the synthesis models, for each sampler and step count, through the public API.

    .venv/bin/python benchmarks/synth_speed.py --size 64 --n 32 --batch-size 16 --runs ddim:10 ddim:25 ddim:50 ddpm:100 vae
    python3 benchmarks/synth_speed.py --size 64 --device cuda --n 8192 --batch-size 2048 --compile --weights W

Without --weights it times untrained networks of the default config for the size (speed does not depend on the
weights). The clock covers `SliceGenerator.sample` whole: noise, network, tissue quantisation and the copy back
to numpy, after one warm-up batch. Prints (and with --json appends) one JSON object per run.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace
from pathlib import Path

import torch

from medinpaint.checkpoint import CheckpointMeta, Training
from medinpaint.constants import VERTEBRA_LEVELS
from medinpaint.synthesis.diffusion import Diffusion
from medinpaint.synthesis.generator import SliceGenerator, load_generator
from medinpaint.synthesis.registry import KINDS, PREPROCESSING, build_network, network_config


def generator(model: str, size: int, weights: Path | None, device: str, compile: bool) -> SliceGenerator:
    if weights is not None:
        return load_generator(weights, size, device=device, compile=compile)
    config = network_config(model, size)
    meta = CheckpointMeta(kind=KINDS[model], config=config.to_dict(), preprocessing=replace(PREPROCESSING[model], size=size),
                          training=Training(vertebra_counts=[1] * VERTEBRA_LEVELS),
                          schedule=Diffusion(1000).to_dict() if model == "diffusion" else None)
    net = build_network(model, config)
    return SliceGenerator(net, model, meta, device=device, compile=compile, name=f"untrained {model} {size}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--weights", type=Path, help="a diffusion checkpoint (the VAE run then uses an untrained VAE)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n", type=int, default=32, help="samples per timed run")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--runs", nargs="+", default=["ddim:10", "ddim:25", "ddim:50", "ddpm:100", "vae"])
    parser.add_argument("--json", type=Path, help="append the results here, one JSON object a line")
    args = parser.parse_args()
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else f"{platform.processor() or 'cpu'}, {torch.get_num_threads()} threads"
    gens = {}
    for run in args.runs:
        model = "vae" if run == "vae" else "diffusion"
        sampler, steps = (None, None) if model == "vae" else (run.split(":")[0], int(run.split(":")[1]))
        if model not in gens:
            gens[model] = generator(model, args.size, args.weights if model == "diffusion" else None, args.device, args.compile)
        gen = gens[model]
        gen.sample(min(args.n, args.batch_size), steps=steps if model == "diffusion" else None, sampler=sampler,
                   batch_size=args.batch_size)  # warm-up (and compilation)
        start = time.perf_counter()
        gen.sample(args.n, seed=1, steps=steps, sampler=sampler, batch_size=args.batch_size)
        seconds = time.perf_counter() - start
        result = {"model": gen.name, "size": args.size, "run": run, "n": args.n, "batch_size": args.batch_size,
                  "compile": args.compile, "device": device_name, "seconds": round(seconds, 3), "samples_per_s": round(args.n / seconds, 3)}
        print(json.dumps(result), flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
