import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from medinpaint.checkpoint import file_checksum, read_metadata
from medinpaint.cli import app
from medinpaint.data.png import write_gray_png
from medinpaint.inference import default_weights

runner = CliRunner()


def cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def test_predict_then_evaluate_matches_an_independent_mae(samples: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    code, out = cli("predict", "-i", samples, "-o", tmp_path / "pred", "--weights", tiny_checkpoint, "--no-progress")
    assert code == 0, out
    files = sorted(p.name for p in (tmp_path / "pred").iterdir())
    assert files[0] == "450_0.png" and len(files) == 12
    code, out = cli("evaluate", "--pred", tmp_path / "pred", "--data", samples, "-o", tmp_path / "report")
    assert code == 0, out
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert list(summary)[:1] == ["mae"] and summary["n"] == 12 and summary["exact_cases"] == 0
    # the challenge's own computation, written out independently of medinpaint
    errors = []
    for f in sorted((samples / "ct").iterdir()):
        case = f.name[len("ct_"):]
        truth = np.asarray(Image.open(f), dtype=np.float64)
        pred = np.asarray(Image.open(tmp_path / "pred" / case), dtype=np.float64)
        errors.append(np.mean(np.abs(truth - pred)))
    assert abs(summary["mae"] - np.mean(errors)) < 0.01
    assert (tmp_path / "report" / "per_case.csv").read_text().count("\n") == 13
    assert (tmp_path / "report" / "cases.png").stat().st_size > 10_000


def test_predict_fills_one_png_slice_as_the_folder_would(samples: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    from medinpaint.data.png import read_gray_png

    image, mask = samples / "corrupted" / "corrupted_450_0.png", samples / "mask" / "mask_450_0.png"
    tissue = samples / "tissue" / "tissue_450_0.png"
    out = tmp_path / "filled.png"
    level = (samples / "vertebrae" / "vertebrae_450_0.txt").read_text().strip()
    code, msg = cli("predict", "-i", image, "--mask", mask, "--tissue", tissue, "--vertebra", level, "-o", out,
                    "--weights", tiny_checkpoint, "--backend", "torch")
    assert code == 0 and "filled" in msg and "pixels" in msg, msg
    code, msg = cli("predict", "-i", samples, "-o", tmp_path / "folder", "--weights", tiny_checkpoint, "--backend", "torch",
                    "--no-progress")
    assert code == 0, msg
    missing = read_gray_png(mask) > 0
    filled, whole = read_gray_png(out), read_gray_png(tmp_path / "folder" / "450_0.png")
    assert np.array_equal(filled[~missing], read_gray_png(image)[~missing])  # known pixels untouched
    assert np.array_equal(filled, whole)  # with its tissue map and vertebra level, the slice fills as in its folder
    for args, message in (((), "one PNG slice needs --mask"),
                          (("--mask", mask, "-o", tmp_path / "x"), "x: the output of one PNG slice must end in .png"),
                          (("--mask", tissue), "mask values must be 0 and 255"),
                          (("--mask", mask, "--axis", "1"), "--axis is only for a volume (NIfTI or DICOM), and this is one PNG slice"),
                          (("--mask", mask, "--vertebra", "25"), "--vertebra must be a level 0..24, got 25"),
                          (("--mask", mask, "-o", out), "filled.png: already exists")):
        target = () if "-o" in args else ("-o", tmp_path / "y.png")
        code, msg = cli("predict", "-i", image, *args, *target, "--weights", tiny_checkpoint)
        assert code == 2 and message in msg and msg.count("\n") == 1, msg
    assert sorted(p.name for p in tmp_path.iterdir()) == [".folder.medinpaint-output.json", "filled.png", "folder"]


def test_predict_backends_agree_and_a_wrong_backend_is_one_line(samples: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    for backend in ("torch", "onnx"):
        code, out = cli("predict", "-i", samples, "-o", tmp_path / backend, "--weights", tiny_checkpoint, "--backend", backend, "--no-progress")
        assert code == 0, out
    for f in (tmp_path / "torch").iterdir():
        a, b = (np.asarray(Image.open(tmp_path / d / f.name), dtype=int) for d in ("torch", "onnx"))
        assert np.abs(a - b).max() <= 1 and (a == b).mean() >= 0.999
    code, msg = cli("predict", "-i", samples, "-o", tmp_path / "x", "--weights", tiny_checkpoint, "--backend", "tensorrt")
    assert code == 2 and msg.count("\n") == 1 and "--backend must be one of" in msg and not (tmp_path / "x").exists()


def test_predict_refuses_to_overwrite_or_write_into_the_input(samples: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, msg = cli("predict", "-i", samples, "-o", out, "--weights", tiny_checkpoint)
    assert code == 2 and "already exists" in msg and (out / "keep.txt").read_text() == "mine"
    code, msg = cli("predict", "-i", samples, "-o", samples / "pred", "--weights", tiny_checkpoint)
    assert code == 2 and "inside the input folder" in msg and not (samples / "pred").exists()
    code, msg = cli("predict", "-i", samples, "-o", tmp_path / "preds.png", "--weights", tiny_checkpoint)
    assert code == 2 and "the output of a set of slices is a folder, and a name ending in .png" in msg
    assert not (tmp_path / "preds.png").exists()
    code, msg = cli("predict", "-i", samples, "-o", out, "--weights", tiny_checkpoint, "--overwrite", "--no-progress")
    assert code == 2 and f"{out}: holds keep.txt that medinpaint did not write" in msg and (out / "keep.txt").read_text() == "mine"
    (out / "keep.txt").unlink()
    for _ in range(2):  # into the emptied folder, then over its own output
        code, msg = cli("predict", "-i", samples, "-o", out, "--weights", tiny_checkpoint, "--overwrite", "--no-progress")
        assert code == 0 and len(list(out.iterdir())) == 12, msg


@pytest.mark.parametrize(
    "break_it, message",
    [
        (lambda d: write_gray_png(d / "mask" / "mask_450_0.png", np.zeros((100, 100), np.uint8)), "mask_450_0.png: size 100x100"),
        (lambda d: (d / "corrupted" / "corrupted_453_3.png").write_bytes(b"GIF89a"), "corrupted_453_3.png: not a PNG image"),
        (lambda d: write_gray_png(d / "mask" / "mask_456_6.png", np.zeros((256, 256), np.uint8)), "456_6 has no missing pixels"),
        (lambda d: [p.unlink() for p in (d / "corrupted").iterdir()], "corrupted: the folder is empty"),
    ],
)
def test_bad_input_is_one_line_and_leaves_no_output(samples: Path, tiny_checkpoint: Path, tmp_path: Path, break_it, message: str) -> None:
    data = shutil.copytree(samples, tmp_path / "data")
    break_it(data)
    code, msg = cli("predict", "-i", data, "-o", tmp_path / "out", "--weights", tiny_checkpoint)
    assert code == 2 and message in msg and msg.count("\n") == 1 and msg.startswith("error: ")
    assert not (tmp_path / "out").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_predict_into_the_current_folder_is_refused_before_any_work(samples: Path, tiny_checkpoint: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch, overwrite: list[str]) -> None:
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    for output in (".", ".."):
        code, msg = cli("predict", "-i", samples, "-o", output, "--weights", tiny_checkpoint, "--no-progress", *overwrite)
        assert code == 2 and msg.startswith(f"error: {output}: ") and "not the current folder" in msg and msg.count("\n") == 1
    assert list((tmp_path / "here").iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["here"]


def test_missing_folder_and_wrong_checkpoint(samples: Path, tmp_path: Path) -> None:
    code, msg = cli("predict", "-i", tmp_path / "nope", "-o", tmp_path / "out")
    assert code == 2 and "nope: no such file or folder" in msg
    (tmp_path / "w.safetensors").write_text("hello")
    code, msg = cli("predict", "-i", samples, "-o", tmp_path / "out", "--weights", tmp_path / "w.safetensors")
    assert code == 2 and "w.safetensors: not a safetensors checkpoint" in msg and not (tmp_path / "out").exists()


def test_npy_predictions_keep_shape_and_dtype(tiny_checkpoint: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    stack = tmp_path / "stack"
    stack.mkdir()
    images = rng.random((3, 1, 24, 24)).astype(np.float32)
    masks = rng.random((3, 1, 24, 24)) > 0.7
    np.save(stack / "images.npy", np.where(masks, 0, images))
    np.save(stack / "masks.npy", masks)
    code, out = cli("predict", "-i", stack, "-o", tmp_path / "pred", "--weights", tiny_checkpoint, "--no-progress")
    assert code == 0, out
    filled = np.load(tmp_path / "pred" / "images.npy")
    assert filled.shape == (3, 1, 24, 24) and filled.dtype == np.float32
    assert np.array_equal(filled[~masks], images[~masks])


def test_benchmark_prints_baselines_beside_the_model(samples: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    code, out = cli("benchmark", "--data", samples, "--weights", tiny_checkpoint, "--limit", "4", "-o", tmp_path / "b.json", "--no-progress")
    assert code == 0, out
    rows = json.loads((tmp_path / "b.json").read_text())
    assert [r["method"] for r in rows] == ["zero fill", "official (fill 84)", "per-tissue mean", "OpenCV Telea", "model tiny"]
    assert all(r["n"] == 4 for r in rows) and "per-tissue mean" in out


def test_benchmark_scores_flips_and_ensembles(samples: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    other = shutil.copy(tiny_checkpoint, tmp_path / "copy.safetensors")  # named "tiny" in its metadata, too
    code, out = cli("benchmark", "--data", samples, "--weights", tiny_checkpoint, "--weights", other,
                    "--flips", "--ensemble", "--limit", "2", "-o", tmp_path / "b.json", "--no-progress")
    assert code == 0, out
    rows = json.loads((tmp_path / "b.json").read_text())[4:]
    assert [r["method"] for r in rows] == ["model tiny", "model tiny + flips", "model tiny'", "model tiny + flips'",
                                           "model tiny+tiny", "model tiny+tiny + flips"]
    assert rows[4]["mae"] == pytest.approx(rows[0]["mae"], abs=0.01)  # an ensemble of one model twice is that model


def test_pack_limits_validation_patients(phantom_dataset: Path, tmp_path: Path) -> None:
    code, out = cli("pack", "-i", phantom_dataset, "-o", tmp_path / "cache", "--validation-cases", "0")
    assert code == 0 and "packed 20 slices" in out
    code, out = cli("pack", "-i", phantom_dataset, "-o", tmp_path / "cache3", "--validation-cases", "3")
    assert code == 0 and "packed 23 slices" in out


@pytest.mark.skipif(not default_weights().is_file(), reason="the shipped weights are not in this checkout")
def test_demo_runs_as_a_console_script(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("medinpaint")
    proc = subprocess.run([str(exe), "demo", "-o", str(tmp_path / "demo")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "demo" / "report" / "cases.png").is_file()
    assert json.loads((tmp_path / "demo" / "report" / "summary.json").read_text())["n"] == 12
    (tmp_path / "again" / "report").mkdir(parents=True)
    (tmp_path / "again" / "report" / "mine.txt").write_text("a user's file")
    code, out = cli("demo", "-o", tmp_path / "again")
    assert code == 2 and "again/report: already exists" in out
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == ["report"]  # no half demo (predictions/) left


def test_train_fine_tunes_a_checkpoint_without_repeating_its_shape(phantom_dataset: Path, tmp_path: Path) -> None:
    common = ("--data", phantom_dataset, "--steps", 2, "--batch-size", 2, "--val-every", 2, "--device", "cpu", "--no-progress")
    code, out = cli("train", *common, "-o", tmp_path / "base", "--base-channels", 8, "--depth", 3, "--blocks", 1)
    assert code == 0, out
    base = tmp_path / "base" / "model.safetensors"
    code, out = cli("train", *common, "-o", tmp_path / "tuned", "--init", base)
    assert code == 0, out
    tuned = read_metadata(tmp_path / "tuned" / "model.safetensors")
    assert tuned.config == read_metadata(base).config
    assert tuned.training.started_from == f"model.safetensors sha256:{file_checksum(base)[:12]}"
    code, out = cli("train", *common, "-o", tmp_path / "deeper", "--init", base, "--depth", 4)
    assert code == 2 and out.strip() == f"error: {base}: its network differs from the one to train (depth: 3 against 4)"
    assert not (tmp_path / "deeper" / "model.safetensors").exists()
    segmenter = tmp_path / "seg.safetensors"
    shutil.copy(default_weights().with_name("ct-segmenter.safetensors"), segmenter)
    code, out = cli("train", *common, "-o", tmp_path / "other", "--init", segmenter)
    assert code == 2 and "--init needs a checkpoint of a 'inpainting-unet' network, this one is 'segmentation-unet'" in out


def test_an_output_that_holds_an_input_is_refused_even_with_overwrite(samples: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    """Replacing such an output would delete the input: the data, or the checkpoint doing the work."""
    shutil.copytree(samples, tmp_path / "par" / "data")
    shutil.copy(tiny_checkpoint, tmp_path / "par" / "model.safetensors")
    code, msg = cli("predict", "-i", tmp_path / "par" / "data", "-o", tmp_path / "par", "--weights", tiny_checkpoint, "--overwrite")
    assert code == 2 and "holds the input" in msg
    code, msg = cli("predict", "-i", samples, "-o", tmp_path / "par", "--weights", tmp_path / "par" / "model.safetensors", "--overwrite")
    assert code == 2 and "holds the input" in msg
    assert len(list((tmp_path / "par" / "data" / "ct").iterdir())) == 12 and (tmp_path / "par" / "model.safetensors").is_file()


def test_training_never_writes_its_run_into_the_data(samples: Path, tmp_path: Path) -> None:
    data = shutil.copytree(samples, tmp_path / "data")
    code, msg = cli("train", "--data", data, "-o", data / "ct" / "run", "--steps", "1", "--device", "cpu")
    assert code == 2 and "inside the input folder" in msg and not (data / "ct" / "run").exists()
    code, msg = cli("segment", "train", "--data", data, "-o", data / "run", "--steps", "1", "--device", "cpu")
    assert code == 2 and "inside the input folder" in msg and not (data / "run").exists()


def test_data_with_gaps_and_no_clean_slices_neither_trains_nor_packs(samples: Path, tmp_path: Path) -> None:
    data = shutil.copytree(samples, tmp_path / "data", ignore=shutil.ignore_patterns("ct"))
    code, msg = cli("train", "--data", data, "-o", tmp_path / "run", "--steps", "1", "--device", "cpu")
    assert code == 2 and msg.startswith(f"error: {data}: the slices have masks but no clean version"), msg
    assert not (tmp_path / "run" / "model.safetensors").exists()
    for family in (["synth", "train", "--model", "vae"], ["segment", "train"]):
        code, msg = cli(*family, "--data", data, "-o", tmp_path / "run2", "--steps", "1", "--device", "cpu")
        assert code == 2 and msg.startswith(f"error: {data}: the slices have masks but no clean version"), msg
        assert not (tmp_path / "run2" / "model.safetensors").exists()
    code, msg = cli("compare", "--data", data, "-o", tmp_path / "cmp", "--steps", "1")
    assert code == 2 and msg.startswith(f"error: {data}: the slices have masks but no clean version"), msg
    code, msg = cli("train", "--data", samples, "-o", tmp_path / "run3", "--steps", "1", "--crop", "0", "--device", "cpu")
    assert code == 2 and "--crop must be 1..256" in msg
    code, msg = cli("pack", "-i", data, "-o", tmp_path / "cache")
    assert code == 2 and msg.startswith(f"error: {data}: the slices have masks but no clean version") and not (tmp_path / "cache").exists()


def test_training_on_validation_patients_only_names_the_data(samples: Path, tmp_path: Path) -> None:
    """The bundled cases are all of patients 450-499, which every training command holds out."""
    for family in (["train"], ["synth", "train", "--model", "vae"], ["segment", "train"]):
        code, msg = cli(*family, "--data", samples, "-o", tmp_path / "run", "--steps", "1", "--device", "cpu")
        assert code == 2 and msg.startswith(f"error: {samples}: no training slices left"), msg
        assert not (tmp_path / "run" / "model.safetensors").exists()


def test_benchmark_output_follows_the_output_rules(samples: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    keep = tmp_path / "keep.json"
    keep.write_text("precious")
    args = ("benchmark", "--data", samples, "--weights", tiny_checkpoint, "--limit", "1", "--no-progress", "-o")
    code, msg = cli(*args, keep)
    assert code == 2 and "already exists" in msg and keep.read_text() == "precious"
    (tmp_path / "folder").mkdir()
    code, msg = cli(*args, tmp_path / "folder", "--overwrite")
    assert code == 2 and "is a folder" in msg and sorted(p.name for p in tmp_path.iterdir()) == ["folder", "keep.json"]
    assert cli(*args, keep, "--overwrite")[0] == 0 and json.loads(keep.read_text())[0]["n"] == 1
    code, msg = cli("predict", "-i", samples, "-o", tmp_path / "out", "--weights", tiny_checkpoint, "--batch-size", "0")
    assert code == 2 and not (tmp_path / "out").exists()


def test_evaluate_of_a_folder_without_predictions_says_what_it_expected(samples: Path, tmp_path: Path) -> None:
    code, msg = cli("evaluate", "--pred", samples, "--data", samples, "-o", tmp_path / "report")  # the data, not predictions
    assert code == 2 and f"{samples}: holds none of the predictions (one <case id>.png per case, such as 450_0.png" in msg
    assert not (tmp_path / "report").exists()


def test_scoring_without_ground_truth_names_the_dataset(samples: Path, tmp_path: Path) -> None:
    data = shutil.copytree(samples, tmp_path / "data", ignore=shutil.ignore_patterns("ct"))
    code, msg = cli("benchmark", "--data", data, "--limit", "1", "--no-progress")
    assert code == 2 and msg.startswith(f"error: {data}: no ground truth")


@pytest.mark.parametrize(("spoil", "message"), [
    (lambda f: f.unlink(), "453_3.png: missing prediction for case 453_3"),
    (lambda f: write_gray_png(f, np.zeros((100, 120), np.uint8)), "453_3.png: size 120x100, but case 453_3 of the data is 256x256"),
    (lambda f: f.write_bytes(b"GIF89a"), "453_3.png: not a PNG image"),
])
def test_evaluate_names_the_prediction_that_is_wrong(samples: Path, tiny_checkpoint: Path, tmp_path: Path, spoil, message: str) -> None:
    assert cli("predict", "-i", samples, "-o", tmp_path / "pred", "--weights", tiny_checkpoint, "--no-progress")[0] == 0
    spoil(tmp_path / "pred" / "453_3.png")
    code, msg = cli("evaluate", "--pred", tmp_path / "pred", "--data", samples, "-o", tmp_path / "report")
    assert code == 2 and message in msg and msg.count("\n") == 1 and not (tmp_path / "report").exists()


def test_evaluate_counts_the_cases_filled_exactly_which_the_psnr_mean_leaves_out(samples: Path, tiny_checkpoint: Path,
                                                                                 tmp_path: Path) -> None:
    assert cli("predict", "-i", samples, "-o", tmp_path / "pred", "--weights", tiny_checkpoint, "--no-progress")[0] == 0
    for case in ("450_0", "453_3"):  # two perfect fills
        shutil.copy(samples / "ct" / f"ct_{case}.png", tmp_path / "pred" / f"{case}.png")
    assert cli("evaluate", "--pred", tmp_path / "pred", "--data", samples, "-o", tmp_path / "report")[0] == 0
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    with open(tmp_path / "report" / "per_case.csv", newline="") as f:
        psnrs = [float(r["psnr"]) for r in csv.DictReader(f)]
    assert summary["exact_cases"] == 2 and psnrs.count(float("inf")) == 2
    assert summary["psnr"] == pytest.approx(np.mean([p for p in psnrs if np.isfinite(p)]))


def test_benchmark_fits_the_per_tissue_means_on_the_training_patients_only(phantom_dataset: Path) -> None:
    """Its per-tissue row must be the means of patients 0-9 scored on 450-451: fitted on the validation patients
    themselves it would score better than it can on unseen ones."""
    from medinpaint.baselines import TissueMeanFill
    from medinpaint.benchmarking import compare
    from medinpaint.data import read_slices, split_by_patient
    from medinpaint.evaluation import score

    slices = read_slices(phantom_dataset)
    train_idx, val_idx = split_by_patient(slices.ids)
    val = slices.subset(val_idx)
    fitted = lambda on: score(val, TissueMeanFill.fit(on)(val)).aggregate()["mae"]  # noqa: E731
    row = next(r for r in compare(phantom_dataset, weights=[]) if r["method"] == "per-tissue mean")
    assert row["mae"] == pytest.approx(fitted(slices.subset(train_idx)), abs=1e-9) and row["n"] == len(val_idx) == 4
    default = score(val, TissueMeanFill()(val)).aggregate()["mae"]  # the DM-i-AI means, used when there is no training part
    assert min(abs(row["mae"] - fitted(val)), abs(row["mae"] - default)) > 1e-4


def test_ctrl_c_is_one_line_and_exit_130(capsys: pytest.CaptureFixture[str]) -> None:
    import typer

    from medinpaint.cli.options import user_errors

    @user_errors
    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(typer.Exit) as stop:
        interrupted()
    err = capsys.readouterr().err
    assert stop.value.exit_code == 130 and err.startswith("interrupted: ") and err.count("\n") == 1


def test_benchmark_of_data_without_tissue_maps_gives_the_rows_that_need_none(tmp_path: Path) -> None:
    from medinpaint.benchmarking import compare

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 255, (4, 32, 32)).astype(np.uint8)
    masks = np.zeros_like(truth, dtype=bool)
    masks[:, 10:20, 10:20] = True
    np.save(tmp_path / "images.npy", np.where(masks, 0, truth))
    np.save(tmp_path / "masks.npy", masks)
    np.save(tmp_path / "truth.npy", truth)
    assert [r["method"] for r in compare(tmp_path, weights=[])] == ["zero fill", "OpenCV Telea"]


def test_train_refuses_the_loss_only_compare_can_give_an_encoder(phantom_dataset: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", "--data", str(phantom_dataset), "-o", str(tmp_path / "r"), "--steps", "1",
                                      "--loss", "l1+perceptual"])
    assert result.exit_code == 2 and "medinpaint compare --loss l1+perceptual" in result.output
    assert not (tmp_path / "r").exists()
