"""What every `medinpaint` command shares: option types, the device choice, and one-line errors."""

from __future__ import annotations

import functools
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from medinpaint.errors import InputError, StoppedEarly

DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda, or auto (cuda when available)")]
NoProgress = Annotated[bool, typer.Option("--no-progress", help="hide progress bars")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="replace an existing output (a folder only if medinpaint wrote all it holds; a run folder: start a fresh run)")]
Compile = Annotated[bool, typer.Option("--compile", help="torch.compile the network (GPU)")]
WeightsDtype = Annotated[str, typer.Option(help="dtype of the exported weights: float32, float16 or bfloat16")]
RunFolder = Annotated[Path, typer.Option("--output", "-o", help="run folder (resumed if it holds last.pt)")]
PeakLr = Annotated[float, typer.Option(help="peak learning rate")]
Crop = Annotated[int | None, typer.Option(help="train on random square crops of this size")]
ValEvery = Annotated[int, typer.Option(help="validate every N steps")]
Minutes = Annotated[float | None, typer.Option(help="training-time budget, in total across resumes")]
Steps = Annotated[int | None, typer.Option(help="optimizer-step budget, in total across resumes")]
Backend = Annotated[str, typer.Option("--backend", help="auto (ONNX Runtime on CPU when installed, else PyTorch), torch, onnx, or int8 (ONNX Runtime with 8-bit convolutions: faster for batches on few CPU cores, a little less accurate)")]
Seed = Annotated[int, typer.Option(min=0, help="random seed")]  # numpy's generators take none below 0
BatchSize = Annotated[int, typer.Option("--batch-size", min=1, help="slices per step (training: per process) or per forward pass")]
Init = Annotated[str | None, typer.Option("--init", help="fine-tune: start from this checkpoint ('default': the shipped one); "
                                          "the network's shape options default to its own")]


def network_to_train(config_type: type, init: str | None, shipped: Callable[[], Path], kinds: tuple[str, ...],
                     defaults: dict[str, Any], given: dict[str, Any]) -> tuple[Any, str | None]:
    """(network config, checkpoint path or None) for a training command: the `--init` checkpoint's network (or
    `defaults`), with the shape options the user gave (those not None) on top, so fine-tuning needs no repeated
    flags; a given option that contradicts the checkpoint is refused when the engine loads its weights."""
    from dataclasses import asdict

    from medinpaint.checkpoint import config_from, read_metadata

    chosen = {k: v for k, v in given.items() if v is not None}
    if init is None:
        return config_type(**{**defaults, **chosen}), None
    path = shipped() if init == "default" else Path(init)
    meta = read_metadata(path)
    if meta.kind not in kinds:
        raise InputError(f"{path}: --init needs a checkpoint of a {' or '.join(map(repr, kinds))} network, this one is {meta.kind!r}")
    return config_type(**{**asdict(config_from(meta, config_type, path)), **chosen}), str(path)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Print a user's mistake as one line on stderr and exit 2, instead of a traceback. A SIGTERM (`kill`, a
    scheduler) ends the command as Ctrl-C does, through its cleanup, so no half-written output is left behind
    (training, which stops cleanly on SIGTERM, sets its own handler while it runs and has said what it saved):
    either way the exit status is 143, never the 0 of a finished command."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm) if main else None
        try:
            return fn(*args, **kwargs)
        except InputError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        except StoppedEarly as exc:
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted: nothing unfinished was put in place; what can be resumed (a run's last.pt, a "
                       "study's finished runs) is kept, and the same command goes on from it", err=True)
            raise typer.Exit(130) from None
        finally:
            if main:
                signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)

    return wrapper


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def resolve_device(device: str) -> str:
    import torch

    from medinpaint.devices import check_device

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise InputError(f"--device must be cpu, cuda or auto, got {device!r}")
    return check_device(device)
