"""Where a run reports itself: `log.csv` (one row per logged step), TensorBoard event files in `tensorboard/`
(what users of this field open first), `progress.png`, and the console: a progress bar on a terminal, plain
periodic lines in a log file."""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path
from typing import IO

from tqdm.auto import tqdm

BASE_FIELDS = ("step", "elapsed_s", "lr", "loss", "images_per_s")
LINE_EVERY_S = 30.0  # plain progress lines when stderr is not a terminal


def _tensorboard(folder: Path, initial: int):  # -> tensorboardX.SummaryWriter | None
    """The event writer; a run resumed at step `initial` purges the events logged after it (as log.csv's rows
    are dropped), so TensorBoard shows no step twice."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        print("note: tensorboardX is not installed; no TensorBoard event files for this run", file=sys.stderr)
        return None
    return SummaryWriter(logdir=str(folder), flush_secs=30, purge_step=initial or None)


class RunLog:
    """Rows go to the CSV (appended on resume, header once) and to TensorBoard; `show` keeps the console current.
    Everything is a no-op on processes other than the main one (`enabled=False`)."""

    def __init__(self, output: Path, val_fields: tuple[str, ...], enabled: bool, progress: bool, total: int | None,
                 initial: int, desc: str) -> None:
        self.fields = (*BASE_FIELDS, *val_fields)
        self.enabled, self.total = enabled, total
        self.file: IO[str] | None = None
        self.writer: csv.DictWriter | None = None
        self.tb = None
        if enabled:
            _drop_rows_after(output / "log.csv", initial)
            self.file = open(output / "log.csv", "a", newline="")
            self.writer = csv.DictWriter(self.file, self.fields)
            if self.file.tell() == 0:
                self.writer.writeheader()
            self.tb = _tensorboard(output / "tensorboard", initial)
        terminal = sys.stderr.isatty()
        self.bar = tqdm(total=total, initial=initial, unit="step", desc=desc, disable=not (enabled and progress and terminal))
        self.lines = enabled and progress and not terminal
        self.desc, self.last_line = desc, time.monotonic()

    def row(self, values: dict[str, float | int]) -> None:
        """One logged step: `values` has the base fields and any validation measures of this step."""
        if not self.enabled:
            return
        self.writer.writerow({k: _fmt(k, v) for k, v in values.items()})
        self.file.flush()
        if self.tb is not None:
            step = int(values["step"])
            for k, v in values.items():
                if k != "step":
                    self.tb.add_scalar(k.replace("val_", "val/", 1) if k.startswith("val_") else f"train/{k}", float(v), step)

    def show(self, step: int, values: dict[str, float | int], final: bool = False) -> None:
        """Advance the bar to `step`; on a log file, print a plain line every LINE_EVERY_S seconds and at the
        `final` step (whichever budget ended the run)."""
        self.bar.update(step - self.bar.n)
        shown = {k: _fmt(k, v) for k, v in values.items() if k in ("loss", "images_per_s") or k.startswith("val_")}
        if shown:
            self.bar.set_postfix(shown, refresh=False)
        if self.lines and (time.monotonic() - self.last_line >= LINE_EVERY_S or final):
            of = f"/{self.total}" if self.total else ""
            print(f"{self.desc}: step {step}{of} " + " ".join(f"{k} {v}" for k, v in shown.items()), file=sys.stderr, flush=True)
            self.last_line = time.monotonic()

    def close(self) -> None:
        self.bar.close()
        if self.file:
            self.file.close()
        if self.tb is not None:
            self.tb.close()


FORMATS = {"step": "{:.0f}", "lr": "{:.3e}", "elapsed_s": "{:.2f}", "images_per_s": "{:.1f}", "loss": "{:.5f}"}


def _fmt(name: str, value: float | int) -> str:
    """How each column is written; validation measures get 4 decimals."""
    return FORMATS.get(name, "{:.4f}").format(value)


def _drop_rows_after(log_csv: Path, step: int) -> None:
    """Rows logged after the step a run resumes from were lost with the process (a crash, `kill -9`) and are
    logged again: keep the log in step order, once each (and drop a row the kill cut short)."""
    if not log_csv.exists():
        return
    with open(log_csv, newline="") as f:
        lines = f.read().splitlines(keepends=True)

    def before(line: str) -> bool:
        first = line.split(",", 1)[0]
        return line.endswith("\n") and first.isdigit() and int(first) <= step

    kept = lines[:1] + [line for line in lines[1:] if before(line)]
    if len(kept) < len(lines):
        log_csv.write_text("".join(kept))


def training_seconds(run: Path) -> float:
    """The training time of the run in `run` as the engine counts it (its last log row's `elapsed_s`: training
    only, summed across resumes), for tables that compare runs."""
    with open(Path(run) / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return float(rows[-1]["elapsed_s"]) if rows else 0.0
