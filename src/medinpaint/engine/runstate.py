"""What a run keeps in its folder to go on after a crash or a 10-minute GPU call: `last.pt`, and the rules for
starting a run in a folder (fresh, fine-tuned from exported weights, resumed, or refused).

`last.pt` holds only tensors, numbers, strings and containers, so it is read back with `weights_only=True`:
a checkpoint from elsewhere cannot run code on load.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medinpaint.checkpoint import Preprocessing, file_checksum, load_checkpoint, load_state
from medinpaint.errors import InputError

LAST = "last.pt"
RUN_FILES = (LAST, "last.tmp", "log.csv", "config.json", "progress.png", "model.safetensors", "tensorboard")
EARLY_FILES = ("last.tmp", "log.csv", "config.json", "tensorboard")  # what a run has written before its first last.pt
# engine settings a resumed run may change without a word: its budget, and how it logs, checkpoints and exports
FREE_ON_RESUME = ("steps", "minutes", "init", "compile", "weights_dtype", "val_every", "log_every", "checkpoint_every_s")


@dataclass
class Resumed:
    """Where a resumed run goes on from, and what it was started with."""

    step: int = 0
    elapsed_s: float = 0.0
    config: dict = field(default_factory=dict)  # the engine settings it was saved with
    started_from: str | None = None  # the weights it was fine-tuned from ("" from scratch; None: not recorded)
    rng: dict[str, torch.Tensor] | None = None  # the random states at the save (None: saved before they were kept)


def _written_by_the_engine(config: Path) -> bool:
    """Whether `config` is the config.json a run writes first (a folder of a user's own files by those names is not
    a killed run, and is never cleared)."""
    try:
        written = json.loads(config.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(written, dict) and {"kind", "engine"} <= written.keys()


def prepare_folder(output: Path, overwrite: bool) -> None:
    """Make `output` ready: `overwrite` removes every file of an earlier run (and nothing else); without it, a
    non-empty folder must hold a run to resume, or only what a run killed before its first checkpoint left (which
    is cleared: there is nothing to resume)."""
    if output.exists() and not output.is_dir():
        raise InputError(f"{output}: is a file; the output of a training run is a folder")
    if not overwrite and output.exists() and not (output / LAST).exists():
        entries = {p.name for p in output.iterdir()}
        if entries and entries <= set(EARLY_FILES) and _written_by_the_engine(output / "config.json"):
            overwrite = True
    if overwrite:
        for name in RUN_FILES:
            path = output / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    elif output.exists() and any(output.iterdir()) and not (output / LAST).exists():
        raise InputError(f"{output}: already exists and holds no checkpoint to resume (pass --overwrite)")
    output.mkdir(parents=True, exist_ok=True)


def identity(kind: str, network_config: Any, **key: Any) -> dict:
    """What a resumed run must share with the saved one: the network's kind and config, and `key` (e.g. size)."""
    return {"kind": kind, "network": asdict(network_config), **key}


def same_run(saved: dict, current: dict, config_type: type) -> bool:
    """Whether a saved identity is the current run's. The saved network config is rebuilt as a dataclass, so a
    field added since (with its default) does not break resuming."""
    if saved.keys() != current.keys() or any(saved[k] != current[k] for k in current if k != "network"):
        return False
    try:
        rebuilt = config_type(**saved["network"])
    except (TypeError, ValueError):
        return False
    return is_dataclass(rebuilt) and asdict(rebuilt) == current["network"]


def resume(path: Path, current: dict, config_type: type, network: nn.Module, ema: nn.Module, opt: torch.optim.Optimizer,
           say: Callable[[str], None] = print, critic: nn.Module | None = None,
           critic_opt: torch.optim.Optimizer | None = None) -> Resumed:
    """Load `path` (if it exists) into network, EMA network and optimizer (and the critic and its optimizer, for a
    task that has one); where to go on from."""
    if not path.exists():
        return Resumed()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (any unreadable file is the same user problem)
        raise InputError(f"{path}: not a readable run checkpoint ({type(exc).__name__}); use a new --output or --overwrite") from None
    if "identity" not in state or not same_run(state["identity"], current, config_type):
        raise InputError(f"{path}: checkpoint of another network, config or data size; use a new --output or --overwrite")
    if critic is not None and "critic" not in state:
        raise InputError(f"{path}: saved without an adversarial critic; resume it without one, or use a new --output")
    network.load_state_dict(state["network"])
    ema.load_state_dict(state["ema"])
    _load_optimizer(opt, state["optimizer"])
    if critic is not None and critic_opt is not None:
        critic.load_state_dict(state["critic"])
        _load_optimizer(critic_opt, state["critic_optimizer"])
    say(f"resuming from {path} at step {state['step']} ({state['elapsed_s'] / 60:.1f} min trained)")
    return Resumed(state["step"], state["elapsed_s"], state.get("config", {}), state.get("started_from"), state.get("rng"))


def _load_optimizer(opt: torch.optim.Optimizer, saved: dict) -> None:
    """The saved moments, with this run's settings: loading puts back the saved weight decay (and betas, momentum),
    so they are set again from the optimizer as built now; the learning rate is the schedule's, every step."""
    opt.load_state_dict(saved)
    for group in opt.param_groups:
        group.update({k: v for k, v in opt.defaults.items() if k != "lr"})


def random_states(batches: torch.Generator) -> dict[str, torch.Tensor]:
    """What a resumed run needs to draw the numbers an uninterrupted one would: the batch generator's state and
    torch's global ones (dropout draws from them)."""
    states = {"batches": batches.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def restore_random_states(states: dict[str, torch.Tensor], batches: torch.Generator) -> bool:
    """Put the saved states back; False when the batch generator's was saved on another kind of device (a run
    begun on the GPU and resumed on the CPU, say): its state does not fit this one, which keeps its own seed."""
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])
    try:
        batches.set_state(states["batches"])
    except RuntimeError:
        return False
    return True


def changed_settings(saved: dict, current: dict) -> list[str]:
    """The engine settings (learning rate, loss, batch size, ...) a resumed run has other than it was saved with."""
    return [f"{k} {saved[k]!r} -> {current[k]!r}" for k in current
            if k in saved and k not in FREE_ON_RESUME and k != "network" and saved[k] != current[k]]


def start_from(path: Path, kind: str, network_config: Any, preprocessing: Preprocessing, network: nn.Module,
               ema: nn.Module) -> None:
    """Fine-tuning: put the exported weights of `path` (a checkpoint of the same kind and network config) into the
    network and its EMA copy, so a fresh run (its own optimizer, schedule and budget) starts from them."""
    state, meta = load_checkpoint(path, kind, preprocessing)
    if meta.preprocessing.size != preprocessing.size:
        raise InputError(f"{path}: its network works at size {meta.preprocessing.size}, this run at {preprocessing.size}")
    wanted = json.loads(json.dumps(asdict(network_config)))  # as stored: tuples become lists
    differ = sorted(k for k, v in meta.config.items() if k not in wanted or wanted[k] != v)  # fields added since: defaults
    if differ:
        raise InputError(f"{path}: its network differs from the one to train ({differ[0]}: {meta.config[differ[0]]!r} "
                         f"against {wanted.get(differ[0])!r})")
    load_state(network, state, path)
    ema.load_state_dict(network.state_dict())


def origin(path: Path) -> str:
    """How a checkpoint records the weights it was fine-tuned from: their file name and sha256."""
    return f"{Path(path).name} sha256:{file_checksum(path)[:12]}"


def save(path: Path, current: dict, network: nn.Module, ema: nn.Module, opt: torch.optim.Optimizer, step: int, elapsed: float,
         config: dict, critic: nn.Module | None = None, critic_opt: torch.optim.Optimizer | None = None,
         started_from: str = "", rng: dict[str, torch.Tensor] | None = None) -> None:
    """Write the resumable state atomically (a crash mid-write leaves the previous `last.pt`)."""
    state = {"identity": current, "network": network.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(),
             "step": step, "elapsed_s": elapsed, "config": config, "started_from": started_from}
    if rng is not None:
        state["rng"] = rng
    if critic is not None and critic_opt is not None:
        state |= {"critic": critic.state_dict(), "critic_optimizer": critic_opt.state_dict()}
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
