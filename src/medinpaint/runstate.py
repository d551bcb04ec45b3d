"""What every training loop keeps in its run folder: the resumable `last.pt` state and the CSV log.

Shared by the inpainting loop (`medinpaint.training`) and the synthesis loop (`medinpaint.synthesis.trainer`),
so a run of either resumes the same way after a crash or a 10-minute GPU call.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

import torch
from torch import nn

from medinpaint.errors import InputError


def resume(path: Path, matches: Callable[[dict], bool], mismatch: str, model: nn.Module, ema: nn.Module,
           opt: torch.optim.Optimizer, say: Callable[[str], None] = print) -> tuple[int, float]:
    """Load `path` (if it exists) into model, EMA model and optimizer; (step, elapsed seconds) to go on from.
    `matches(saved_config)` says whether the saved run is this one; if not, `mismatch` is the error."""
    if not path.exists():
        return 0, 0.0
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not matches(state["config"]):
        raise InputError(f"{path}: {mismatch}; use a new --output or --overwrite")
    model.load_state_dict(state["model"])
    ema.load_state_dict(state["ema"])
    opt.load_state_dict(state["optimizer"])
    say(f"resuming from {path} at step {state['step']} ({state['elapsed_s'] / 60:.1f} min trained)")
    return state["step"], state["elapsed_s"]


def save(path: Path, model: nn.Module, ema: nn.Module, opt: torch.optim.Optimizer, step: int, elapsed: float, config: dict) -> None:
    """Write the resumable state atomically (a crash mid-write leaves the previous `last.pt`)."""
    state = {"model": model.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(), "step": step,
             "elapsed_s": elapsed, "config": config}
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def open_log(path: Path, fields: Sequence[str]) -> tuple[IO[str], csv.DictWriter]:
    """The run's CSV log, appended to on resume; the header is written once."""
    f = open(path, "a", newline="")
    writer = csv.DictWriter(f, fields)
    if f.tell() == 0:
        writer.writeheader()
    return f, writer
