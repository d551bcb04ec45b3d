"""One training loop for the synthesis models (diffusion, VAE, feature encoder), on accelerate: CPU or one GPU (bf16).

The training pairs (CT and tissue level at the model's size) stay on the device as uint8; each step draws a
batch at random. It is the inpainting loop's twin (`medinpaint.training`, whose EMA, learning-rate schedule,
device preparation and optimizer step it reuses, with `medinpaint.runstate` for `last.pt` and the CSV log): the
budget is steps and/or minutes in total across resumes, a run resumes from `last.pt`, and patients 450-499 (or
a held-out tenth of patients) are never trained on. Only the loss differs between models (`objectives.py`).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from medinpaint import runstate
from medinpaint.checkpoint import save_weights
from medinpaint.data.slices import SliceSet
from medinpaint.data.split import split_by_patient
from medinpaint.errors import InputError
from medinpaint.synthesis.data import require_triples, resize_pairs, vertebra_counts
from medinpaint.synthesis.diffusion import Diffusion
from medinpaint.synthesis.models import KINDS, build_network, check_choice, network_config
from medinpaint.synthesis.objectives import OBJECTIVES
from medinpaint.training import EMA, lr_at, optimizer_step, prepare

LOG_FIELDS = ("step", "elapsed_s", "lr", "loss", "images_per_s")
DEFAULT_LR = {"diffusion": 3e-4, "vae": 1e-3, "encoder": 1e-3}


@dataclass
class SynthTrainConfig:
    model: str = "diffusion"  # diffusion, vae or encoder
    size: int = 64  # slices are resized to size x size
    steps: int | None = None  # budgets, in total across resumes
    minutes: float | None = None
    batch_size: int = 64
    lr: float | None = None  # None: DEFAULT_LR of the model
    warmup_steps: int = 200
    ema_decay: float = 0.999
    cond_dropout: float = 0.1  # share of steps trained with the null class (unconditional use, guidance)
    kl_weight: float = 0.05  # VAE: beta, the Laplace scale of the reconstruction term
    timesteps: int = 1000  # diffusion steps of the noise schedule
    log_every: int = 10
    checkpoint_every_s: float = 120.0
    seed: int = 0
    compile: bool = False
    weights_dtype: str = "float32"  # of the exported model.safetensors; bfloat16 halves it for shipping
    network: dict = field(default_factory=dict)  # the network config; empty: the default for model and size

    def __post_init__(self) -> None:
        if self.steps is None and self.minutes is None:
            raise InputError("give a budget: --steps N and/or --minutes M")
        check_choice(self.model, self.size)
        if self.weights_dtype not in ("float32", "float16", "bfloat16"):
            raise InputError(f"--weights-dtype must be float32, float16 or bfloat16, got {self.weights_dtype!r}")
        if self.lr is None:
            self.lr = DEFAULT_LR[self.model]
        if not self.network:
            self.network = network_config(self.model, self.size).to_dict()

    def to_dict(self) -> dict:
        return asdict(self)


def train_generator(
    data: SliceSet, output: Path, cfg: SynthTrainConfig, device: str | None = None, progress: bool = True, overwrite: bool = False
) -> Path:
    """Train `cfg.model` on the training patients of `data`, writing `output/` (model.safetensors of the EMA
    weights, log.csv, config.json, last.pt). Returns the path of the weights."""
    output = Path(output)
    resume_path = output / "last.pt"
    require_triples(data, "training data")
    if output.exists() and any(output.iterdir()) and not resume_path.exists() and not overwrite:
        raise InputError(f"{output}: already exists and holds no checkpoint to resume (pass --overwrite)")
    train_idx, _ = split_by_patient(data.ids, seed=cfg.seed)
    if len(train_idx) == 0:
        raise InputError("no training slices left after holding out the validation patients (450-499)")
    train_set = data.subset(train_idx)
    pairs = torch.from_numpy(resize_pairs(train_set, cfg.size))
    levels = torch.from_numpy(train_set.vertebrae.astype("int64"))

    cpu = device == "cpu" or (device is None and not torch.cuda.is_available())
    acc = Accelerator(cpu=cpu, mixed_precision="no" if cpu else "bf16")
    output.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    net = build_network(cfg.model, cfg.network)
    ema = EMA(net, cfg.ema_decay)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=0.0)
    keys = ("model", "size", "network")
    step, elapsed = runstate.resume(resume_path, lambda saved: all(saved[k] == cfg.to_dict()[k] for k in keys),
                                    "checkpoint of another model or size", net, ema.model, opt, say=acc.print)
    net, opt, forward = prepare(acc, net, opt, ema, cfg.compile)
    objective = OBJECTIVES[cfg.model]
    pairs, levels = pairs.to(acc.device), levels.to(acc.device)
    gen = torch.Generator(device=acc.device).manual_seed(cfg.seed * 1000 + step)
    (output / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
    log_file, writer = runstate.open_log(output / "log.csv", LOG_FIELDS)

    def budget_left() -> bool:
        return (cfg.steps is None or step < cfg.steps) and (cfg.minutes is None or elapsed < cfg.minutes * 60)

    def save_checkpoint() -> None:
        runstate.save(resume_path, acc.unwrap_model(net), ema.model, opt, step, elapsed, cfg.to_dict())

    bar = tqdm(total=cfg.steps, initial=step, disable=not progress, unit="step", desc=f"training {cfg.model}")
    last_ckpt = time.monotonic()
    net.train()
    try:
        while budget_left():
            t0 = time.monotonic()
            lr = lr_at(cfg, step, elapsed)  # type: ignore[arg-type]  # reads only the budget fields it shares
            for group in opt.param_groups:
                group["lr"] = lr
            idx = torch.randint(len(pairs), (cfg.batch_size,), generator=gen, device=acc.device)
            with acc.autocast():
                loss = objective(forward, pairs[idx], levels[idx], cfg, gen)
            optimizer_step(acc, net, opt, ema, loss, step)
            step += 1
            dt = time.monotonic() - t0
            elapsed += dt
            bar.update(1)
            if step % cfg.log_every == 0 or not budget_left():
                bar.set_postfix(loss=f"{loss.item():.4f}")
                writer.writerow({"step": step, "elapsed_s": f"{elapsed:.2f}", "lr": f"{lr:.3e}", "loss": f"{loss.item():.5f}",
                                 "images_per_s": f"{cfg.batch_size / max(dt, 1e-9):.1f}"})
                log_file.flush()
            if time.monotonic() - last_ckpt > cfg.checkpoint_every_s:
                save_checkpoint()
                last_ckpt = time.monotonic()
    finally:
        bar.close()
        save_checkpoint()
        log_file.close()
    extra = {"diffusion": Diffusion(cfg.timesteps).to_dict()} if cfg.model == "diffusion" else {}
    return save_weights(output / "model.safetensors", ema.model, KINDS[cfg.model], cfg.network,
                        dtype=getattr(torch, cfg.weights_dtype), size=cfg.size, name=output.name, steps=step,
                        train_minutes=round(elapsed / 60, 2), train_slices=len(train_set), seed=cfg.seed,
                        vertebra_counts=vertebra_counts(train_set.vertebrae), **extra)
