"""`medinpaint synth report`: how good are a generator's samples, measured four ways against real slices.

1. fidelity and diversity: Fréchet distance and precision/recall in the features of the project's encoder,
   samples against real training slices; held-out real slices measured the same way give the floor to beat;
2. memorisation: each sample's nearest training slice, the share of near-copies, the closest pairs shown;
3. figures: samples beside real slices, histograms of CT intensity and tissue fractions;
4. utility (when `utility_steps` > 0): inpainting trained on N samples vs on N real slices, same budget and
   masks, MAE on the held-out patients.
Writes summary.json (figures per model), nearest.csv (per sample), samples.png, histograms.png,
closest_pairs.png, and the encoder and utility runs it trained, into one folder that appears only when complete.
"""

from __future__ import annotations

import csv
import functools
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from medinpaint.data import read_slices, split_by_patient
from medinpaint.data.slices import SliceSet, to_uint8
from medinpaint.errors import InputError
from medinpaint.outputs import atomic_dir, check_output_path
from medinpaint.synthesis.data import require_triples, resize_pairs
from medinpaint.synthesis.features import encode, frechet_distance, precision_recall
from medinpaint.synthesis.figures import Triples, plot_closest, plot_grid, plot_histograms, tissue_fractions
from medinpaint.synthesis.generator import Samples, SliceGenerator, load_generator, shipped_size_within, shipped_weights
from medinpaint.synthesis.memorisation import Neighbours, nearest_training, summarise, thumbnails
from medinpaint.synthesis.registry import load_network
from medinpaint.synthesis.task import SynthTrainConfig, train_generator
from medinpaint.synthesis.utility import UtilityTest, pairs_to_slices, samples_to_slices


@dataclass
class ReportConfig:
    n: int = 1000  # samples per model (and at most this many real slices as the reference)
    steps: int | None = None  # diffusion sampler steps (None: the sampler's default)
    sampler: str | None = None
    batch_size: int = 64
    seed: int = 0
    encoder: Path | None = None  # a `synth train --model encoder` checkpoint; None: train one here
    encoder_steps: int = 500
    utility_steps: int = 0  # inpainting steps per utility run; 0 skips the utility test
    utility_base_channels: int = 32
    device: str = "cpu"
    progress: bool = True

    def __post_init__(self) -> None:  # in the report's own option names, before any encoder trains
        if self.n < 2:
            raise InputError(f"-n must be at least 2 to compare distributions, got {self.n}")
        if self.encoder is None and self.encoder_steps < 1:
            raise InputError(f"--encoder-steps must be at least 1 (or give --encoder), got {self.encoder_steps}")
        if self.utility_steps < 0:
            raise InputError(f"--utility-steps must be 0 (no utility test) or more, got {self.utility_steps}")
        if self.utility_base_channels < 1:
            raise InputError(f"--utility-base-channels must be at least 1, got {self.utility_base_channels}")


class RealReference:
    """The real side of every comparison, at the generators' size: training slices (a random n of them for
    features) and held-out slices, with their features and nearest-training-slice distances."""

    @staticmethod
    def split(slices: SliceSet) -> tuple[np.ndarray, np.ndarray]:
        """(training, held-out) slice indices: the generators' own hold-out, whatever their seed."""
        train_idx, val_idx = split_by_patient(slices.ids)
        if len(train_idx) < 2 or len(val_idx) < 2:
            raise InputError("the data need at least two training and two held-out slices (patients 450-499)")
        return train_idx, val_idx

    def __init__(self, slices: SliceSet, size: int, cfg: ReportConfig, features: Callable[[np.ndarray], np.ndarray]) -> None:
        train_idx, val_idx = self.split(slices)
        self.train, self.heldout = slices.subset(train_idx), slices.subset(val_idx)
        self.train_pairs, self.heldout_pairs = resize_pairs(self.train, size), resize_pairs(self.heldout, size)
        rng = np.random.default_rng(cfg.seed)
        self.ref = np.sort(rng.choice(len(self.train), size=min(cfg.n, len(self.train)), replace=False))
        held = np.sort(rng.choice(len(self.heldout), size=min(cfg.n, len(self.heldout)), replace=False))
        self.features = features(self.train_pairs[self.ref, 0])
        self.thumbs = thumbnails(self.train_pairs[:, 0])
        self.heldout_nn = nearest_training(thumbnails(self.heldout_pairs[held, 0]), self.thumbs, progress=cfg.progress)
        self.heldout_features = features(self.heldout_pairs[held, 0])

    def triples(self) -> Triples:
        return self.train_pairs[self.ref, 0], self.train_pairs[self.ref, 1], self.train.vertebrae[self.ref]

    def fidelity(self, fake: np.ndarray) -> dict[str, float]:
        """Fréchet distance, precision and recall of features `fake` against the training reference; also all three
        for as many samples as there are held-out slices, to compare with theirs (each moves with the number of
        samples: k-NN recall falls as the sample set grows)."""
        precision, recall = precision_recall(self.features, fake)
        few = fake[: len(self.heldout_features)]
        few_precision, few_recall = precision_recall(self.features, few)
        return {"fid": frechet_distance(self.features, fake), "fid_at_heldout_n": frechet_distance(self.features, few),
                "precision": precision, "recall": recall, "precision_at_heldout_n": few_precision, "recall_at_heldout_n": few_recall}


def synth_report(weights: list[Path | None], data: Path, output: Path, cfg: ReportConfig, overwrite: bool = False) -> dict:
    """Measure every generator in `weights` (None: the largest shipped generator not above the data's size) against the
    real slices of `data` (the data the generators were trained on) and write the report to `output`."""
    check_output_path(output, [data, *(Path(w) for w in weights if w), *([Path(cfg.encoder)] if cfg.encoder else [])], overwrite)
    slices = read_slices(data)
    require_triples(slices, str(data))
    h, w = slices.images.shape[1:]
    if h != w:
        raise InputError(f"{data}: synthesis works on square slices, got {h}x{w}")
    gens = [load_generator(p, None if p else shipped_size_within(h), device=cfg.device) for p in weights]
    size = gens[0].size
    if any(g.size != size for g in gens):
        raise InputError("all checkpoints in one report must have the same size")
    if size > h:
        raise InputError(f"{data}: the slices are {h}x{w}, smaller than the {size}x{size} generators")
    for gen in gens:  # the sampler's arguments and the split are refused now, not after the encoder has trained
        gen.check_arguments(cfg.n, batch_size=cfg.batch_size, **_sampler_args(gen, cfg))
    RealReference.split(slices)
    seed = gens[0].meta.training.seed  # the report's encoder trains with the generators' seed
    with atomic_dir(output, overwrite=overwrite) as tmp:
        encoder_path = cfg.encoder or train_generator(
            slices, tmp / "encoder", SynthTrainConfig(family="encoder", size=size, steps=cfg.encoder_steps, seed=seed),
            device=cfg.device, progress=cfg.progress)
        encoder, encoder_meta = load_network(encoder_path, "encoder")
        if encoder_meta.preprocessing.size != size:
            raise InputError(f"{encoder_path}: an encoder of {encoder_meta.preprocessing.size}x{encoder_meta.preprocessing.size} "
                             f"slices; the generators make {size}x{size}")
        features = functools.partial(encode, encoder, device=cfg.device, progress=cfg.progress)
        real = RealReference(slices, size, cfg, features)
        heldout = real.fidelity(real.heldout_features)
        body, fat = tissue_fractions(real.triples()[1])
        summary: dict = {
            "size": size, "n": cfg.n, "data": str(data), "train_slices": len(real.train), "heldout_slices": len(real.heldout),
            "real": {"body_fraction": float(body.mean()), "fat_share_of_body": float(fat.mean())},
            "heldout_real": {"n": len(real.heldout_features), **{k: heldout[k] for k in ("fid", "precision", "recall")},
                             "near_copy_share": float(real.heldout_nn.near_copies.mean()),
                             "median_nn_distance": float(np.median(real.heldout_nn.distance))},
            "models": [],
            "encoder": {"path": str(cfg.encoder or "encoder/model.safetensors"), "steps": encoder_meta.training.steps},
        }
        utility = None
        if cfg.utility_steps:
            utility = UtilityTest(pairs_to_slices(real.heldout.ids, real.heldout_pairs, real.heldout.vertebrae), tmp / "utility",
                                  cfg.utility_steps, cfg.utility_base_channels, cfg.seed, cfg.device, cfg.progress)
            ref = real.ref
            real_set = pairs_to_slices([real.train.ids[i] for i in ref], real.train_pairs[ref], real.train.vertebrae[ref])
            real_mae = utility.mae("real", real_set)
            summary["utility"] = {"steps": cfg.utility_steps, "slices": len(ref), "trained_on_slices": utility.trained_on["real"],
                                  "real_mae": real_mae}
        sources, closest, rows = {"real": real.triples()}, [], []
        for k, (gen, path) in enumerate(zip(gens, weights)):
            label = f"{gen.family}-{k}" if len(gens) > 1 else gen.family
            samples, nn, entry = _measure(gen, label, cfg, real, features)
            entry["weights"] = str(path) if path else f"shipped {shipped_weights(size).name}"
            if utility:
                entry["utility_mae"] = utility.mae(label, samples_to_slices(_first(samples, len(real.ref))))
                entry["utility_trained_on_slices"] = utility.trained_on[label]
                entry["utility_mae_vs_real"] = entry["utility_mae"] / summary["utility"]["real_mae"] - 1
            summary["models"].append(entry)
            ct = to_uint8(samples.images[:, 0])
            sources[label] = (ct, samples.tissue, samples.vertebrae)
            ratio = nn.distance / np.maximum(nn.second, 1e-9)
            rows += [(label, i, real.train.ids[nn.index[i]], nn.distance[i], ratio[i], samples.vertebrae[i]) for i in range(len(ct))]
            closest += [(label, ct[i], real.train_pairs[nn.index[i], 0], float(nn.distance[i]), float(ratio[i]))
                        for i in np.argsort(nn.distance)[:4]]
        plot_grid(sources, tmp / "samples.png")
        plot_histograms(sources, tmp / "histograms.png")
        plot_closest(closest, tmp / "closest_pairs.png")
        with open(tmp / "nearest.csv", "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["model", "sample", "nearest_train_id", "rms_distance", "ratio_to_second", "vertebra"])
            out.writerows([(m, i, j, f"{d:.3f}", f"{r:.4f}", int(v)) for m, i, j, d, r, v in rows])
        summary["config"] = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()}
        for finished in tmp.rglob("last.pt"):  # runs trained here are complete: keep their weights, not resume state
            finished.unlink()
        (tmp / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _first(samples: Samples, n: int) -> Samples:
    return Samples(*(part[:n] for part in samples))


def _sampler_args(gen: SliceGenerator, cfg: ReportConfig) -> dict:
    """--steps and --sampler for a diffusion model; a VAE in the same report takes neither."""
    diffusion = gen.family == "diffusion"
    return {"steps": cfg.steps if diffusion else None, "sampler": cfg.sampler if diffusion else None}


def _measure(gen: SliceGenerator, label: str, cfg: ReportConfig, real: RealReference,
             features: Callable[[np.ndarray], np.ndarray]) -> tuple[Samples, Neighbours, dict]:
    """Draw n samples from `gen` and measure them: (samples, their nearest training slices, summary entry)."""
    t0 = time.perf_counter()
    samples = gen.sample(cfg.n, seed=cfg.seed, batch_size=cfg.batch_size, progress=cfg.progress, **_sampler_args(gen, cfg))
    seconds = time.perf_counter() - t0
    nn = nearest_training(thumbnails(samples.images), real.thumbs, progress=cfg.progress)
    body, fat = tissue_fractions(samples.tissue)
    entry = {"label": label, "kind": gen.family, "name": gen.name, "checksum": gen.checksum,
             "trained_on_slices": gen.meta.training.slices, **real.fidelity(features(samples.images)),
             **summarise(nn, real.heldout_nn), "body_fraction": float(body.mean()), "fat_share_of_body": float(fat.mean()),
             "samples_per_s": cfg.n / seconds}
    return samples, nn, entry
