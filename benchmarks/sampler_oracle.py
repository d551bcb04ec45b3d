"""DDIM against DPM-Solver++(2M) with the exact denoiser of N(0.2, 0.3^2) data: the spread of the samples (0.3 is
exact) at 5, 10 and 25 steps, for two spacings of the steps in time.

    .venv/bin/python benchmarks/sampler_oracle.py

The oracle is the one `tests/test_synthesis.py` drives the samplers with; the same seed and 64 samples of 16x16.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_synthesis import oracle_for_gaussian  # noqa: E402

from medinpaint.synthesis.diffusion import Diffusion  # noqa: E402


def main() -> None:
    diffusion = Diffusion()
    net = oracle_for_gaussian(diffusion, mean=0.2, std=0.3)
    spacings = {"linear": "even in t from t = 999", "logsnr": "even in log-SNR from -5.1"}
    print("| time spacing | DDIM | DPM-Solver++(2M) |\n|---|---|---|")
    real_step_times = diffusion.step_times
    for spacing, label in spacings.items():
        diffusion.step_times = lambda steps, _=None, s=spacing: real_step_times(steps, s)  # both solvers on this spacing
        cells = []
        for solver in ("ddim", "dpm++"):
            spread = [float(diffusion.sample(net, torch.zeros(64, dtype=torch.long), (64, 1, 16, 16),
                                             torch.Generator().manual_seed(0), steps=k, solver=solver).std())
                      for k in (5, 10, 25)]
            cells.append(" / ".join(f"{v:.3f}" for v in spread))
        print(f"| {label} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
