"""Sample quality against sampling cost: one trained diffusion generator, each sampler at each step count.

    .venv/bin/python benchmarks/sampler_quality.py --data packed/synth-64 --weights W --encoder E \
        [--runs ddim:10 ddim:25 ddim:50 dpm++:5 dpm++:10 dpm++:20] [-n 2000] [--device cuda] [--json OUT.jsonl]

For each run: Fréchet distance, precision and recall in the encoder's features against the same real training
slices `medinpaint synth report` uses (the same RealReference, the same seed: one table with the report's), the
held-out real slices' own figures as the floor, and samples/s of the whole `SliceGenerator.sample` call. Prints one
JSON object per run (and appends it to --json), then a markdown table with each run's Fréchet distance as a ratio
to DDIM at 50 steps (issue 14's target: within 10 % at 10 steps or fewer).
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import torch

from medinpaint.data import read_slices
from medinpaint.synthesis.data import require_triples
from medinpaint.synthesis.features import encode
from medinpaint.synthesis.generator import load_generator
from medinpaint.synthesis.registry import load_network
from medinpaint.synthesis.report import RealReference, ReportConfig

REFERENCE_RUN = "ddim:50"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the slices the generator was trained on")
    parser.add_argument("--weights", type=Path, required=True, help="a diffusion checkpoint")
    parser.add_argument("--encoder", type=Path, required=True, help="a `synth train --model encoder` checkpoint")
    parser.add_argument("--runs", nargs="+", default=["ddim:10", "ddim:25", "ddim:50", "dpm++:5", "dpm++:10", "dpm++:20"])
    parser.add_argument("-n", type=int, default=2000, help="samples per run (and at most this many real slices)")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="append the results here, one JSON object a line")
    args = parser.parse_args()
    slices = read_slices(args.data)
    require_triples(slices, str(args.data))
    gen = load_generator(args.weights, device=args.device)
    encoder, _ = load_network(args.encoder, "encoder")
    features = functools.partial(encode, encoder, device=args.device, progress=False)
    cfg = ReportConfig(n=args.n, seed=args.seed, device=args.device, progress=False)
    real = RealReference(slices, gen.size, cfg, features)
    floor = real.fidelity(real.heldout_features)
    device = torch.cuda.get_device_name() if args.device == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    results = []
    for run in args.runs:
        sampler, steps = run.split(":")[0], int(run.split(":")[1])
        start = time.perf_counter()
        samples = gen.sample(args.n, seed=args.seed, steps=steps, sampler=sampler, batch_size=args.batch_size)
        seconds = time.perf_counter() - start
        result = {"run": run, "sampler": sampler, "steps": steps, "n": args.n, **real.fidelity(features(samples.images)),
                  "samples_per_s": args.n / seconds, "heldout_fid": floor["fid"], "model": gen.name, "device": device}
        results.append(result)
        print(json.dumps(result), flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(result) + "\n")
    base = next((r["fid"] for r in results if r["run"] == REFERENCE_RUN), None)
    print(f"\n| sampler | steps | FD | FD / {REFERENCE_RUN} | precision | recall | samples/s |\n|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        ratio = f"{r['fid'] / base:.2f}" if base else "-"
        print(f"| {r['sampler']} | {r['steps']} | {r['fid']:.2f} | {ratio} | {r['precision']:.3f} | {r['recall']:.3f} | {r['samples_per_s']:.1f} |")
    print(f"| held-out real slices | - | {floor['fid']:.2f} | | {floor['precision']:.3f} | {floor['recall']:.3f} | |")


if __name__ == "__main__":
    main()
