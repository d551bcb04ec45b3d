"""The protocol that compares lesion-mask strategies and painters by what they do for a segmenter.

Given real labelled lesion cases and healthy cases: the lesion patients are split once (seeded) into training and
test patients; every arm trains the same segmentation U-Net (the one engine, the same steps) on the real training
slices, alone ("real") or with synthetic lesion slices made by one mask strategy and one painter from the healthy
cases; every arm is scored on the same test patients, for each seed. Nothing learnt (the learned mask generator,
the lesion painter, the segmenters) ever sees a test patient or a DM-i-AI validation patient (450-499): slices
of those are dropped, and the ids each model trained on are written beside it (`train_ids.json`; a synthetic
slice is named after the healthy slice it was painted into) so anyone can check.

Measures: Dice of the lesion pixels pooled over each test patient's slices, averaged over patients; coverage, the
share of all the test patients' true lesions (connected components of a slice) that the prediction touches; false
positives, the predicted components that touch no true lesion, per patient, averaged over patients.
"""

from __future__ import annotations

import csv
import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from scipy import ndimage

from medinpaint.data.split import outside_validation, training_split
from medinpaint.errors import InputError
from medinpaint.lesions.data import LesionSet
from medinpaint.lesions.masks import AnatomyShapes, MaskGenerator, Spheres, check_radius
from medinpaint.lesions.painters import ClassicalPainter, InpaintingPainter, train_lesion_painter
from medinpaint.outputs import ROW, check_output_path, kept_row, resumable_dir, settings_key
from medinpaint.summaries import mean_sd

STRATEGIES = ("spheres", "anatomy", "learned")
PAINTERS = ("classical", "inpainting")
FIELDS = ("arm", "strategy", "painter", "seed", "dice", "coverage", "false_positives", "synthetic", "real")


@dataclass
class ProtocolConfig:
    strategies: tuple[str, ...] = STRATEGIES
    painters: tuple[str, ...] = PAINTERS
    seeds: int = 3
    test_fraction: float = 0.3  # of the lesion patients, held out for scoring
    synthetic_ratio: float = 1.0  # synthetic lesion slices per real training slice
    seg_steps: int = 300
    painter_steps: int = 300
    mask_steps: int = 400
    base_channels: int = 16
    tissue: int = 1  # the anatomy class the anatomy-conditioned shapes are centred in
    radius: tuple[float, float] = (2.0, 6.0)  # pixels, for spheres and anatomy shapes
    device: str = "cpu"
    progress: bool = True

    def __post_init__(self) -> None:
        for name, given, known in (("strategy", self.strategies, STRATEGIES), ("painter", self.painters, PAINTERS)):
            bad = [g for g in given if g not in known]
            if bad:
                raise InputError(f"unknown {name} {bad[0]!r}: choose from {', '.join(known)}")
        if not 0 < self.test_fraction < 1:
            raise InputError(f"--test-fraction must lie between 0 and 1, got {self.test_fraction}")
        check_radius(self.radius)
        if "anatomy" in self.strategies:
            AnatomyShapes(centre_in=(self.tissue,), radius=self.radius)  # its own checks of --tissue, before any training
        if self.seeds < 1:
            raise InputError("--seeds must be at least 1")
        if not self.synthetic_ratio > 0:
            raise InputError(f"--synthetic-ratio must be above 0, got {self.synthetic_ratio:g}")
        for option, steps in (("--seg-steps", self.seg_steps), ("--painter-steps", self.painter_steps), ("--mask-steps", self.mask_steps)):
            if steps < 1:  # in the protocol's own option names, before any model trains
                raise InputError(f"{option} must be at least 1, got {steps}")


def split_patients(cases: LesionSet, test_fraction: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """(training, test) lesion patients, a seeded split; each side gets at least one patient."""
    patients = sorted(set(cases.patients))
    if len(patients) < 2:
        raise InputError(f"the lesion cases hold {len(patients)} patient(s): the protocol needs two or more to split")
    order = list(np.random.default_rng(seed).permutation(patients))
    n_test = min(max(1, round(len(patients) * test_fraction)), len(patients) - 1)
    return sorted(order[n_test:]), sorted(order[:n_test])


def lesion_scores(pred: np.ndarray, truth: np.ndarray, patients: list[str]) -> dict[str, float]:
    """Dice per patient (pixels pooled over the patient's slices; 1 when both are empty) and false-positive
    components per patient, each averaged over patients; coverage, the share of all true lesions touched."""
    dice, covered, lesions, fps = [], 0, 0, []
    for p in sorted(set(patients)):
        idx = [i for i, q in enumerate(patients) if q == p]
        a, b = pred[idx], truth[idx]
        total = int(a.sum() + b.sum())
        dice.append(2 * float((a & b).sum()) / total if total else 1.0)
        fp = 0
        for s in range(len(idx)):
            true_labels, n_true = ndimage.label(b[s], structure=np.ones((3, 3)))
            hit = np.unique(true_labels[a[s] & b[s]])
            covered += int((hit > 0).sum())
            lesions += n_true
            pred_labels, _ = ndimage.label(a[s], structure=np.ones((3, 3)))
            fp += len(set(np.unique(pred_labels[a[s]])) - set(np.unique(pred_labels[a[s] & b[s]])))
        fps.append(fp)
    return {"dice": float(np.mean(dice)), "coverage": covered / lesions if lesions else float("nan"),
            "false_positives": float(np.mean(fps))}


def synthesize(healthy: LesionSet, generator: MaskGenerator, painter, n: int, rng: np.random.Generator) -> LesionSet:
    """`n` synthetic lesion slices: healthy slices drawn at random, a mask from `generator` on each (slices with no
    room are redrawn), painted by `painter`."""
    picks, masks = [], []
    for _ in range(20 * n):
        if len(picks) == n:
            break
        i = int(rng.integers(len(healthy)))
        mask = generator(healthy.images[i], healthy.anatomy[i], rng)
        if mask.any():
            picks.append(i)
            masks.append(mask)
    if not picks:
        raise InputError("no healthy slice has room for a lesion of this strategy (is the anatomy class present?)")
    base = healthy.subset(picks)
    lesions = np.stack(masks)
    images = painter(base.images, lesions, base.anatomy, rng)
    ids = [f"synthetic_{k}_from_{healthy.ids[i]}" for k, i in enumerate(picks)]  # so train_ids.json shows the source
    return LesionSet(ids, images, lesions, base.anatomy, base.anatomy_names)


class Protocol:
    def __init__(self, lesions: LesionSet, healthy: LesionSet, cfg: ProtocolConfig, work: Path) -> None:
        if lesions.images.shape[1:] != healthy.images.shape[1:]:
            raise InputError(f"lesion slices are {lesions.images.shape[1:]}, healthy ones {healthy.images.shape[1:]}: give one size")
        if lesions.anatomy_names != healthy.anatomy_names:  # class k must mean one tissue on both sides
            raise InputError(f"the lesion cases' anatomy classes are ({', '.join(lesions.anatomy_names)}), the healthy cases' "
                             f"({', '.join(healthy.anatomy_names)}): give cases of one anatomy")
        self.cfg, self.work = cfg, work
        kept_lesions, kept_healthy = outside_validation(lesions.ids), outside_validation(healthy.ids)
        self.dropped_validation = len(lesions) - len(kept_lesions) + len(healthy) - len(kept_healthy)
        lesions, healthy = lesions.subset(kept_lesions), healthy.subset(kept_healthy)
        self.train_patients, self.test_patients = split_patients(lesions, cfg.test_fraction)
        self.train, self.test = lesions.of_patients(set(self.train_patients)), lesions.of_patients(set(self.test_patients))
        self.healthy = healthy.of_patients(set(healthy.patients) - set(self.test_patients))
        if len(self.healthy) == 0:
            raise InputError("no healthy slices left outside the test patients")
        self.dropped_healthy = len(healthy) - len(self.healthy)

    def generators(self) -> dict[str, MaskGenerator]:
        c, out = self.cfg, {}
        if "spheres" in c.strategies:
            out["spheres"] = Spheres(radius=c.radius)
        if "anatomy" in c.strategies:
            out["anatomy"] = AnatomyShapes(centre_in=(c.tissue,), radius=c.radius)
        if "learned" in c.strategies:
            from medinpaint.lesions.learned import LearnedMasks, MaskGenTrainConfig, train_mask_generator

            folder = self.work / "models" / "mask-generator"
            cfg = MaskGenTrainConfig(steps=c.mask_steps, minutes=None, seed=0, log_every=max(c.mask_steps // 10, 1))
            weights = train_mask_generator(self.train.lesions, self.train.anatomy, folder, cfg, device=c.device, progress=False,
                                           anatomy_names=self.train.anatomy_names)
            write_ids(folder, self.train.ids)
            out["learned"] = LearnedMasks.from_pretrained(weights, device=c.device)
        return out

    def painters(self) -> dict:
        c, out = self.cfg, {}
        if "classical" in c.painters:
            out["classical"] = ClassicalPainter()
        if "inpainting" in c.painters:
            folder = self.work / "models" / "lesion-painter"
            weights = train_lesion_painter(self.train, folder, c.painter_steps, c.base_channels, device=c.device)
            write_ids(folder, self.train.ids)
            out["inpainting"] = InpaintingPainter(weights, device=c.device)
        return out

    def segment(self, extra: LesionSet | None, name: str, seed: int) -> dict[str, float]:
        """Train the segmenter on the real training slices (+ `extra`), score it on the test patients."""
        from medinpaint.models import SegmenterConfig
        from medinpaint.segmentation.inference import Segmenter
        from medinpaint.segmentation.task import SegTrainConfig, train_segmenter

        c = self.cfg
        folder = self.work / "runs" / name
        cfg = SegTrainConfig(steps=c.seg_steps, minutes=None, batch_size=16, seed=seed, val_every=c.seg_steps,
                             warmup_steps=min(100, c.seg_steps // 5), log_every=max(c.seg_steps // 10, 1),
                             network=SegmenterConfig(classes=2, base_channels=c.base_channels, depth=3))
        # the engine keeps a tenth of these patients for its validation curve (seeded): a split whose few training
        # patients then hold no lesion still trains (on the synthetic ones, or on background alone)
        weights = train_segmenter(as_labelled(self.train), folder, cfg, extra=None if extra is None else as_labelled(extra),
                                  device=c.device, progress=False, check_classes=False)
        trained = [self.train.ids[i] for i in training_split(self.train.ids)[0]]  # the engine's own split
        write_ids(folder, trained + ([] if extra is None else extra.ids))
        pred = Segmenter.from_pretrained(weights, device=c.device, backend="torch").predict(self.test.images, batch_size=64) == 1
        return {**lesion_scores(pred, self.test.lesions, self.test.patients), "real": len(trained)}

    def run(self) -> tuple[list[dict], dict[str, LesionSet]]:
        """Every arm for every seed: the rows, and the first seed's synthetic sets (for the figures)."""
        c = self.cfg
        generators, painters = self.generators(), self.painters()
        n = max(1, round(c.synthetic_ratio * int(self.train.lesions.reshape(len(self.train), -1).any(1).sum())))
        rows, shown = [], {}
        arms = [("real", None, None)] + [(f"{s}+{p}", s, p) for s in generators for p in painters]
        for seed in range(c.seeds):
            for k, (arm, strategy, painter) in enumerate(arms, start=1):
                folder = self.work / "runs" / f"{arm}-s{seed}"
                kept = (folder / ROW).is_file()  # done before an interruption
                if c.progress:
                    print(f"[seed {seed}, {k}/{len(arms)}] {arm}" + (": done before, kept" if kept else ""), flush=True)
                extra = None
                if strategy is not None and not (kept and seed > 0):  # the first seed's sets are drawn in the figures
                    extra = synthesize(self.healthy, generators[strategy], painters[painter], n, np.random.default_rng([seed, k]))
                    if seed == 0:
                        shown[arm] = extra
                rows.append(kept_row(folder, lambda: {
                    "arm": arm, "strategy": strategy or "", "painter": painter or "", "seed": seed,
                    **self.segment(extra, folder.name, seed), "synthetic": 0 if extra is None else len(extra)}))
        return rows, shown


def as_labelled(cases: LesionSet):  # -> LabelledSet
    from medinpaint.segmentation.data import LabelledSet

    return LabelledSet(list(cases.ids), cases.images, cases.lesions.astype(np.uint8), (0, 1), ("background", "lesion"))


def write_ids(folder: Path, ids: list[str]) -> None:
    (folder / "train_ids.json").write_text(json.dumps(sorted(ids)))


def results_table(rows: list[dict], protocol: Protocol) -> str:
    """Mean ± sd over seeds per arm, best Dice first."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["arm"], []).append(r)
    c = protocol.cfg
    dropped = ", ".join(f"{n} {what} dropped" for n, what in ((protocol.dropped_healthy, "of test patients"),
                                                              (protocol.dropped_validation, "of patients 450-499")) if n)
    lines = [f"{len(protocol.train_patients)} training and {len(protocol.test_patients)} test lesion patients "
             f"({len(protocol.train)} / {len(protocol.test)} slices; each run holds a tenth of the training patients "
             f"(at least one) out for its validation curve: column `real` of results.csv), {len(protocol.healthy)} healthy slices"
             f"{f' ({dropped})' if dropped else ''}; {c.seg_steps} segmenter steps, {c.seeds} seed(s)", "",
             "| arm | Dice | coverage | false positives / case | synthetic slices |", "|---|---:|---:|---:|---:|"]
    for arm, rs in sorted(groups.items(), key=lambda kv: -statistics.mean(r["dice"] for r in kv[1])):
        lines.append(f"| {arm} | {mean_sd([r['dice'] for r in rs])} | {mean_sd([r['coverage'] for r in rs])} | "
                     f"{mean_sd([r['false_positives'] for r in rs])} | {rs[0]['synthetic']} |")
    return "\n".join(lines) + "\n"


def plot_results(rows: list[dict], out_png: Path) -> None:
    """Dice, coverage and false positives per arm: the mean as a bar, each seed as a dot."""
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    fig = Figure(figsize=(12, 4))
    for ax, key, label in zip(fig.subplots(1, 3), ("dice", "coverage", "false_positives"),
                              ("Dice on test patients", "coverage of true lesions", "false positives per case")):
        for x, arm in enumerate(arms):
            values = [r[key] for r in rows if r["arm"] == arm]
            ax.bar(x, np.mean(values), color="C0" if arm == "real" else "C1", alpha=0.6)
            ax.plot([x] * len(values), values, "k.", markersize=5)
        ax.set_xticks(range(len(arms)), arms, rotation=45, ha="right", fontsize=8)
        ax.set_title(label, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)


def plot_examples(real: LesionSet, shown: dict[str, LesionSet], out_png: Path, n: int = 3) -> None:
    """Real lesion slices beside each arm's synthetic ones, the lesion outlined."""
    with_lesion = real.subset(np.flatnonzero(real.lesions.reshape(len(real), -1).any(1))[:n])
    columns = [("real (training)", with_lesion)] + [(arm, s.subset(np.arange(min(n, len(s))))) for arm, s in shown.items()]
    fig = Figure(figsize=(2.2 * len(columns), 2.2 * n))
    axes = fig.subplots(n, len(columns), squeeze=False)
    for j, (title, cases) in enumerate(columns):
        for i in range(n):
            ax = axes[i][j]
            ax.axis("off")
            if i < len(cases):
                ax.imshow(cases.images[i], cmap="gray", vmin=0, vmax=255)
                ax.contour(cases.lesions[i], levels=[0.5], colors="r", linewidths=0.6)
        axes[0][j].set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)


def run_protocol(lesions: LesionSet, healthy: LesionSet, output: Path, cfg: ProtocolConfig, inputs: list[Path],
                 overwrite: bool = False) -> list[dict]:
    """The whole protocol into `output`: results.csv, results.md, results.png, examples.png, splits.json, the
    trained models and segmenter runs under models/ and runs/."""
    check_output_path(output, inputs, overwrite)
    with resumable_dir(output, settings_key(cfg, inputs), overwrite=overwrite) as tmp:  # an interruption keeps the runs
        protocol = Protocol(lesions, healthy, cfg, tmp)
        (tmp / "splits.json").write_text(json.dumps({"train_patients": protocol.train_patients,
                                                     "test_patients": protocol.test_patients}, indent=1))
        rows, shown = protocol.run()
        with open(tmp / "results.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        (tmp / "results.md").write_text(results_table(rows, protocol))
        (tmp / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
        plot_results(rows, tmp / "results.png")
        plot_examples(protocol.train, shown, tmp / "examples.png")
    return rows
