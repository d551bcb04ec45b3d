"""`medinpaint synth train / sample / report` end to end on tiny models, and their one-line errors."""

from __future__ import annotations

import csv
import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medinpaint.checkpoint import read_metadata
from medinpaint.cli import app
from medinpaint.data import read_slices

from conftest import write_dmiai

runner = CliRunner()
TINY = ("--base-channels", "8", "--batch-size", "4", "--steps", "2", "--device", "cpu", "--no-progress")


def cli(*args: object) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Phantom data and tiny diffusion, VAE and encoder checkpoints trained through the CLI."""
    root = tmp_path_factory.mktemp("synth-cli")
    data = write_dmiai(root / "phantoms", [*range(10), 450, 451])
    paths = {"data": data}
    for model in ("diffusion", "vae", "encoder"):
        extra = ("--blocks", "1") if model == "diffusion" else ()
        code, out = cli("synth", "train", "--data", data, "-o", root / model, "--model", model, *TINY, *extra)
        assert code == 0, out
        paths[model] = root / model / "model.safetensors"
    return paths


def test_a_generator_fine_tunes_from_a_checkpoint_that_gives_its_family_size_and_network(runs: dict[str, Path],
                                                                                         tmp_path: Path) -> None:
    code, out = cli("synth", "train", "--data", runs["data"], "-o", tmp_path / "tuned", "--init", runs["vae"], "--steps", 1,
                    "--batch-size", 4, "--device", "cpu", "--no-progress")
    assert code == 0, out
    tuned, base = read_metadata(tmp_path / "tuned" / "model.safetensors"), read_metadata(runs["vae"])
    assert (tuned.kind, tuned.config, tuned.preprocessing.size) == (base.kind, base.config, 64)
    assert tuned.training.started_from.startswith("model.safetensors sha256:")
    code, out = cli("synth", "train", "--data", runs["data"], "-o", tmp_path / "x", "--init", runs["vae"], "--model", "diffusion", "--steps", 1)
    assert code == 2 and out.strip() == f"error: {runs['vae']}: --init holds a vae network of size 64, not --model diffusion"
    code, out = cli("synth", "train", "--data", runs["data"], "-o", tmp_path / "x", "--init", runs["vae"], "--base-channels", 8, "--steps", 1)
    assert code == 2 and "leave out --base-channels and --blocks" in out


def test_sample_to_npy_and_to_a_folder_that_training_accepts(runs: dict[str, Path], tmp_path: Path) -> None:
    code, out = cli("synth", "sample", "--weights", runs["diffusion"], "-n", 5, "-o", tmp_path / "s.npy", "--steps", 2,
                    "--batch-size", 2, "--seed", 3, "--device", "cpu", "--no-progress")
    assert code == 0, out
    images = np.load(tmp_path / "s.npy")
    assert images.shape == (5, 1, 64, 64) and images.dtype == np.float32 and 0 <= images.min() <= images.max() <= 1
    assert np.load(tmp_path / "s.vertebrae.npy").dtype == np.int16
    code, out = cli("synth", "sample", "--weights", runs["diffusion"], "-n", 5, "-o", tmp_path / "dir", "--steps", 2,
                    "--batch-size", 2, "--seed", 3, "--device", "cpu", "--no-progress")
    assert code == 0, out
    back = read_slices(tmp_path / "dir")
    assert len(back) == 5 and np.array_equal(back.images, np.rint(images[:, 0] * 255).astype(np.uint8))
    code, out = cli("train", "--data", tmp_path / "dir", "-o", tmp_path / "inpaint", "--steps", 1, "--base-channels", 8,
                    "--depth", 3, "--batch-size", 2, "--val-every", 1, "--device", "cpu", "--no-progress")
    assert code == 0, out
    assert (tmp_path / "inpaint" / "model.safetensors").is_file()


def test_vae_samples_with_a_chosen_vertebra_level(runs: dict[str, Path], tmp_path: Path) -> None:
    code, out = cli("synth", "sample", "--weights", runs["vae"], "-n", 3, "-o", tmp_path / "v.npy", "--vertebrae", 20,
                    "--temperature", 0.5, "--device", "cpu", "--no-progress")
    assert code == 0, out
    assert np.load(tmp_path / "v.vertebrae.npy").tolist() == [20, 20, 20]


@pytest.mark.slow
def test_report_writes_all_four_measures(runs: dict[str, Path], tmp_path: Path) -> None:
    code, out = cli("synth", "report", "--data", runs["data"], "-o", tmp_path / "report", "--weights", runs["diffusion"],
                    "--weights", runs["vae"], "--encoder", runs["encoder"], "-n", 6, "--steps", 2, "--utility-steps", 1,
                    "--utility-base-channels", 8, "--device", "cpu", "--no-progress")
    assert code == 0, out
    report = tmp_path / "report"
    summary = json.loads((report / "summary.json").read_text())
    assert summary["train_slices"] == 20 and summary["heldout_slices"] == 4
    assert [m["kind"] for m in summary["models"]] == ["diffusion", "vae"]
    for m in summary["models"]:
        assert m["fid"] >= 0 and 0 <= m["precision"] <= 1 and 0 <= m["recall"] <= 1 and 0 <= m["near_copy_share"] <= 1
        assert m["utility_mae"] > 0 and m["samples_per_s"] > 0
        assert 0 <= m["precision_at_heldout_n"] <= 1 and 0 <= m["recall_at_heldout_n"] <= 1  # at the held-out row's n
    assert summary["utility"]["real_mae"] > 0 and summary["utility"]["slices"] == 6
    # what each arm trained on, once training held its monitoring tenth out (one patient of the six real slices' three)
    assert 0 < summary["utility"]["trained_on_slices"] < 6 and all(0 < m["utility_trained_on_slices"] < 6 for m in summary["models"])
    for name in ("samples.png", "histograms.png", "closest_pairs.png"):
        assert (report / name).stat().st_size > 10_000
    with open(report / "nearest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and {r["model"] for r in rows} == {"diffusion-0", "vae-1"}
    assert all(r["nearest_train_id"].split("_")[0] not in ("450", "451") for r in rows)  # held-out patients never count
    assert not list(report.rglob("last.pt"))


@pytest.mark.parametrize(
    "args,message",
    [
        (("train", "--model", "diffusion", "--size", "100", "--steps", "1"), "--size must be one of 64, 128, 256, got 100"),
        (("train", "--model", "gan", "--steps", "1"), "--model must be one of diffusion, vae, encoder"),
        (("train", "--model", "vae"), "give a budget"),
        (("sample", "-n", "0", "-o", "{tmp}/x.npy", "--weights", "{vae}"), "must be positive, got 0"),
        (("sample", "-n", "2", "-o", "{tmp}/x.npy", "--weights", "{encoder}"), "holds the feature encoder"),
        (("sample", "-n", "2", "-o", "{tmp}/x.npy", "--size", "128"), "no shipped generator for size 128 yet (shipped: "),
        (("sample", "-n", "2", "-o", "{tmp}/x.npy", "--weights", "{vae}", "--sampler", "ddim"), "apply to diffusion checkpoints"),
        (("sample", "-n", "2", "-o", "{tmp}/x.npy", "--weights", "{diffusion}", "--vertebrae", "30"), "must lie in 0..24"),
        (("report", "--data", "{encoder}", "-o", "{tmp}/r", "--weights", "{vae}"), "not a dataset"),
        (("sample", "-n", "2", "-o", "{tmp}/x.png", "--weights", "{vae}"), "x.png: this output is a folder, and a name ending in .png"),
    ],
)
def test_bad_input_is_one_line(runs: dict[str, Path], tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    fill = {"tmp": tmp_path, **{k: str(v) for k, v in runs.items()}}
    argv = [a.format(**fill) for a in args]
    if argv[0] == "train":
        argv += ["--data", str(runs["data"]), "-o", str(tmp_path / "run")]
    code, msg = cli("synth", *argv, "--device", "cpu", "--no-progress")
    assert code == 2 and message in msg and msg.startswith("error: ") and msg.count("\n") == 1, msg
    assert not any((tmp_path / name).exists() for name in ("x.npy", "x.png", "run"))


def test_an_encoder_of_another_size_and_a_negative_seed_are_refused(runs: dict[str, Path], tmp_path: Path) -> None:
    big = write_dmiai(tmp_path / "phantoms-128", [0, 1], per_patient=2, size=128)
    code, out = cli("synth", "train", "--data", big, "-o", tmp_path / "enc128", "--model", "encoder", "--size", 128, *TINY)
    assert code == 0, out
    encoder = tmp_path / "enc128" / "model.safetensors"
    code, msg = cli("synth", "report", "--data", runs["data"], "-o", tmp_path / "r", "--weights", runs["vae"], "--encoder", encoder,
                    "-n", 4, "--device", "cpu", "--no-progress")
    assert code == 2 and f"{encoder}: an encoder of 128x128 slices; the generators make 64x64" in msg and msg.count("\n") == 1, msg
    assert not (tmp_path / "r").exists()
    code, msg = cli("synth", "sample", "-n", 2, "-o", tmp_path / "x.npy", "--weights", runs["vae"], "--seed", -1)
    assert code == 2 and "--seed" in msg and not (tmp_path / "x.npy").exists()


def test_without_weights_the_shipped_checkpoint_is_used_or_its_absence_explained(tmp_path: Path) -> None:
    shipped = [f for f in ("diffusion", "vae") if (resources.files("medinpaint") / "weights" / f"synth-{f}-64.safetensors").is_file()]
    steps = ["--steps", 1] if shipped[:1] == ["diffusion"] else []
    code, msg = cli("synth", "sample", "-n", 2, "-o", tmp_path / "x.npy", "--size", 64, *steps, "--device", "cpu")
    if shipped:
        assert code == 0 and np.load(tmp_path / "x.npy").shape == (2, 1, 64, 64)
    else:
        assert code == 2 and "no shipped generator for size 64 yet (shipped: none): pass --weights or train one with" in msg


def test_a_folder_that_is_not_a_dataset_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    code, msg = cli("synth", "train", "--data", tmp_path / "notes", "-o", tmp_path / "run", "--steps", 1, "--device", "cpu")
    assert code == 2 and "not a dataset" in msg and msg.count("\n") == 1


def test_sampling_never_replaces_the_folder_that_holds_its_generator(runs: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    weights = run / "gen.safetensors"
    weights.write_bytes(runs["vae"].read_bytes())
    for output in (run, tmp_path / "run" / "gen.safetensors"):
        code, msg = cli("synth", "sample", "-n", 2, "--weights", weights, "-o", output, "--overwrite", "--device", "cpu", "--no-progress")
        assert code == 2 and "output must not be" in msg, msg
    assert weights.read_bytes() == runs["vae"].read_bytes()


@pytest.mark.parametrize(
    "args,message",
    [
        (("--weights", "{diffusion}", "--steps", "0"), "--steps must be 1..1000, got 0"),
        (("--weights", "{diffusion}", "--sampler", "euler"), "--sampler must be one of"),
        (("--weights", "{vae}", "--encoder-steps", "0"), "--encoder-steps must be at least 1 (or give --encoder), got 0"),
        (("--weights", "{vae}", "--utility-steps", "-1"), "--utility-steps must be 0 (no utility test) or more, got -1"),
    ],
)
def test_report_refuses_its_arguments_before_its_encoder_trains(runs: dict[str, Path], tmp_path: Path, args: tuple[str, ...],
                                                                message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from medinpaint.synthesis import report

    monkeypatch.setattr(report, "train_generator", lambda *a, **k: pytest.fail("the encoder trained before the check"))
    argv = [a.format(**{k: str(v) for k, v in runs.items()}) for a in args]
    code, msg = cli("synth", "report", "--data", runs["data"], "-o", tmp_path / "r", *argv, "-n", 4, "--device", "cpu", "--no-progress")
    assert code == 2 and msg.startswith(f"error: {message}") and msg.count("\n") == 1, msg
    assert not (tmp_path / "r").exists()


def test_report_on_larger_slices_measures_the_shipped_generator_at_its_size(tmp_path: Path) -> None:
    """The real slices shrink to the shipped generator's size; asking for a shipped 128x128 one was wrong."""
    from medinpaint.synthesis.generator import shipped_sizes

    if 64 not in shipped_sizes() or 128 in shipped_sizes():
        pytest.skip("needs a shipped 64x64 generator and none of 128x128")
    big = write_dmiai(tmp_path / "phantoms-128", [0, 1, 2, 450, 451], per_patient=2, size=128)
    code, out = cli("synth", "report", "--data", big, "-o", tmp_path / "r", "-n", 4, "--encoder-steps", 1,
                    "--device", "cpu", "--no-progress")
    assert code == 0, out
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["size"] == 64 and summary["models"][0]["weights"].startswith("shipped synth-")
