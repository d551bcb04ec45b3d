import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from medinpaint.checkpoint import read_metadata
from medinpaint.data import read_slices
from medinpaint.data.slices import SliceSet, to_uint8
from medinpaint.errors import InputError
from medinpaint.inference import Inpainter
from medinpaint.training import TrainConfig, TrainingData, evaluate_mae, train, validation_set

from conftest import TINY


def config(**kw) -> TrainConfig:
    base = dict(batch_size=2, val_every=3, val_cases=4, log_every=1, generated_masks=8, network=TINY)
    return TrainConfig(**{**base, **kw})


def log_steps(run: Path) -> list[int]:
    with open(run / "log.csv", newline="") as f:
        return [int(r["step"]) for r in csv.DictReader(f)]


def test_train_writes_weights_log_and_curves(phantom_dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    weights = train(read_slices(phantom_dataset), run, config(steps=6), device="cpu", progress=False)
    assert weights == run / "model.safetensors"
    meta = read_metadata(weights)
    assert meta.training.steps == 6 and meta.training.slices == 20  # 10 training patients x 2; 450/451 held out
    assert meta.preprocessing.intensity_window == (-150.0, 250.0)  # DM-i-AI data: the window is known
    assert log_steps(run) == [1, 2, 3, 4, 5, 6]
    with open(run / "log.csv", newline="") as f:
        val = [r["val_mae"] for r in csv.DictReader(f) if r["val_mae"]]
    assert len(val) == 2 and all(0 < float(v) < 255 for v in val)
    assert (run / "progress.png").stat().st_size > 1000
    Inpainter.from_pretrained(weights)  # the EMA weights rebuild themselves


def test_resume_continues_the_step_count_and_the_clock(phantom_dataset: Path, tmp_path: Path) -> None:
    run, data = tmp_path / "run", read_slices(phantom_dataset)
    train(data, run, config(steps=4), device="cpu", progress=False)
    first = torch.load(run / "last.pt", weights_only=True)
    train(data, run, config(steps=7), device="cpu", progress=False)
    second = torch.load(run / "last.pt", weights_only=True)
    assert first["step"] == 4 and second["step"] == 7
    assert second["elapsed_s"] > first["elapsed_s"]
    assert log_steps(run) == [1, 2, 3, 4, 5, 6, 7]


def test_resuming_on_other_data_says_so(phantom_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = read_slices(phantom_dataset)
    train(data, tmp_path / "run", config(steps=2), device="cpu", progress=False)
    fewer = data.subset(np.r_[0:10, 20:24])  # five training patients of the ten, and the validation ones
    train(fewer, tmp_path / "run", config(steps=3), device="cpu", progress=False)
    assert "training_slices 20 -> 10" in capsys.readouterr().out
    inverted = SliceSet(fewer.ids, 255 - fewer.images, masks=fewer.masks, truth=255 - fewer.truth, tissue=fewer.tissue,
                        vertebrae=fewer.vertebrae, layout=fewer.layout)  # as many slices, other pixels
    train(inverted, tmp_path / "run", config(steps=4), device="cpu", progress=False)
    note = capsys.readouterr().out
    assert "note: resuming with other settings than the run had: training_data" in note and "training_slices" not in note
    train(inverted, tmp_path / "run", config(steps=5), device="cpu", progress=False)
    assert "note: resuming" not in capsys.readouterr().out  # the same data again: nothing to say


def test_runs_of_several_seeds_are_validated_on_the_same_slices_and_masks(phantom_dataset: Path) -> None:
    from medinpaint.training import InpaintingTask

    real = read_slices(phantom_dataset)
    data = SliceSet(real.ids, real.truth, tissue=real.tissue, vertebrae=real.vertebrae, layout=real.layout)  # clean: masks drawn
    pool = np.random.default_rng(0).random((8, 64, 64)) > 0.7
    one, other = (InpaintingTask(data, config(steps=1, seed=s, val_cases=2), mask_pool=pool).val for s in (0, 3))
    assert one.ids == other.ids and np.array_equal(one.masks, other.masks) and np.array_equal(one.images, other.images)


def test_resume_accepts_a_checkpoint_saved_before_a_config_field_existed(phantom_dataset: Path, tmp_path: Path) -> None:
    run, data = tmp_path / "run", read_slices(phantom_dataset)
    train(data, run, config(steps=2), device="cpu", progress=False)
    state = torch.load(run / "last.pt", weights_only=True)
    del state["identity"]["network"]["attention"]  # as written before the attention option was added
    torch.save(state, run / "last.pt")
    train(data, run, config(steps=3), device="cpu", progress=False)
    assert torch.load(run / "last.pt", weights_only=True)["step"] == 3


def test_resume_refuses_another_model_and_an_unrelated_folder(phantom_dataset: Path, tmp_path: Path) -> None:
    data = read_slices(phantom_dataset)
    train(data, tmp_path / "run", config(steps=1), device="cpu", progress=False)
    other = config(steps=2)
    other.network = type(TINY)(base_channels=16, depth=3, blocks_per_level=1)
    with pytest.raises(InputError, match="another network, config or data size"):
        train(data, tmp_path / "run", other, device="cpu", progress=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.txt").write_text("precious")
    with pytest.raises(InputError, match="holds no checkpoint"):
        train(data, tmp_path / "busy", config(steps=1), device="cpu", progress=False)
    assert (tmp_path / "busy" / "thesis.txt").read_text() == "precious"


def test_time_budget_stops_training(phantom_dataset: Path, tmp_path: Path) -> None:
    train(read_slices(phantom_dataset), tmp_path / "run", config(minutes=0.02, steps=100_000, val_every=1000), device="cpu", progress=False)
    meta = read_metadata(tmp_path / "run" / "model.safetensors")
    assert 1 <= meta.training.steps < 100_000 and meta.training.minutes >= 0.02  # the minutes ended it, not the steps


def test_a_budget_is_required() -> None:
    with pytest.raises(InputError, match="give a budget"):
        TrainConfig()


def test_batches_pair_slices_with_turned_masks_and_crop(phantom_dataset: Path) -> None:
    data = read_slices(phantom_dataset)
    pool = np.zeros((1, 64, 64), bool)
    pool[0, :, :3] = True  # a stripe along the left edge
    td = TrainingData(data, pool, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    turned = {tuple(td.batch(gen, 1, 0.0)["mask"][0, 0].nonzero()[0].tolist()) for _ in range(40)}
    assert len(turned) > 1  # the stripe moved to other edges
    gen = torch.Generator().manual_seed(0)
    fixed = [td.batch(gen, 4, 0.0, symmetries=False)["mask"] for _ in range(5)]
    assert all(torch.equal(m[:, 0], torch.from_numpy(pool).float().expand(4, 64, 64)) for m in fixed)
    b = td.batch(gen, 3, 1.0, crop=32)
    assert b["image"].shape == (3, 1, 32, 32) and b["tissue"].shape == (3, 32, 32)
    assert (b["tissue"] == -1).all() and (b["vertebrae"] == -1).all()  # side_dropout=1 hides side information
    black = td.batch(gen, 4, 0.0, symmetries=False, ambiguous_value=0)  # pixels that can't be told from gaps
    stripe = torch.from_numpy(pool).expand(4, 1, 64, 64)
    assert torch.equal(black["mask"].bool(), stripe | (black["image"] == 0))


def test_validation_masks_hide_the_ambiguous_value_as_the_batches_do(phantom_dataset: Path) -> None:
    clean = read_slices(phantom_dataset).clean
    data = SliceSet([str(i) for i in range(len(clean))], clean)  # clean slices only: masks come from the pool
    pool = np.zeros((1, 64, 64), bool)
    pool[0, :8] = True
    val = validation_set(data, 4, 0, pool, ambiguous_value=0)
    assert val.masks[to_uint8(val.truth) == 0].all() and val.masks[:, :8].all()
    assert not val.masks[(to_uint8(val.truth) > 0) & ~pool].any()


def test_the_inpainting_network_learns_a_tiny_set_in_seconds(phantom_dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(read_slices(phantom_dataset), run, config(steps=60, batch_size=4, lr=3e-3, val_every=1000, warmup_steps=5),
          device="cpu", progress=False)
    with open(run / "log.csv", newline="") as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:10])


@pytest.mark.timeout(240)
def test_ddp_with_two_cpu_processes_trains(phantom_dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--nproc_per_node", "2", "-m", "medinpaint", "train", "--data", str(phantom_dataset),
           "--output", str(run), "--steps", "3", "--batch-size", "2", "--base-channels", "8", "--depth", "3",
           "--blocks", "1", "--val-every", "3", "--device", "cpu", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=200, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    meta = read_metadata(run / "model.safetensors")
    assert meta.training.processes == 2 and meta.training.steps == 3
    assert proc.stdout.count("weights:") == 1


def test_own_masks_turn_with_their_slice_and_tissue_map() -> None:
    """A lesion painter's batches: each slice keeps its own mask, and the symmetries move slice, mask and tissue
    map together (here all three mark the same random blobs)."""
    from medinpaint.data.slices import SliceSet

    rng = np.random.default_rng(0)
    masks = rng.random((6, 16, 16)) < 0.3
    masks[:, 0, 0], masks[:, 0, 1] = True, False  # asymmetric, so a turn shows
    slices = SliceSet([f"{i:03d}_0" for i in range(6)], (masks * 255).astype(np.uint8), masks=masks,
                      tissue=np.where(masks, 255, 100).astype(np.uint8))
    data = TrainingData(slices, masks, torch.device("cpu"), own_masks=True)
    batch = data.batch(torch.Generator().manual_seed(1), 32, side_dropout=0.0, symmetries=True)
    image, mask, tissue = batch["image"][:, 0] > 0.5, batch["mask"][:, 0] > 0.5, batch["tissue"] == 2
    assert torch.equal(image, mask) and torch.equal(tissue, mask)
    originals = {m.tobytes() for m in masks}
    assert any(m.numpy().tobytes() not in originals for m in mask)  # some were turned or flipped


def test_the_validation_mae_is_the_whole_image_mae_of_the_filled_slices(tiny_checkpoint: Path, samples: Path) -> None:
    """The `val_mae` every curve, comparison and fill-gaps report reads, against the filled slices scored one by one."""
    s = read_slices(samples)
    model = Inpainter.from_pretrained(tiny_checkpoint, backend="torch")
    filled = [model.predict(s.images[i], s.masks[i], s.tissue[i], int(s.vertebrae[i])) for i in range(len(s))]
    truth = to_uint8(s.truth)
    expected = np.mean([np.abs(f.astype(float) - t.astype(float)).mean() for f, t in zip(filled, truth)])
    unfilled = np.mean(np.abs(to_uint8(s.images).astype(float) - truth.astype(float)))
    assert evaluate_mae(model.network, s, torch.device("cpu")) == pytest.approx(expected, abs=0.02)
    assert abs(expected - unfilled) > 1  # the check tells a fill from the unfilled input


def test_fine_tuning_the_weights_of_the_output_folder_with_overwrite_keeps_them_until_loaded(phantom_dataset: Path,
                                                                                          tmp_path: Path) -> None:
    """--init run/model.safetensors --overwrite into run: the weights are read before the old run is cleared."""
    from medinpaint.engine.runstate import origin

    data, run = read_slices(phantom_dataset), tmp_path / "run"
    first = train(data, run, config(steps=2), device="cpu", progress=False)
    recorded = origin(first)
    train(data, run, config(steps=2, init=str(first)), device="cpu", progress=False, overwrite=True)
    assert read_metadata(run / "model.safetensors").training.started_from == recorded


def test_the_held_out_patients_are_the_datas_whatever_the_seed(phantom_dataset: Path) -> None:
    """Data without patients 450-499: another --seed (a resumed run, a comparison's seeds) validates on the same
    patients, so none of them is trained on by one seed and validated on by another."""
    from medinpaint.training import InpaintingTask

    data = read_slices(phantom_dataset)
    data = data.subset([i for i, c in enumerate(data.ids) if int(c.split("_")[0]) < 450])
    held = [sorted(InpaintingTask(data, config(steps=1, seed=seed)).val.ids) for seed in (0, 1, 2)]
    assert held[0] and held[0] == held[1] == held[2]


def test_a_run_that_fails_in_its_first_step_leaves_nothing_to_resume(phantom_dataset: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from medinpaint.training import InpaintingTask

    data, run = read_slices(phantom_dataset), tmp_path / "run"
    real_loss = InpaintingTask.loss
    monkeypatch.setattr(InpaintingTask, "loss", lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        train(data, run, config(steps=2), device="cpu", progress=False)
    assert not (run / "last.pt").exists()
    monkeypatch.setattr(InpaintingTask, "loss", real_loss)
    train(data, run, config(steps=2), device="cpu", progress=False)  # a fresh start, no --overwrite needed
    assert read_metadata(run / "model.safetensors").training.steps == 2


def test_settings_the_loss_cannot_train_with_are_refused_before_the_run(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="needs an encoder"):
        config(steps=1, loss="l1+perceptual")
    with pytest.raises(InputError, match="--crop 8: --loss l1\\+ssim needs crops of at least 11"):
        config(steps=1, loss="l1+ssim", crop=8)
    with pytest.raises(InputError, match="--minutes above 0"):
        config(minutes=float("nan"))


def test_a_crop_as_wide_as_the_short_side_of_oblong_slices_is_square() -> None:
    slices = SliceSet([f"{p:03d}_0" for p in range(4)], np.full((4, 32, 48), 100, np.uint8))
    batch = TrainingData(slices, np.zeros((2, 32, 48), bool), torch.device("cpu")).batch(
        torch.Generator().manual_seed(0), 2, 0.0, symmetries=False, crop=32)
    assert batch["image"].shape == (2, 1, 32, 32)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_training_on_cuda_without_cuda_is_refused_not_run_on_the_cpu() -> None:
    from medinpaint.engine.loop import accelerator

    with pytest.raises(InputError, match="--device cuda: no CUDA device is available"):
        accelerator("cuda")


def test_data_of_one_patient_says_its_validation_curve_is_on_training_slices(phantom_dataset: Path, tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture) -> None:
    data = read_slices(phantom_dataset)
    one = data.subset([i for i, c in enumerate(data.ids) if c.startswith("000_")])
    train(one, tmp_path / "run", config(steps=1), device="cpu", progress=False)
    assert "hold one patient: the validation curve is measured on training slices" in capsys.readouterr().out
    train(data, tmp_path / "many", config(steps=1), device="cpu", progress=False)
    assert "one patient" not in capsys.readouterr().out
