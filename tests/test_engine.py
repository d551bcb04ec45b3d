"""The training engine, for every family: resume, schedule, overwrite, EMA, logs, and a family of its own."""

from __future__ import annotations

import csv
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import typer
from torch import nn

from safetensors.torch import load_file

from medinpaint.checkpoint import Preprocessing, file_checksum, read_metadata
from medinpaint.data import read_slices
from medinpaint.cli.options import user_errors
from medinpaint.engine import EMA, EngineConfig, StoppedEarly, Task, fit
from medinpaint.errors import InputError
from medinpaint.synthesis.registry import network_config
from medinpaint.synthesis.task import GeneratorTask, SynthTrainConfig, train_generator
from medinpaint.training import InpaintingTask, TrainConfig, train

from conftest import TINY


def log(run: Path) -> list[dict[str, str]]:
    with open(run / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def family_config(family: str, steps: int) -> EngineConfig:
    common = dict(steps=steps, batch_size=2, log_every=1, warmup_steps=2, val_every=1000)
    if family == "inpainting":
        return TrainConfig(**common, val_cases=2, generated_masks=4, network=TINY)
    return SynthTrainConfig(**common, family=family, network=network_config(family, 64, base_channels=8, blocks=1).to_dict())


def run_family(family: str, data, run: Path, steps: int, overwrite: bool = False) -> Path:
    trainer = train if family == "inpainting" else train_generator
    return trainer(data, run, family_config(family, steps), device="cpu", progress=False, overwrite=overwrite)


FAMILIES = ["inpainting", "diffusion", "vae", "encoder"]


def crash_after(monkeypatch: pytest.MonkeyPatch, family: str, steps: int) -> None:
    """Make the family's loss fail (as a crash or a killed GPU call would) once `steps` steps are done."""
    cls = InpaintingTask if family == "inpainting" else GeneratorTask
    original, calls = cls.loss, []

    def loss(self, *args):
        calls.append(1)
        if len(calls) > steps:
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(cls, "loss", loss)


@pytest.mark.parametrize("family", FAMILIES)
def test_resume_continues_steps_and_schedule_even_after_a_config_field_is_added(
    family: str, phantom_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = read_slices(phantom_dataset)
    run_family(family, data, tmp_path / "whole", 6)
    crash_after(monkeypatch, family, 3)
    with pytest.raises(KeyboardInterrupt):
        run_family(family, data, tmp_path / "parts", 6)
    monkeypatch.undo()
    state = torch.load(tmp_path / "parts" / "last.pt", weights_only=True)
    dropped = sorted(state["identity"]["network"])[-1]
    del state["identity"]["network"][dropped]  # as if saved before that config field existed (its default then)
    torch.save(state, tmp_path / "parts" / "last.pt")
    run_family(family, data, tmp_path / "parts", 6)
    whole, parts = log(tmp_path / "whole"), log(tmp_path / "parts")
    assert [r["step"] for r in parts] == [str(s) for s in range(1, 7)]
    assert [r["lr"] for r in parts] == [r["lr"] for r in whole]  # the cosine goes on where it stopped
    assert read_metadata(tmp_path / "parts" / "model.safetensors").training.steps == 6
    # the same batches, masks and noise as if never stopped: the same losses and, to the bit, the same weights
    assert [r["loss"] for r in parts] == [r["loss"] for r in whole]
    a, b = (load_file(tmp_path / run / "model.safetensors") for run in ("whole", "parts"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_overwrite_leaves_no_trace_of_the_old_run_and_keeps_other_files(phantom_dataset: Path, tmp_path: Path) -> None:
    data, run = read_slices(phantom_dataset), tmp_path / "run"
    run_family("vae", data, run, 4)
    (run / "notes.txt").write_text("mine")
    run_family("vae", data, run, 2, overwrite=True)
    assert [r["step"] for r in log(run)] == ["1", "2"]
    assert torch.load(run / "last.pt", weights_only=True)["step"] == 2
    assert len(list((run / "tensorboard").iterdir())) == 1
    assert (run / "notes.txt").read_text() == "mine"


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Scalars of TensorBoard event files (TFRecords of Event protos), read without TensorBoard itself."""
    from tensorboardX.proto.event_pb2 import Event

    out: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(folder.iterdir()):
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            n = int.from_bytes(data[pos : pos + 8], "little")
            event = Event.FromString(data[pos + 12 : pos + 12 + n])
            pos += 12 + n + 4
            for v in event.summary.value:
                out.setdefault(v.tag, []).append((event.step, v.simple_value))
    return out


def test_a_run_writes_tensorboard_events_and_curves(phantom_dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(read_slices(phantom_dataset), run, TrainConfig(steps=4, batch_size=2, log_every=1, val_every=2, val_cases=2,
                                                          generated_masks=4, network=TINY), device="cpu", progress=False)
    events = scalars(run / "tensorboard")
    assert {"train/loss", "train/lr", "val/mae"} <= set(events)
    assert [step for step, _ in events["val/mae"]] == [2, 4]
    assert [f"{v:.4f}" for _, v in events["val/mae"]] == [r["val_mae"] for r in log(run) if r["val_mae"]]
    assert (run / "progress.png").stat().st_size > 1000


def test_ema_is_the_hand_computed_average_and_copies_buffers() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = EMA(net, decay=0.9)
    start = [p.detach().clone() for p in net.parameters()]
    history = []
    for step in range(3):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        net.train()(torch.randn(4, 3))  # moves the BatchNorm running statistics
        history.append([p.detach().clone() for p in net.parameters()])
        ema.update(net, step)
    expected = start
    for step, params in enumerate(history):
        d = min(0.9, (1 + step) / (10 + step))
        expected = [d * e + (1 - d) * p for e, p in zip(expected, params)]
    for e, p in zip(expected, ema.network.parameters()):
        assert torch.allclose(e, p, atol=1e-6)
    assert torch.equal(ema.network[1].running_mean, net[1].running_mean)
    assert int(ema.network[1].num_batches_tracked) == 3


@dataclass
class LineConfig:
    """A network config for the toy family below."""

    width: int = 4


class LineFit(Task):
    """A family written in a few lines: learn y = 2x + 1. It needs no loop of its own."""

    kind = "toy-line"
    val_fields = ("val_error",)

    def __init__(self) -> None:
        self.network_config = LineConfig()

    def build_network(self) -> nn.Module:
        return nn.Sequential(nn.Linear(1, self.network_config.width), nn.Linear(self.network_config.width, 1))

    def preprocessing(self) -> Preprocessing:
        return Preprocessing(channels=("x",), vertebra_encoding="none")

    def setup(self, device: torch.device) -> None:
        self.device = device

    def batch(self, gen: torch.Generator, size: int) -> torch.Tensor:
        return torch.rand(size, 1, generator=gen, device=self.device)

    def loss(self, forward, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return ((forward(x) - (2 * x + 1)) ** 2).mean()

    def validate(self, network: nn.Module, device: torch.device) -> dict[str, float]:
        x = torch.linspace(0, 1, 11, device=device)[:, None]
        return {"val_error": float((network(x) - (2 * x + 1)).abs().mean())}


def test_a_new_family_is_a_network_and_a_task(tmp_path: Path) -> None:
    weights = fit(LineFit(), tmp_path / "line", EngineConfig(steps=300, batch_size=32, lr=0.05, warmup_steps=5, val_every=100,
                                                             ema_decay=0.9), device="cpu", progress=False)
    rows = [r for r in log(tmp_path / "line") if r["val_error"]]
    assert [r["step"] for r in rows] == ["100", "200", "300"]
    with torch.no_grad():
        untrained = LineFit().validate(LineFit().build_network(), torch.device("cpu"))["val_error"]
    assert float(rows[-1]["val_error"]) < min(0.05, untrained / 10, float(rows[0]["val_error"]))
    meta = read_metadata(weights)
    assert meta.kind == "toy-line" and meta.config == {"width": 4} and meta.preprocessing.channels == ("x",)


def test_a_run_folder_of_someone_else_is_refused(phantom_dataset: Path, tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="not a readable run checkpoint"):
        run_family("encoder", read_slices(phantom_dataset), tmp_path / "run", 1)


def test_cosine_schedule_follows_the_first_budget_to_run_out() -> None:
    cfg = EngineConfig(steps=1000, minutes=1.0, lr=1.0, warmup_steps=10)
    assert cfg.lr_at(0, 0) == pytest.approx(0.1)
    assert cfg.lr_at(9, 0) == pytest.approx(1.0)  # end of warm-up
    assert cfg.lr_at(500, 0) == pytest.approx(0.505)
    assert cfg.lr_at(20, 30.0) == pytest.approx(0.505)  # half the time gone: half-way down the cosine
    assert cfg.lr_at(1000, 0) == pytest.approx(0.01)


def test_the_optimizer_is_a_choice_and_a_run_resumes_only_with_its_own(tmp_path: Path) -> None:
    params = [nn.Parameter(torch.zeros(2))]
    assert isinstance(EngineConfig(steps=1).make_optimizer(params), torch.optim.AdamW)
    sgd = EngineConfig(steps=1, optimizer="sgd", lr=0.1).make_optimizer(params)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.9 and sgd.defaults["nesterov"]
    with pytest.raises(InputError, match="the optimizer must be one of adamw, adam, sgd"):
        EngineConfig(steps=1, optimizer="lion")
    fit(LineFit(), tmp_path / "line", EngineConfig(steps=5, optimizer="sgd", lr=0.05, warmup_steps=1), device="cpu", progress=False)
    with pytest.raises(InputError, match="checkpoint of another network, config"):  # Adam cannot take SGD's state
        fit(LineFit(), tmp_path / "line", EngineConfig(steps=10, optimizer="adam"), device="cpu", progress=False)
    fit(LineFit(), tmp_path / "line", EngineConfig(steps=10, optimizer="sgd", lr=0.05, warmup_steps=1), device="cpu", progress=False)
    assert log(tmp_path / "line")[-1]["step"] == "10"


def test_a_fine_tuned_run_starts_from_the_weights_it_is_given_and_records_them(tmp_path: Path) -> None:
    trained = fit(LineFit(), tmp_path / "line", EngineConfig(steps=300, batch_size=32, lr=0.05, warmup_steps=5, val_every=100,
                                                             ema_decay=0.9), device="cpu", progress=False)
    still = dict(steps=1, batch_size=32, lr=1e-7, warmup_steps=1, val_every=1)  # one step that moves nothing
    fresh = fit(LineFit(), tmp_path / "fresh", EngineConfig(**still), device="cpu", progress=False)
    tuned = fit(LineFit(), tmp_path / "tuned", EngineConfig(**still, init=str(trained)), device="cpu", progress=False)
    assert float(log(tmp_path / "tuned")[0]["val_error"]) < 0.05 < float(log(tmp_path / "fresh")[0]["val_error"])
    assert read_metadata(tuned).training.started_from == f"model.safetensors sha256:{file_checksum(trained)[:12]}"
    assert read_metadata(fresh).training.started_from == ""
    wider = LineFit()
    wider.network_config = LineConfig(width=8)
    with pytest.raises(InputError, match=r"its network differs from the one to train \(width: 4 against 8\)"):
        fit(wider, tmp_path / "wide", EngineConfig(**still, init=str(trained)), device="cpu", progress=False)
    with pytest.raises(InputError, match="no such checkpoint file to start from"):
        EngineConfig(**still, init=str(tmp_path / "missing.safetensors"))


class TermAfter(LineFit):
    """LineFit whose process is sent SIGTERM (as by `kill PID` or a scheduler) during its `at`-th step."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at, self.calls = at, 0

    def loss(self, forward, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.at:
            os.kill(os.getpid(), signal.SIGTERM)
        return super().loss(forward, x, gen)


def test_sigterm_ends_the_step_saves_exports_and_the_same_command_resumes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = EngineConfig(steps=8, batch_size=4, warmup_steps=1, val_every=100, log_every=1)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(StoppedEarly) as stopped:  # the caller (a study, a command) must not take it for finished
        fit(TermAfter(3), tmp_path / "run", cfg, device="cpu", progress=False)
    weights = Path(stopped.value.weights)
    assert weights == tmp_path / "run" / "model.safetensors"
    assert read_metadata(weights).training.steps == 3
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["step"] == 3
    assert [r["step"] for r in log(tmp_path / "run")] == ["1", "2", "3"] and log(tmp_path / "run")[-1]["val_error"]
    assert "SIGTERM at step 3: stopped early" in capsys.readouterr().out
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is gone once the run has returned
    fit(LineFit(), tmp_path / "run", cfg, device="cpu", progress=False)
    assert [r["step"] for r in log(tmp_path / "run")] == [str(s) for s in range(1, 9)]


def test_a_command_whose_run_a_sigterm_stopped_exits_143_not_0(tmp_path: Path) -> None:
    """`medinpaint train ... && medinpaint predict ...` must not go on with half-trained weights."""

    @user_errors
    def command() -> None:
        fit(TermAfter(2), tmp_path / "run", EngineConfig(steps=8, batch_size=4, warmup_steps=1), device="cpu", progress=False)

    with pytest.raises(typer.Exit) as stop:
        command()
    assert stop.value.exit_code == 128 + signal.SIGTERM
    assert read_metadata(tmp_path / "run" / "model.safetensors").training.steps == 2


def test_a_short_step_budget_warms_up_over_a_tenth_of_it() -> None:
    short = EngineConfig(steps=20, lr=1.0)  # the default warm-up of 100 steps would never reach the peak
    assert short.lr_at(1, 0) == pytest.approx(1.0) and short.lr_at(0, 0) == pytest.approx(0.5)
    assert EngineConfig(minutes=1.0, lr=1.0).lr_at(49, 0) == pytest.approx(0.5)  # a time budget keeps the 100 steps


def test_a_resumed_run_keeps_its_record_its_log_in_order_and_says_what_changed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    trained = fit(LineFit(), tmp_path / "base", EngineConfig(steps=5, batch_size=8, warmup_steps=1), device="cpu", progress=False)
    run = tmp_path / "run"
    fit(LineFit(), run, EngineConfig(steps=4, batch_size=8, warmup_steps=1, log_every=1, init=str(trained)), device="cpu", progress=False)
    with open(run / "log.csv", "a", newline="") as f:  # rows a killed process logged after its last.pt
        f.write("5,0.1,0.01,0.5,10\r\n6,0.1,0.01,0.5,10\r\n7,0.1")  # the last one cut short by the kill
    capsys.readouterr()
    resumed = fit(LineFit(), run, EngineConfig(steps=7, batch_size=8, warmup_steps=1, log_every=1, lr=0.5), device="cpu", progress=False)
    assert read_metadata(resumed).training.started_from == f"model.safetensors sha256:{file_checksum(trained)[:12]}"
    assert [r["step"] for r in log(run)] == [str(s) for s in range(1, 8)]
    assert "other settings than the run had: lr 0.002 -> 0.5" in capsys.readouterr().out


def test_a_run_killed_before_its_first_checkpoint_starts_again_and_bad_settings_are_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text('{"kind": "line", "engine": {}}')  # what a run writes first
    (run / "log.csv").write_text("step,elapsed_s,lr,loss,images_per_s\r\n1,0.1,0.01,0.5,10\r\n")
    fit(LineFit(), run, EngineConfig(steps=2, batch_size=8, warmup_steps=1, log_every=1), device="cpu", progress=False)
    assert [r["step"] for r in log(run)] == ["1", "2"]
    mine = tmp_path / "mine"  # a user's own files by the same names: not a killed run, never cleared
    (mine / "tensorboard").mkdir(parents=True)
    (mine / "config.json").write_text('{"my": "experiment settings"}')
    (mine / "tensorboard" / "events.mine").write_text("important")
    with pytest.raises(InputError, match="holds no checkpoint to resume"):
        fit(LineFit(), mine, EngineConfig(steps=1, batch_size=8), device="cpu", progress=False)
    assert (mine / "tensorboard" / "events.mine").read_text() == "important" and "experiment" in (mine / "config.json").read_text()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        fit(LineFit(), tmp_path / "afile", EngineConfig(steps=1), device="cpu", progress=False)
    for bad in ({"steps": 0}, {"steps": 1, "val_every": 0}, {"minutes": 0.0}):
        with pytest.raises(InputError):
            EngineConfig(**bad)


def test_a_log_file_gets_a_last_progress_line_whichever_budget_ends_the_run(tmp_path: Path,
                                                                              capsys: pytest.CaptureFixture) -> None:
    """On a log file (stderr not a terminal), a short run that a time budget ends still says where it got."""
    fit(LineFit(), tmp_path / "run", EngineConfig(minutes=0.002, batch_size=8, warmup_steps=1), device="cpu", progress=True)
    lines = [line for line in capsys.readouterr().err.splitlines() if ": step " in line]
    assert len(lines) == 1 and lines[0].split(": step ")[1].split()[0] == log(tmp_path / "run")[-1]["step"]


def test_a_resumed_run_takes_the_weight_decay_it_is_given_as_it_says(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    fit(LineFit(), tmp_path / "run", EngineConfig(steps=3, warmup_steps=1), device="cpu", progress=False)
    capsys.readouterr()
    fit(LineFit(), tmp_path / "run", EngineConfig(steps=5, warmup_steps=1, weight_decay=0.05), device="cpu", progress=False)
    assert "weight_decay 0.0001 -> 0.05" in capsys.readouterr().out
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert [g["weight_decay"] for g in state["optimizer"]["param_groups"]] == [0.05]  # the loaded state's was 1e-4
    assert len(state["optimizer"]["state"]) == 4  # and the moments of every parameter were kept


def test_an_update_cut_short_is_not_saved_as_a_finished_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture) -> None:
    cfg = EngineConfig(steps=6, warmup_steps=1, checkpoint_every_s=0.0)  # a periodic last.pt after every step
    original, calls = EMA.update, []

    def update(self, network, step):  # Ctrl-C after the optimizer moved the weights, before the step is counted
        calls.append(step)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return original(self, network, step)

    monkeypatch.setattr(EMA, "update", update)
    with pytest.raises(KeyboardInterrupt):
        fit(LineFit(), tmp_path / "run", cfg, device="cpu", progress=False)
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["step"] == 3  # the save after step 3, not a hybrid
    assert "interrupted inside step 4" in capsys.readouterr().out


def test_resumed_batch_seeds_never_repeat_another_seeds_stream() -> None:
    from medinpaint.engine.loop import batch_seed

    assert batch_seed(3, 1, 0) == 3001  # a fresh run: as before, so recorded step-budget figures stand
    fresh = {batch_seed(seed, p, 0) for seed in range(5) for p in range(4)}
    resumed = {batch_seed(seed, p, step) for seed in range(5) for p in range(4) for step in (1, 100, 1000)}
    assert len(resumed) == 60 and not fresh & resumed  # (seed 0 resumed at step 1000 drew seed 1's stream)


class LineFitWithCritic(LineFit):
    """LineFit with an (idle) adversarial critic, as `--adversarial` adds one to the inpainting U-Net."""

    def build_critic(self) -> nn.Module:
        return nn.Linear(1, 1)

    def critic_loss(self, batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return self.critic(batch).mean() * 0


def test_turning_the_critic_on_when_resuming_is_one_line(tmp_path: Path) -> None:
    fit(LineFit(), tmp_path / "run", EngineConfig(steps=2, warmup_steps=1), device="cpu", progress=False)
    with pytest.raises(InputError, match="saved without an adversarial critic"):
        fit(LineFitWithCritic(), tmp_path / "run", EngineConfig(steps=4, warmup_steps=1), device="cpu", progress=False)


def test_a_batch_state_saved_on_another_kind_of_device_is_refused_softly() -> None:
    """A last.pt written on the GPU (a 16-byte CUDA generator state) resumed on the CPU: no traceback, the
    batches are drawn afresh and the global states still come back."""
    from medinpaint.engine.runstate import random_states, restore_random_states

    gen = torch.Generator().manual_seed(3)
    saved = random_states(gen)
    expected = torch.rand(3)
    forged = {**saved, "batches": torch.zeros(16, dtype=torch.uint8)}
    torch.manual_seed(99)
    assert restore_random_states(forged, gen) is False
    assert torch.equal(torch.rand(3), expected)  # torch's own state was restored
    assert restore_random_states(saved, torch.Generator()) is True



class TermAtSetup(LineFit):
    """LineFit whose process is sent SIGTERM while the run starts, before its first step."""

    def setup(self, device: torch.device) -> None:
        super().setup(device)
        os.kill(os.getpid(), signal.SIGTERM)


def test_a_sigterm_before_the_first_step_saves_what_it_says_and_the_same_command_resumes(tmp_path: Path) -> None:
    cfg = EngineConfig(steps=4, batch_size=4, warmup_steps=1, val_every=100, log_every=1)
    with pytest.raises(StoppedEarly):
        fit(TermAtSetup(), tmp_path / "run", cfg, device="cpu", progress=False)
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["step"] == 0
    fit(LineFit(), tmp_path / "run", cfg, device="cpu", progress=False)  # resumed, not refused
    assert [r["step"] for r in log(tmp_path / "run")] == ["1", "2", "3", "4"]


def test_a_run_resumes_only_with_its_own_seed(tmp_path: Path) -> None:
    """The batches go on from the saved random stream, so a new seed would be recorded but not used."""
    fit(LineFit(), tmp_path / "run", EngineConfig(steps=2, batch_size=8, warmup_steps=1, seed=0), device="cpu", progress=False)
    with pytest.raises(InputError, match=r"run: a run of seed 0, resumed with --seed 7: give its seed"):
        fit(LineFit(), tmp_path / "run", EngineConfig(steps=4, batch_size=8, warmup_steps=1, seed=7), device="cpu", progress=False)
    fit(LineFit(), tmp_path / "run", EngineConfig(steps=4, batch_size=8, warmup_steps=1, seed=0), device="cpu", progress=False)
    assert log(tmp_path / "run")[-1]["step"] == "4"
