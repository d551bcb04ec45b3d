"""One training loop for the inpainting U-Net, on accelerate: CPU, one GPU (bf16), or several processes (DDP).

The training data stay on the device as uint8 tensors; each step draws slices and masks at random and pairs
them afresh (masks turned and flipped through the 8 symmetries of the square), so no epoch sees the same pair
twice. The learning rate follows a cosine over whichever budget, steps or minutes, runs out first, and the
loop resumes from `last.pt` after a crash with its step count, clock, optimizer and EMA intact.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from medinpaint import runstate
from medinpaint.checkpoint import save_weights
from medinpaint.data.slices import SliceSet, tissue_to_classes, to_uint8
from medinpaint.data.split import split_by_patient
from medinpaint.errors import InputError
from medinpaint.inference import MODEL_KIND
from medinpaint.masks import BrushStrokes
from medinpaint.models import MaskAwareUNet, UNetConfig
from medinpaint.plots import plot_progress

LOG_FIELDS = ("step", "elapsed_s", "lr", "loss", "images_per_s", "val_mae")


@dataclass
class TrainConfig:
    steps: int | None = None  # stop after this many optimizer steps (in total, across resumes)
    minutes: float | None = None  # stop after this much training time (in total, across resumes)
    batch_size: int = 16  # per process
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    ema_decay: float = 0.999
    loss: str = "l1"  # "l1" or "mse", on the missing pixels
    side_dropout: float = 0.1  # chance to hide the tissue map / vertebra level, so both may be absent later
    generated_masks: int = 512  # procedural brush masks added to the pool (all of it when the data have none)
    mask_symmetries: bool = True  # turn and flip pool masks (off when the mask's orientation is the point)
    crop: int | None = None  # train on random square crops of this size (cheaper per image; the net is convolutional)
    val_cases: int = 64
    val_every: int = 200
    log_every: int = 10
    checkpoint_every_s: float = 120.0
    seed: int = 0
    compile: bool = False
    weights_dtype: str = "float32"  # of the exported model.safetensors; float16 halves it for shipping
    model: UNetConfig = field(default_factory=UNetConfig)

    def __post_init__(self) -> None:
        if self.steps is None and self.minutes is None:
            raise InputError("give a budget: --steps N and/or --minutes M")
        if self.weights_dtype not in ("float32", "float16", "bfloat16"):
            raise InputError(f"--weights-dtype must be float32, float16 or bfloat16, got {self.weights_dtype!r}")
        if self.loss not in ("l1", "mse"):
            raise InputError(f"--loss must be l1 or mse, got {self.loss!r}")
        if isinstance(self.model, dict):
            self.model = UNetConfig(**self.model)

    def to_dict(self) -> dict:
        return asdict(self)


class TrainingData:
    """Clean slices, tissue classes, vertebra levels and a mask pool, as tensors on one device."""

    def __init__(self, slices: SliceSet, masks: np.ndarray, device: torch.device) -> None:
        self.clean = torch.from_numpy(to_uint8(slices.clean)).to(device)
        self.tissue = None if slices.tissue is None else torch.from_numpy(tissue_to_classes(slices.tissue).astype(np.int8)).to(device)
        self.vertebrae = None if slices.vertebrae is None else torch.from_numpy(slices.vertebrae.astype(np.int64)).to(device)
        self.masks = torch.from_numpy(masks).to(device)
        self.device = device

    def __len__(self) -> int:
        return len(self.clean)

    def batch(
        self, gen: torch.Generator, size: int, side_dropout: float, symmetries: bool = True, crop: int | None = None
    ) -> dict[str, torch.Tensor | None]:
        """A random batch: slices paired with randomly chosen masks, turned and flipped if `symmetries`,
        cut to one random `crop` x `crop` window if given."""
        dev = self.device
        idx = torch.randint(len(self.clean), (size,), generator=gen, device="cpu").to(dev)
        midx = torch.randint(len(self.masks), (size,), generator=gen, device="cpu").to(dev)
        mask = self.masks[midx]
        if symmetries and mask.shape[-1] == mask.shape[-2]:
            flip = torch.rand(size, 3, generator=gen).to(dev) < 0.5
            mask = torch.where(flip[:, 0, None, None], mask.transpose(-1, -2), mask)
            mask = torch.where(flip[:, 1, None, None], mask.flip(-1), mask)
            mask = torch.where(flip[:, 2, None, None], mask.flip(-2), mask)
        keep_side = (torch.rand(size, generator=gen) >= side_dropout).to(dev)
        tissue = None
        if self.tissue is not None:
            tissue = torch.where(keep_side[:, None, None], self.tissue[idx].long(), torch.full_like(self.tissue[idx].long(), -1))
        verts = None
        if self.vertebrae is not None:
            verts = torch.where(keep_side, self.vertebrae[idx], torch.full_like(self.vertebrae[idx], -1))
        image = self.clean[idx]
        h, w = image.shape[-2:]
        if crop is not None and crop < min(h, w):
            y, x = (int(torch.randint(n - crop + 1, (1,), generator=gen)) for n in (h, w))
            window = (..., slice(y, y + crop), slice(x, x + crop))
            image, mask = image[window], mask[window]
            tissue = None if tissue is None else tissue[window]
        return {"image": image.unsqueeze(1).float() / 255.0, "mask": mask.unsqueeze(1).float(), "tissue": tissue, "vertebrae": verts}


def build_mask_pool(slices: SliceSet, n_generated: int, seed: int) -> np.ndarray:
    """Real masks of the data (if any) plus `n_generated` procedural brush-stroke masks."""
    shape = slices.images.shape[1:]
    rng = np.random.default_rng(seed)
    gen = BrushStrokes()
    parts = [slices.masks] if slices.masks is not None else []
    n = n_generated if parts else max(n_generated, 64)
    if n:
        parts.append(np.stack([gen(rng, shape) for _ in range(n)]))
    return np.concatenate(parts).astype(bool)


def validation_set(slices: SliceSet, n: int, seed: int, pool: np.ndarray) -> SliceSet:
    """Up to `n` validation slices with fixed masks: their own when they have them, else seeded draws from `pool`."""
    rng = np.random.default_rng(seed + 1)
    pick = np.sort(rng.choice(len(slices), size=min(n, len(slices)), replace=False))
    val = slices.subset(pick)
    if val.masks is None or val.truth is None:
        masks = pool[rng.integers(len(pool), size=len(val))]
        clean = to_uint8(val.clean)
        val = SliceSet(val.ids, np.where(masks, 0, clean).astype(np.uint8), masks, clean, val.tissue, val.vertebrae, val.layout)
    return val


def lr_at(cfg: TrainConfig, step: int, elapsed_s: float) -> float:
    """Linear warm-up, then a cosine to 1 % over the budget that runs out first."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    fractions = []
    if cfg.steps:
        fractions.append(step / cfg.steps)
    if cfg.minutes:
        fractions.append(elapsed_s / (cfg.minutes * 60))
    progress = min(1.0, max(fractions))
    return cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))


def masked_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, kind: str) -> torch.Tensor:
    diff = (pred - target).abs() if kind == "l1" else (pred - target) ** 2
    return (diff * mask).sum() / mask.sum().clamp(min=1)


@torch.no_grad()
def evaluate_mae(model: MaskAwareUNet, val: SliceSet, device: torch.device, batch_size: int = 16) -> float:
    """Whole-image MAE (0..255, as the challenge scores it) of `model` on a validation SliceSet."""
    from medinpaint.inference import Inpainter

    was_training = model.training
    filled = Inpainter(model, device=str(device)).predict_slices(val, batch_size=batch_size)
    model.train(was_training)
    return float(np.abs(filled.astype(np.float64) - to_uint8(val.truth).astype(np.float64)).mean())


class EMA:
    """Exponential moving average of a model's weights, kept as a model of its own for validation and export."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        import copy

        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))  # short warm-up so early checkpoints are usable
        for e, p in zip(self.model.parameters(), model.parameters()):
            e.lerp_(p.detach().to(e.dtype), 1 - d)


def prepare(acc: Accelerator, model: torch.nn.Module, opt: torch.optim.Optimizer, ema: EMA, compile: bool
            ) -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.nn.Module]:
    """Put the EMA on the device, use channels-last on GPUs, hand model and optimizer to accelerate;
    (model, optimizer, the callable to train through: compiled if asked)."""
    ema.model.to(acc.device)
    if acc.device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    model, opt = acc.prepare(model, opt)
    return model, opt, torch.compile(model) if compile else model


def optimizer_step(acc: Accelerator, model: torch.nn.Module, opt: torch.optim.Optimizer, ema: EMA, loss: torch.Tensor, step: int) -> None:
    """Backpropagate `loss`, clip the gradient norm at 1, step, and move the EMA: one step of any training loop."""
    opt.zero_grad(set_to_none=True)
    acc.backward(loss)
    acc.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    ema.update(acc.unwrap_model(model), step)


def _config_from_dict(d: dict) -> TrainConfig:
    known = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in d.items() if k in known})


def train(
    data: SliceSet,
    output: Path,
    cfg: TrainConfig,
    device: str | None = None,
    progress: bool = True,
    overwrite: bool = False,
    mask_pool: np.ndarray | None = None,
) -> Path:
    """Train on the non-validation patients of `data`, writing `output/` (weights, log, curves, checkpoint).
    `mask_pool` (N,H,W) bool replaces the default pool (the data's masks plus brush strokes), e.g. to train
    for one known corruption. Returns the path of the final EMA weights, `output/model.safetensors`."""
    output = Path(output)
    resume_path = output / "last.pt"
    cpu = device == "cpu" or (device is None and not torch.cuda.is_available())
    acc = Accelerator(cpu=cpu, mixed_precision="no" if cpu else "bf16")
    if acc.is_main_process:
        if output.exists() and any(output.iterdir()) and not resume_path.exists() and not overwrite:
            raise InputError(f"{output}: already exists and holds no checkpoint to resume (pass --overwrite)")
        output.mkdir(parents=True, exist_ok=True)
    acc.wait_for_everyone()

    train_idx, val_idx = split_by_patient(data.ids, seed=cfg.seed)
    if len(train_idx) == 0:
        raise InputError("no training slices left after holding out the validation patients (450-499)")
    train_set = data.subset(train_idx)
    pool = build_mask_pool(train_set, cfg.generated_masks, cfg.seed) if mask_pool is None else mask_pool.astype(bool)
    val = validation_set(data.subset(val_idx) if len(val_idx) else train_set, cfg.val_cases, cfg.seed, pool)

    torch.manual_seed(cfg.seed)
    model = MaskAwareUNet(cfg.model)
    ema = EMA(model, cfg.ema_decay)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, elapsed = runstate.resume(resume_path, lambda saved: UNetConfig(**saved["model"]) == cfg.model,  # defaults fill new fields
                                    "checkpoint has another model config", model, ema.model, opt, say=acc.print)
    model, opt, forward = prepare(acc, model, opt, ema, cfg.compile)

    tdata = TrainingData(train_set, pool, acc.device)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + acc.process_index + step)

    if acc.is_main_process:
        (output / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
    log_file, writer = runstate.open_log(output / "log.csv", LOG_FIELDS) if acc.is_main_process else (None, None)

    def budget_left() -> bool:
        return (cfg.steps is None or step < cfg.steps) and (cfg.minutes is None or elapsed < cfg.minutes * 60)

    def save_checkpoint() -> None:
        if acc.is_main_process:
            runstate.save(resume_path, acc.unwrap_model(model), ema.model, opt, step, elapsed, cfg.to_dict())

    bar = tqdm(total=cfg.steps, initial=step, disable=not (progress and acc.is_main_process), unit="step", desc="training")
    last_ckpt = time.monotonic()
    model.train()
    try:
        while True:
            stop = torch.tensor(0.0 if budget_left() else 1.0, device=acc.device)
            if acc.reduce(stop, reduction="sum").item() > 0:  # every process stops at the same step
                break
            t0 = time.monotonic()
            lr = lr_at(cfg, step, elapsed)
            for group in opt.param_groups:
                group["lr"] = lr
            b = tdata.batch(gen, cfg.batch_size, cfg.side_dropout, cfg.mask_symmetries, cfg.crop)
            with acc.autocast():
                pred = forward(b["image"], b["mask"], b["tissue"], b["vertebrae"])
                loss = masked_loss(pred.float(), b["image"], b["mask"], cfg.loss)
            optimizer_step(acc, model, opt, ema, loss, step)
            step += 1
            dt = time.monotonic() - t0
            elapsed += dt
            bar.update(1)
            val_mae = ""
            if acc.is_main_process and (step % cfg.val_every == 0 or not budget_left()):
                val_mae = f"{evaluate_mae(ema.model, val, acc.device):.4f}"
                bar.set_postfix(loss=f"{loss.item():.4f}", val_mae=val_mae)
            if writer and (step % cfg.log_every == 0 or val_mae):
                ips = cfg.batch_size * acc.num_processes / max(dt, 1e-9)
                writer.writerow({"step": step, "elapsed_s": f"{elapsed:.2f}", "lr": f"{lr:.3e}", "loss": f"{loss.item():.5f}",
                                 "images_per_s": f"{ips:.1f}", "val_mae": val_mae})
                log_file.flush()
            if time.monotonic() - last_ckpt > cfg.checkpoint_every_s:
                save_checkpoint()
                last_ckpt = time.monotonic()
    finally:
        bar.close()
        save_checkpoint()
        if log_file:
            log_file.close()
    acc.wait_for_everyone()
    final = output / "model.safetensors"
    if acc.is_main_process:
        save_weights(final, ema.model, MODEL_KIND, cfg.model.to_dict(), dtype=getattr(torch, cfg.weights_dtype), name=output.name, steps=step,
                     train_minutes=round(elapsed / 60, 2), train_slices=len(train_set), processes=acc.num_processes)
        plot_progress(output / "log.csv", output / "progress.png")
    acc.wait_for_everyone()
    return final
