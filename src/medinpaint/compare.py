"""`medinpaint compare`: inpainting architectures and losses trained on the same slices, masks, seeds and budget,
scored on the same validation slices, as one table, one plot of validation MAE against time and one figure.

Fair by construction: every run goes through the one training engine with the same `TrainConfig` but for the
architecture, its loss and its seed; the mask pool (brush strokes, or stripes) is drawn once; the validation slices
are drawn once from the validation patients, their masks once from that pool (the patients are unseen, the mask
shapes are the training's: every run meets the same ones), and scored with the same metrics, in 0..255 units:
MAE over the whole image (the challenge's score) and in the mask, PSNR, SSIM, and, for body composition, the Dice
and Jaccard of the fat that `baselines.threshold_tissue` finds in the mask of the filled slice against the truth,
with the cosine similarity of the filled and true pixels in the mask.
"""

from __future__ import annotations

import csv
import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from medinpaint.baselines import threshold_tissue
from medinpaint.data import read_slices, split_by_patient
from medinpaint.data.slices import SliceSet, to_uint8
from medinpaint.errors import InputError, error_about
from medinpaint.evaluation import score
from medinpaint.inference import Inpainter
from medinpaint.losses import LOSSES, PERCEPTUAL_NEEDS_ENCODER
from medinpaint.masks import BrushStrokes, Stripes
from medinpaint.metrics import dice, jaccard
from medinpaint.models.architectures import ARCHITECTURES, config_of, denoises
from medinpaint.outputs import ROW, check_output_path, kept_row, resumable_dir, settings_key
from medinpaint.summaries import mean_sd
from medinpaint.synthesis.data import resize_pairs
from medinpaint.training import TrainConfig, train, validation_set

VARIANTS = {"unet-gan": ("unet", {"adversarial": 0.01})}  # pix2pix's weighting: L1 x 100 against adversarial x 1
DENOISING_LOSS = "v-mse"  # the loss column of a denoising architecture, which trains on its own objective
MASKS = {"brush": BrushStrokes(), "stripes": Stripes(period=6, missing=3, amplitude=2.0)}
FIELDS = ("architecture", "loss", "seed", "mae", "mae_in_mask", "psnr", "ssim", "fat_dice", "fat_jaccard", "cosine",
          "parameters", "steps", "train_seconds", "images_per_s", "cpu_ms_per_slice",
          "trial", "lr", "optimizer", "base_channels", "dropout")  # the last five: tuning trials


@dataclass
class CompareConfig:
    architectures: tuple[str, ...] = ("autoencoder", "unet", "partial-conv", "gated-conv", "ffc", "unet-gan", "diffusion")
    losses: tuple[str, ...] = ("l1",)
    seeds: int = 1
    size: int | None = 64  # slices resized to size x size (64: the CPU scale of fill-gaps); None keeps them
    masks: str = "brush"  # brush (free-form strokes) or stripes
    steps: int | None = None  # the budget, the same for every run: steps and/or minutes (2 minutes when neither)
    minutes: float | None = None
    batch_size: int = 16
    base_channels: int = 16
    val_cases: int = 64
    val_every: int = 50  # steps between points of the validation-MAE curves
    perceptual_encoder: str | None = None  # `synth train --model encoder` checkpoint, for the l1+perceptual loss
    tune: str | None = None  # an architecture to tune with Optuna after the comparison (see `tuning`)
    trials: int = 8
    device: str = "cpu"
    progress: bool = True

    def __post_init__(self) -> None:
        for name in self.architectures:
            if name not in ARCHITECTURES and name not in VARIANTS:
                raise InputError(f"unknown architecture {name!r}: choose from {', '.join([*ARCHITECTURES, *VARIANTS])}")
        for loss in self.losses:
            if loss not in LOSSES:
                raise InputError(f"unknown loss {loss!r}: choose from {', '.join(LOSSES)}")
        if "l1+perceptual" in self.losses and not self.perceptual_encoder:
            raise InputError(PERCEPTUAL_NEEDS_ENCODER)
        if self.tune is not None and self.tune not in ARCHITECTURES and self.tune not in VARIANTS:  # before any training
            raise InputError(f"--tune takes one of {', '.join([*ARCHITECTURES, *VARIANTS])}, got {self.tune!r}")
        if self.masks not in MASKS:
            raise InputError(f"--masks must be one of {', '.join(MASKS)}, got {self.masks!r}")
        if self.steps is None and self.minutes is None:
            self.minutes = 2.0
        if self.seeds < 1:
            raise InputError("--seeds must be at least 1")


def clean_slices(slices: SliceSet, size: int | None) -> SliceSet:
    """The clean slices (with tissue maps and vertebra levels when there are), at `size` x `size`."""
    slices.require_clean()
    if size is None or slices.images.shape[-2:] == (size, size):
        return SliceSet(list(slices.ids), to_uint8(slices.clean), tissue=slices.tissue, vertebrae=slices.vertebrae,
                        layout=slices.layout, source=slices.source)
    if slices.images.shape[1] != slices.images.shape[2]:
        raise error_about(slices.source, f"its {slices.images.shape[2]}x{slices.images.shape[1]} slices are not square: "
                                         "pass --size 0 to compare them at their own size")
    if slices.tissue is None:
        raise error_about(slices.source, "resizing (--size) needs tissue maps to resize with the slices; pass --size 0 to "
                                         "keep the size")
    pairs = resize_pairs(slices, size)
    return SliceSet(list(slices.ids), pairs[:, 0], tissue=pairs[:, 1], vertebrae=slices.vertebrae, layout=slices.layout,
                    source=slices.source)


def fill_metrics(filled: np.ndarray, val: SliceSet) -> dict[str, float]:
    """The shared metrics of `filled` (N, H, W) on the validation slices, means over slices."""
    out = {k: v for k, v in score(val, filled).aggregate().items() if k != "n"}
    pred, truth = to_uint8(filled), to_uint8(val.truth)
    fat_pred, fat_true = threshold_tissue(pred) == 2, threshold_tissue(truth) == 2
    m = val.masks
    out["fat_dice"] = float(np.mean([dice(fat_pred[i] & m[i], fat_true[i] & m[i]) for i in range(len(m))]))
    out["fat_jaccard"] = float(np.mean([jaccard(fat_pred[i] & m[i], fat_true[i] & m[i]) for i in range(len(m))]))
    cos = []
    for i in range(len(m)):
        a, b = pred[i][m[i]].astype(np.float64), truth[i][m[i]].astype(np.float64)
        cos.append(float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12)))
    out["cosine"] = float(np.mean(cos))
    return out


def median_images_per_s(log: list[dict[str, str]]) -> float:
    values = [float(r["images_per_s"]) for r in log if r.get("images_per_s")]
    return statistics.median(values) if values else float("nan")


def compare(data: Path, output: Path, cfg: CompareConfig, overwrite: bool = False) -> list[dict]:
    """Train every (architecture, loss, seed) of `cfg` on `data` and write the report into `output`."""
    inputs = [data, *([Path(cfg.perceptual_encoder)] if cfg.perceptual_encoder else [])]
    check_output_path(output, inputs, overwrite)
    slices = read_slices(data)
    slices = clean_slices(slices, cfg.size)
    shape = slices.images.shape[1:]
    rng = np.random.default_rng(0)
    pool = np.stack([MASKS[cfg.masks](rng, shape) for _ in range(512)])
    _, val_idx = split_by_patient(slices.ids)
    if len(val_idx) == 0:
        raise InputError(f"{data}: no validation patients to score on")
    val = validation_set(slices.subset(val_idx), cfg.val_cases, 0, pool)
    rows: list[dict] = []
    with resumable_dir(output, settings_key(cfg, inputs), overwrite=overwrite) as tmp:  # an interrupted comparison goes on where it stopped

        def scored(folder: Path, *args: object) -> dict:  # a run cut short by the interruption resumes from its last.pt
            return kept_row(folder, lambda: run_one(slices, pool, val, cfg, folder, *args))

        plan = [(a, loss, s) for s in range(cfg.seeds) for a in cfg.architectures for loss in losses_of(a, cfg)]
        for k, (arch, loss, seed) in enumerate(plan, start=1):
            name = f"{arch}-{loss}-s{seed}"
            kept = (tmp / "runs" / name / ROW).is_file()
            if cfg.progress:
                print(f"[{k}/{len(plan)}] {name}" + (": done before, kept" if kept else ""), flush=True)
            rows.append(scored(tmp / "runs" / name, arch, loss, seed, {}, {}))
        trials: list[dict] = []
        if cfg.tune:
            from medinpaint.tuning import tune

            trials = tune(scored, cfg, tmp / "runs")
        with open(tmp / "results.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, FIELDS)
            writer.writeheader()
            writer.writerows(rows + trials)
        (tmp / "results.md").write_text(results_table(rows, cfg, len(val)) + (trials_table(trials) if trials else ""))
        (tmp / "config.json").write_text(json.dumps({**asdict(cfg), "data": str(data)}, indent=1))
        plot_curves(tmp / "runs", tmp / "curves.png")
        plot_cases(tmp, val, [r for r in rows if r["seed"] == 0])
    return rows


def losses_of(arch: str, cfg: CompareConfig) -> tuple[str, ...]:
    """The losses an architecture is trained with: the comparison's, or its own objective if it denoises."""
    return (DENOISING_LOSS,) if denoises(VARIANTS.get(arch, (arch,))[0]) else cfg.losses


def run_one(slices: SliceSet, pool: np.ndarray, val: SliceSet, cfg: CompareConfig, folder: Path, arch: str, loss: str,
            seed: int, network: dict, training: dict) -> dict:
    """Train one run into `folder` with the comparison's shared settings (`network` and `training` override the
    architecture's config and the TrainConfig, for tuning) and score it: one row of results.csv."""
    base, extra = VARIANTS.get(arch, (arch, {}))
    config = config_of(base, {"base_channels": cfg.base_channels, **network})
    tcfg = TrainConfig(**{"steps": cfg.steps, "minutes": cfg.minutes, "batch_size": cfg.batch_size, "seed": seed,
                          "loss": "l1" if loss == DENOISING_LOSS else loss,
                          "architecture": base, "network": config, "val_cases": cfg.val_cases, "log_every": 10,
                          "val_every": cfg.val_every, "mask_symmetries": cfg.masks == "brush",
                          "perceptual_encoder": None if loss == DENOISING_LOSS else cfg.perceptual_encoder, **extra, **training})
    weights = train(slices, folder, tcfg, device=cfg.device, progress=False, mask_pool=pool)
    inpainter = Inpainter.from_pretrained(weights, device=cfg.device, backend="torch")
    t0 = time.perf_counter()
    filled = inpainter.predict_slices(val, batch_size=16)
    ms = (time.perf_counter() - t0) * 1000 / len(val)
    with open(folder / "log.csv", newline="") as f:
        log = list(csv.DictReader(f))
    return {"architecture": arch, "loss": loss, "seed": seed, **fill_metrics(filled, val),
            "parameters": sum(p.numel() for p in inpainter.network.parameters()), "steps": int(log[-1]["step"]),
            "train_seconds": round(float(log[-1]["elapsed_s"]), 1),  # the engine's, across resumes
            "images_per_s": median_images_per_s(log),
            "cpu_ms_per_slice": ms if cfg.device == "cpu" else float("nan")}


def trials_table(trials: list[dict]) -> str:
    """The tuning trials, best validation MAE first."""
    lines = ["", f"Tuning {trials[0]['architecture']} ({len(trials)} Optuna trials, TPE, the same budget each):", "",
             "| trial | lr | optimizer | base channels | dropout | MAE | SSIM |", "|---:|---:|---|---:|---:|---:|---:|"]
    for t in sorted(trials, key=lambda t: t["mae"]):
        lines.append(f"| {t['trial']} | {t['lr']:.2e} | {t['optimizer']} | {t['base_channels']} | {t['dropout']} | "
                     f"{t['mae']:.3f} | {t['ssim']:.4f} |")
    lines += ["", "The best trial was chosen on these validation slices, so its MAE is optimistic as an estimate of the "
              "settings' worth: compare them with the table above through a run of their own, with its seeds."]
    return "\n".join(lines) + "\n"


def results_table(rows: list[dict], cfg: CompareConfig, n_val: int) -> str:
    """Mean ± sd over seeds per (architecture, loss), best MAE first."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["architecture"], r["loss"]), []).append(r)
    cols = ("mae", "mae_in_mask", "psnr", "ssim", "fat_dice", "fat_jaccard", "cosine")
    lines = [f"{n_val} validation slices at {cfg.size or 'full'} px, {cfg.masks} masks, budget "
             f"{cfg.steps or '-'} steps / {cfg.minutes or '-'} min, {cfg.seeds} seed(s)", "",
             "| architecture | loss | " + " | ".join(cols) + " | parameters | images/s | CPU ms/slice |",
             "|---|---|" + "---:|" * (len(cols) + 3)]
    for (arch, loss), rs in sorted(groups.items(), key=lambda kv: statistics.mean(float(r["mae"]) for r in kv[1])):
        cells = [mean_sd([r[c] for r in rs]) for c in cols]
        lines.append(f"| {arch} | {loss} | " + " | ".join(cells) + f" | {rs[0]['parameters']:,} | "
                     f"{statistics.mean(r['images_per_s'] for r in rs):.1f} | {statistics.mean(r['cpu_ms_per_slice'] for r in rs):.1f} |")
    return "\n".join(lines) + "\n"


def plot_curves(runs: Path, out_png: Path) -> None:
    """Validation MAE against optimizer steps and against training time: one colour per architecture and loss, one
    line per seed. Steps are the fair axis when the budget is in steps or the machine is shared; seconds show what a
    wall-clock budget would buy."""
    fig = Figure(figsize=(12, 5))
    by_step, by_time = fig.subplots(1, 2)
    colours: dict[str, str] = {}
    for run in sorted(runs.iterdir()):
        with open(run / "log.csv", newline="") as f:
            points = [(int(r["step"]), float(r["elapsed_s"]), float(r["val_mae"])) for r in csv.DictReader(f) if r.get("val_mae")]
        if not points:
            continue
        group = run.name.rsplit("-s", 1)[0]
        label = None if group in colours else group
        colour = colours.setdefault(group, f"C{len(colours) % 10}")
        steps, seconds, mae = zip(*points)
        by_step.plot(steps, mae, "o-", color=colour, label=label, markersize=3, alpha=0.8)
        by_time.plot(seconds, mae, "o-", color=colour, markersize=3, alpha=0.8)
    by_step.set(xlabel="optimizer steps", ylabel="validation MAE (0..255)", title="Validation MAE against steps")
    by_time.set(xlabel="training seconds", title="Validation MAE against time")
    for ax in (by_step, by_time):
        ax.grid(alpha=0.3)
    by_step.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)


def plot_cases(folder: Path, val: SliceSet, rows: list[dict], n: int = 3) -> None:
    """The same validation cases: corrupted, truth, and each first-seed run's fill."""
    runs = [(f"{r['architecture']} ({r['loss']})", folder / "runs" / f"{r['architecture']}-{r['loss']}-s0" / "model.safetensors")
            for r in rows]
    n = min(n, len(val))
    fills = [Inpainter.from_pretrained(w, backend="torch").predict_slices(val.subset(np.arange(n))) for _, w in runs]
    columns = [("corrupted", val.images[:n]), ("truth", val.truth[:n])] + [(name, f) for (name, _), f in zip(runs, fills)]
    fig = Figure(figsize=(2 * len(columns), 2 * n))
    axes = fig.subplots(n, len(columns), squeeze=False)
    for j, (title, images) in enumerate(columns):
        for i in range(n):
            axes[i][j].imshow(to_uint8(images[i]), cmap="gray", vmin=0, vmax=255)
            axes[i][j].axis("off")
        axes[0][j].set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "cases.png", dpi=100)
