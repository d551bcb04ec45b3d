"""`medinpaint compare --tune ARCH`: a small hyper-parameter search for one architecture with Optuna (TPE, seeded):
learning rate, optimizer, width and, where the architecture has it, dropout. Each trial is one more run of the
comparison (the same slices, masks, validation slices and budget), a row of the same results.csv with its
hyper-parameters, and a run folder with the engine's own log.csv and TensorBoard files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

from medinpaint.errors import InputError, StoppedEarly
from medinpaint.models.architectures import ARCHITECTURES

if TYPE_CHECKING:
    from medinpaint.compare import CompareConfig

LR_RANGE = (3e-4, 1e-2)
OPTIMIZERS = ("adamw", "adam", "sgd")
WIDTHS = (8, 16, 24, 32)
DROPOUTS = (0.0, 0.1, 0.2)


def tune(run: Callable[..., dict], cfg: CompareConfig, runs: Path) -> list[dict]:
    """`cfg.trials` trials of `cfg.tune` with the first loss the comparison trains it with (its own objective for
    a denoising architecture); `run(folder, arch, loss, seed, network, training)` trains and scores one. Returns
    the trials' rows."""
    try:
        import optuna
    except ImportError:
        raise InputError("--tune needs Optuna: pip install optuna (or pip install 'medinpaint[tune]')") from None
    from medinpaint.compare import VARIANTS, losses_of

    arch = cfg.tune
    base = VARIANTS.get(arch, (arch,))[0]  # unet-gan tunes the U-Net's settings
    if base not in ARCHITECTURES:
        raise InputError(f"--tune takes one of {', '.join([*ARCHITECTURES, *VARIANTS])}, got {arch!r}")
    loss = losses_of(arch, cfg)[0]
    has_dropout = "dropout" in {f.name for f in fields(ARCHITECTURES[base][0])}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=0))
    rows: list[dict] = []
    stopped: list[StoppedEarly | InputError] = []

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", *LR_RANGE, log=True)
        optimizer = trial.suggest_categorical("optimizer", OPTIMIZERS)
        width = trial.suggest_categorical("base_channels", WIDTHS)
        dropout = trial.suggest_categorical("dropout", DROPOUTS) if has_dropout else 0.0
        network = {"base_channels": width, **({"dropout": dropout} if has_dropout else {})}
        if cfg.progress:
            print(f"[trial {trial.number + 1}/{cfg.trials}] {arch}: lr {lr:.2e}, {optimizer}, width {width}, dropout {dropout}",
                  flush=True)
        try:
            row = run(runs / f"{arch}-tune-{trial.number}", arch, loss, 0, network, {"lr": lr, "optimizer": optimizer})
        except (StoppedEarly, InputError) as stop:  # a SIGTERM or a refused setting: end the search quietly (Optuna
            # would log a failed trial's traceback), and raise it after
            stopped.append(stop)
            study.stop()
            raise optuna.TrialPruned() from None
        row.update(trial=trial.number, lr=lr, optimizer=optimizer, base_channels=width, dropout=dropout)
        rows.append(row)
        return float(row["mae"])

    study.optimize(objective, n_trials=cfg.trials)
    if stopped:
        raise stopped[0]  # the command exits as a stopped run (or a refused one) does; the work folder keeps every trial
    return rows
