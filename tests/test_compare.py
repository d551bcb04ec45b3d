"""`medinpaint compare` on phantoms: every (architecture, loss, seed) row, the same validation slices, the files."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from medinpaint.cli import app
from medinpaint.compare import fill_metrics
from medinpaint.data.slices import SliceSet


def test_compare_writes_a_row_per_run_and_the_report(phantom_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    args = ["compare", "--data", phantom_dataset, "-o", out, "--architectures", "unet,ffc", "--architecture", "diffusion",
            "--loss", "l1", "--loss", "ssim", "--steps", "2", "--minutes", "5", "--seeds", "2", "--batch-size", "2",
            "--base-channels", "8", "--size", "0", "--no-progress"]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    expected = [(a, loss, s) for a in ("unet", "ffc") for loss in ("l1", "ssim") for s in ("0", "1")]
    expected += [("diffusion", "v-mse", s) for s in ("0", "1")]  # its own objective, once per seed
    assert sorted((r["architecture"], r["loss"], r["seed"]) for r in rows) == sorted(expected)
    assert {r["steps"] for r in rows} == {"2"} and all(0 <= float(r["fat_dice"]) <= 1 for r in rows)
    assert all(0 < float(r["mae"]) < 255 and float(r["parameters"]) > 0 for r in rows)
    table = (out / "results.md").read_text()
    assert "| ffc | ssim |" in table and " ± " in table  # two seeds: a spread
    assert (out / "curves.png").stat().st_size > 1000 and (out / "cases.png").stat().st_size > 1000
    bad = CliRunner().invoke(app, ["compare", "--data", str(phantom_dataset), "-o", str(tmp_path / "x"), "--architecture", "vit"])
    assert bad.exit_code == 2 and "unknown architecture 'vit'" in bad.output and not (tmp_path / "x").exists()


def test_tuning_adds_optuna_trials_to_the_same_table(phantom_dataset: Path, tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    out = tmp_path / "tuned"
    args = ["compare", "--data", phantom_dataset, "-o", out, "--architecture", "unet", "--steps", "2", "--minutes", "5",
            "--batch-size", "2", "--base-channels", "8", "--size", "0", "--tune", "unet", "--trials", "3", "--no-progress"]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    trials = [r for r in rows if r["trial"] != ""]
    assert len(rows) == 4 and [r["trial"] for r in trials] == ["0", "1", "2"]
    assert all(r["optimizer"] in ("adamw", "adam", "sgd") and 3e-4 <= float(r["lr"]) <= 1e-2 for r in trials)
    assert all((out / "runs" / f"unet-tune-{k}" / "tensorboard").is_dir() for k in range(3))
    text = (out / "results.md").read_text()
    assert "Tuning unet (3 Optuna trials" in text and "chosen on these validation slices, so its MAE is optimistic" in text


def test_a_step_budget_alone_is_not_capped_by_minutes() -> None:
    from medinpaint.compare import CompareConfig

    assert CompareConfig(steps=400).minutes is None and CompareConfig().minutes == 2.0


def test_an_interrupted_comparison_goes_on_where_it_stopped(phantom_dataset: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """An hour of runs is not lost to Ctrl-C: the finished runs are kept, the one cut short (here in its second
    step) resumes from its last.pt, and the report is the same as an uninterrupted one's, to the last digit."""
    from medinpaint import compare as cmp
    from medinpaint.training import InpaintingTask

    cfg = cmp.CompareConfig(architectures=("unet",), losses=("l1",), steps=3, seeds=3, batch_size=2, base_channels=8,
                            size=None, progress=False)
    steps: list[int] = []
    real_loss = InpaintingTask.loss

    def interrupted(self, *args):
        steps.append(1)
        if len(steps) == 3 + 3 + 2:  # two runs of 3 steps, then the third run's second step
            raise KeyboardInterrupt
        return real_loss(self, *args)

    monkeypatch.setattr(InpaintingTask, "loss", interrupted)
    out = tmp_path / "report"
    with pytest.raises(KeyboardInterrupt):
        cmp.compare(phantom_dataset, out, cfg)
    monkeypatch.undo()
    work = tmp_path / ".report.partial"
    assert not out.exists() and (work / "runs" / "unet-l1-s1" / "row.json").is_file()
    assert torch.load(work / "runs" / "unet-l1-s2" / "last.pt", weights_only=True)["step"] == 1
    calls: list[str] = []
    real_run = cmp.run_one
    monkeypatch.setattr(cmp, "run_one", lambda *a: (calls.append(a[4].name), real_run(*a))[1])
    rows = cmp.compare(phantom_dataset, out, cfg)
    assert calls == ["unet-l1-s2"] and [r["seed"] for r in rows] == [0, 1, 2]  # seeds 0 and 1 kept, not run again
    assert not work.exists() and (out / "results.md").is_file() and not (out / ".resume-key").exists()
    again = cmp.compare(phantom_dataset, tmp_path / "fresh", cfg)  # the same runs uninterrupted: the same scores
    assert [r["mae"] for r in again] == [r["mae"] for r in rows]


def test_a_stopped_tuning_trial_ends_the_search_quietly_as_a_stopped_run(capfd: pytest.CaptureFixture) -> None:
    from medinpaint.compare import CompareConfig
    from medinpaint.engine import StoppedEarly
    from medinpaint.tuning import tune

    calls: list[str] = []

    def run(folder, *args):
        calls.append(folder.name)
        if len(calls) == 2:
            raise StoppedEarly("SIGTERM", str(folder / "model.safetensors"))
        return {"mae": 1.0 / len(calls)}

    with pytest.raises(StoppedEarly):
        tune(run, CompareConfig(architectures=("unet",), losses=("l1",), steps=2, tune="unet", trials=4, progress=False), Path("runs"))
    assert calls == ["unet-tune-0", "unet-tune-1"]  # no trial after the stop
    assert "Traceback" not in capfd.readouterr().err  # Optuna logged the stopped trial as a failure, with its traceback


def test_fill_metrics_measure_fat_and_direction_inside_the_mask() -> None:
    """Truth: one fat-valued slice (50, inside -150..-40 HU); the fill gets half the hole right (50) and half as soft
    tissue (150): fat Dice 2*16/(16+32), Jaccard 16/32, cosine 160000/(|a||b|), MAE 16*100/64 over the image."""
    truth = np.full((1, 8, 8), 50, np.uint8)
    mask = np.zeros((1, 8, 8), bool)
    mask[0, :, :4] = True
    filled = truth.copy()
    filled[0, :4, :4] = 150
    val = SliceSet(["0_0"], np.where(mask, 0, truth).astype(np.uint8), mask, truth)
    m = fill_metrics(filled, val)
    a, b = np.r_[np.full(16, 150.0), np.full(16, 50.0)], np.full(32, 50.0)
    assert m["fat_dice"] == pytest.approx(2 / 3) and m["fat_jaccard"] == pytest.approx(0.5)
    assert m["cosine"] == pytest.approx(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))) and m["mae"] == pytest.approx(25.0)
    exact = fill_metrics(truth, val)
    assert exact["fat_dice"] == exact["fat_jaccard"] == pytest.approx(1.0) and exact["mae"] == 0


def test_tuning_trains_with_the_loss_the_comparison_gives_the_architecture_and_refuses_quietly(capfd: pytest.CaptureFixture) -> None:
    from medinpaint.compare import DENOISING_LOSS, CompareConfig
    from medinpaint.errors import InputError
    from medinpaint.tuning import tune

    with pytest.raises(InputError, match="--tune takes one of"):  # at once, not after the comparison has trained
        CompareConfig(architectures=("unet",), steps=2, tune="bogus")
    seen: list[tuple[str, str]] = []

    def run(folder, arch, loss, *args):
        seen.append((arch, loss))
        if arch == "unet-gan":
            raise InputError("refused")
        return {"mae": 1.0}

    tune(run, CompareConfig(architectures=("unet",), losses=("ssim",), steps=2, tune="diffusion", trials=1, progress=False), Path("r"))
    assert seen == [("diffusion", DENOISING_LOSS)]  # its own objective, not the comparison's ssim
    with pytest.raises(InputError, match="refused"):
        tune(run, CompareConfig(architectures=("unet",), steps=2, tune="unet-gan", trials=2, progress=False), Path("r"))
    assert seen[1:] == [("unet-gan", "l1")] and "Traceback" not in capfd.readouterr().err


def test_oblong_slices_are_not_taken_for_the_comparisons_square_size() -> None:
    """48x64 slices with --size 64: refused in one line, not compared as they are under a "64 px" label."""
    from medinpaint.compare import clean_slices
    from medinpaint.errors import InputError

    slices = SliceSet(["000_0", "001_0"], np.full((2, 48, 64), 100, np.uint8), tissue=np.full((2, 48, 64), 100, np.uint8))
    with pytest.raises(InputError, match="64x48 slices are not square: pass --size 0"):
        clean_slices(slices, 64)
    assert clean_slices(slices, None).images.shape == (2, 48, 64)
