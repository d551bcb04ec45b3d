"""Do generated image/label pairs help a segmentation U-Net when real labels are scarce? The study, as one call.

For n real training patients in `ns` and each seed (the seed also draws which patients: one random order of the
training patients per seed, whose first n are taken, so the sets of one seed are nested), the segmenter is trained
with the same budget on
  real        the n patients' slices, with the 8 symmetries as geometric augmentation;
  real+own    plus pairs sampled from a generator trained on the same n patients only (the honest protocol:
              the generator sees no label the segmenter could not);
  real+all    plus pairs from a reference generator trained on all training patients (it saw more data: a
              reference, not a fair arm);
  synthetic   pairs from the n-patient generator alone;
with `ratios` synthetic pairs per real slice. Every run is scored on all slices of patients 450-499, which no
generator and no segmenter ever trains on. Everything is done at `size` x `size` (64 on a CPU).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from medinpaint.constants import TISSUE_LEVELS
from medinpaint.data import read_slices, split_by_patient
from medinpaint.data.slices import SliceSet, to_uint8
from medinpaint.engine.logs import training_seconds
from medinpaint.data.split import is_validation_case, patient_of
from medinpaint.errors import InputError
from medinpaint.models import SegmenterConfig
from medinpaint.outputs import atomic_file, check_output_path, partial_dir, resumable_dir, settings_key
from medinpaint.segmentation.data import LabelledSet, coding, to_class_ids
from medinpaint.segmentation.evaluate import score
from medinpaint.segmentation.inference import Segmenter
from medinpaint.segmentation.task import SegTrainConfig, train_segmenter
from medinpaint.summaries import mean_sd
from medinpaint.synthesis.data import require_triples, resize_pairs
from medinpaint.synthesis.registry import check_choice

ARMS = ("real", "real+own", "real+all", "synthetic")
ROWS = "rows.jsonl"  # in the work folder of an unfinished study: the rows of its finished blocks
FIELDS = ("n", "seed", "arm", "ratio", "generator", "real_slices", "synthetic_slices", "dice_fat", "dice_body", "mean_dice",
          "fat_fraction_abs_error", "train_seconds")


@dataclass
class StudyConfig:
    ns: tuple[int | None, ...] = (1, 2, 5, 10, 25, 50, None)  # None: all training patients
    seeds: int = 3
    ratios: tuple[int, ...] = (1, 4)  # synthetic pairs per real slice (real+own, real+all)
    synthetic_only: int = 4  # synthetic pairs per real slice the 'synthetic' arm is given
    arms: tuple[str, ...] = ARMS
    size: int = 64
    family: str = "vae"  # the generator trained on the n patients: vae (fast to train and sample) or diffusion
    reference: Path | None = None  # the real+all generator (default: the shipped one of `size`)
    # The defaults finish the whole study (7 n x 3 seeds x 6 runs) in about an hour on 2 CPU cores at 64x64.
    seg_steps: int = 120
    seg_batch: int = 8
    gen_steps: int = 120
    gen_batch: int = 16
    sample_steps: int = 10  # diffusion sampler steps
    network: SegmenterConfig = field(default_factory=lambda: SegmenterConfig(base_channels=8, depth=3))
    gen_base_channels: int = 8
    device: str = "cpu"
    progress: bool = True

    def __post_init__(self) -> None:
        unknown = set(self.arms) - set(ARMS)
        if unknown:
            raise InputError(f"unknown arm {sorted(unknown)[0]!r}: choose from {', '.join(ARMS)}")
        if self.seeds < 1 or not self.ns or any(n is not None and n < 1 for n in self.ns) or any(r < 1 for r in self.ratios):
            raise InputError("--seeds, every n and every ratio must be at least 1")
        if self.family not in ("vae", "diffusion"):  # before the first segmenter trains, not after
            raise InputError(f"--generator must be vae or diffusion (a family that samples slices), got {self.family!r}")
        check_choice(self.family, self.size)  # a size the generators are built for
        for option, value in (("--seg-steps", self.seg_steps), ("--seg-batch-size", self.seg_batch), ("--gen-steps", self.gen_steps),
                              ("the generator's batch size", self.gen_batch), ("the sampler's steps", self.sample_steps)):
            if value < 1:
                raise InputError(f"{option} must be at least 1, got {value}")


def training_patients(ids: list[str]) -> list[str]:
    """The patients a study may train on: every patient outside the validation split, sorted."""
    train_idx, _ = split_by_patient(ids)
    return sorted({patient_of(ids[i]) for i in train_idx})


def pick_patients(patients: list[str], n: int | None, seed: int) -> list[str]:
    """The first n of the seed's random order of `patients` (all of them for None)."""
    order = np.random.default_rng(seed).permutation(len(patients))
    return sorted(patients[i] for i in order[: len(patients) if n is None else n])


def slices_of(data: SliceSet, patients: list[str]) -> SliceSet:
    chosen = set(patients)
    return data.subset([i for i, c in enumerate(data.ids) if patient_of(c) in chosen])


def as_labelled(ids: list[str], ct: np.ndarray, tissue: np.ndarray) -> LabelledSet:
    """uint8 CT and DM-i-AI tissue maps (N, H, W) -> a LabelledSet in the tissue coding."""
    return LabelledSet(list(ids), to_uint8(ct), to_class_ids(tissue, TISSUE_LEVELS, "tissue"), TISSUE_LEVELS,
                       coding(TISSUE_LEVELS), "dmiai")


def small(data: SliceSet, size: int) -> SliceSet:
    """The slices at size x size (CT area-averaged, tissue by majority), with their ids and vertebra levels."""
    pairs = resize_pairs(data, size)
    return SliceSet(list(data.ids), pairs[:, 0], tissue=pairs[:, 1], vertebrae=data.vertebrae, layout="dmiai", source=data.source)


class Study:
    """Runs the arms; every trained network lives under `work`."""

    def __init__(self, data: SliceSet, cfg: StudyConfig, work: Path) -> None:
        require_triples(data, data.source or "study data")
        self.cfg, self.work = cfg, work
        self.data = small(data, cfg.size)
        # only patients 450-499, never a random tenth: the engine would hold out another tenth of the smaller set
        # it is given, and train on the patients scored here
        val_idx = np.flatnonzero([is_validation_case(i) for i in self.data.ids])
        if len(val_idx) == 0:
            raise InputError("the study scores on validation patients 450-499: the data hold none")
        self.patients = training_patients(self.data.ids)
        if not self.patients:
            raise InputError("the data hold no training patients (only validation patients 450-499)")
        too_many = [n for n in cfg.ns if n is not None and n > len(self.patients)]
        if too_many:
            raise InputError(f"--n {too_many[0]}: the data hold {len(self.patients)} training patients; give --n values up "
                             f"to {len(self.patients)}, or all")
        held = self.data.subset(val_idx)
        self.heldout = as_labelled(held.ids, held.images, held.tissue)
        self.validation = self.heldout.subset(np.linspace(0, len(held) - 1, min(64, len(held))).astype(int))
        # loaded now, so that a missing or mis-sized one is refused before the first segmenter trains
        self.reference = self.load_reference() if "real+all" in cfg.arms else None

    def load_reference(self):  # -> SliceGenerator
        """The real+all arm's generator: --reference, else the one shipped for the study's size."""
        from medinpaint.synthesis import load_generator
        from medinpaint.synthesis.generator import shipped_weights

        path = self.cfg.reference or shipped_weights(self.cfg.size, option="--reference")
        generator = load_generator(path, device=self.cfg.device)
        if generator.size != self.cfg.size:
            raise InputError(f"{path}: the reference generator is {generator.size}x{generator.size}, the study {self.cfg.size}")
        return generator

    def own_generator(self, real: SliceSet, name: str, seed: int):  # -> SliceGenerator
        """A generator trained on `real` (the n patients' slices) and nothing else, with the block's seed (a new
        generator per seed: its variance is part of the arm's spread)."""
        from medinpaint.synthesis import load_generator
        from medinpaint.synthesis.registry import network_config
        from medinpaint.synthesis.task import SynthTrainConfig, train_generator

        c = self.cfg
        network = network_config(c.family, c.size, base_channels=c.gen_base_channels).to_dict()
        gcfg = SynthTrainConfig(family=c.family, size=c.size, steps=c.gen_steps, batch_size=c.gen_batch, network=network,
                                warmup_steps=min(200, c.gen_steps // 5), log_every=50, seed=seed)
        weights = train_generator(real, self.work / name, gcfg, device=c.device, progress=False, hold_out=False)
        return load_generator(weights, device=c.device)

    def sample(self, generator, n: int, seed: int) -> LabelledSet:
        kw = {"steps": self.cfg.sample_steps} if generator.family == "diffusion" else {}
        s = generator.sample(n, seed=seed, batch_size=256, **kw)
        return as_labelled([f"synthetic_{i}" for i in range(n)], s.images[:, 0], s.tissue)

    def segment(self, train: LabelledSet, extra: LabelledSet | None, name: str, seed: int) -> tuple[dict, float]:
        """Train on `train` (+ `extra`), score on every held-out slice: (summary, training seconds)."""
        c = self.cfg
        # the validation slices ride along so the engine holds them out and logs their Dice; never trained on
        data = LabelledSet(train.ids + self.validation.ids, np.concatenate([train.images, self.validation.images]),
                           np.concatenate([train.labels, self.validation.labels]), TISSUE_LEVELS, coding(TISSUE_LEVELS), "dmiai")
        cfg = SegTrainConfig(steps=c.seg_steps, batch_size=c.seg_batch, val_every=c.seg_steps, val_cases=len(self.validation),
                             warmup_steps=min(100, c.seg_steps // 5), log_every=50, seed=seed, network=c.network)
        weights = train_segmenter(data, self.work / name, cfg, extra=extra, device=c.device, progress=False, check_classes=False)
        pred = Segmenter.from_pretrained(weights, device=c.device, backend="torch").predict(self.heldout.images, batch_size=64)
        return score(self.heldout, pred).aggregate(), training_seconds(self.work / name)  # the engine's, across resumes

    def runs_per_block(self) -> int:
        """Segmenter runs for one (n, seed)."""
        c = self.cfg
        return ("real" in c.arms) + len(c.ratios) * (("real+own" in c.arms) + ("real+all" in c.arms)) + ("synthetic" in c.arms)

    def run(self, done: list[dict] | None = None, on_block: Callable[[list[dict]], None] | None = None) -> list[dict]:
        """Every run of the study, in order; the (n, seed) blocks complete in `done` (rows of an interrupted study
        of the same config) are taken as they are, and each block computed here is passed to `on_block`."""
        c, rows = self.cfg, []
        plan = [(n, seed) for seed in range(c.seeds) for n in c.ns]
        for k, (n, seed) in enumerate(plan, start=1):
            label = "all" if n is None else str(n)
            kept = [r for r in done or [] if r["n"] == label and r["seed"] == seed]
            if len(kept) == self.runs_per_block():
                rows += kept
                if c.progress:
                    print(f"[{k}/{len(plan)}] n={label}, seed {seed}: done before, kept", flush=True)
                continue
            chosen = pick_patients(self.patients, n, seed)
            real = slices_of(self.data, chosen)
            real_set = as_labelled(real.ids, real.images, real.tissue)
            tag = f"n{label}-s{seed}"
            if c.progress:
                print(f"[{k}/{len(plan)}] n={label} ({len(chosen)} patients, {len(real)} slices), seed {seed}", flush=True)
            block: list[dict] = []

            def record(arm: str, ratio: int, generator: str, extra: LabelledSet | None, synthetic_only: bool = False) -> None:
                train = extra if synthetic_only else real_set
                summary, seconds = self.segment(train, None if synthetic_only else extra, f"{tag}-{arm}-{ratio}", seed)
                block.append({"n": label, "seed": seed, "arm": arm, "ratio": ratio, "generator": generator,
                             "real_slices": 0 if synthetic_only else len(real_set), "synthetic_slices": 0 if extra is None else len(extra),
                             "dice_fat": summary["dice_fat"], "dice_body": summary["dice_body"], "mean_dice": summary["mean_dice"],
                             "fat_fraction_abs_error": summary["fat_fraction_abs_error"], "train_seconds": round(seconds, 1)})

            if "real" in c.arms:
                record("real", 0, "", None)
            needs_own = {"real+own", "synthetic"} & set(c.arms)
            own = self.own_generator(real, f"{tag}-generator", seed) if needs_own else None
            most = max([*c.ratios, c.synthetic_only]) * len(real_set)
            pools = {}
            if own is not None:
                pools["own"] = self.sample(own, most, seed)
            if "real+all" in c.arms:
                pools["all"] = self.sample(self.reference, most, seed)
            for ratio in c.ratios:
                for arm, key in (("real+own", "own"), ("real+all", "all")):
                    if arm in c.arms:
                        record(arm, ratio, f"{c.family} on {len(chosen)} patients" if key == "own" else "reference",
                               pools[key].subset(np.arange(ratio * len(real_set))))
            if "synthetic" in c.arms:
                record("synthetic", c.synthetic_only, f"{c.family} on {len(chosen)} patients",
                       pools["own"].subset(np.arange(c.synthetic_only * len(real_set))), synthetic_only=True)
            rows += block
            if on_block is not None:
                on_block(block)
        return rows


def plot_study(rows: list[dict], out_png: Path, patients_all: int) -> None:
    """Fat Dice against the number of real training patients: one line per arm (and ratio), the seeds' mean,
    their range as a band."""
    fig = Figure(figsize=(8, 5))
    ax = fig.subplots()
    keys = sorted({(r["arm"], r["ratio"]) for r in rows}, key=lambda k: (ARMS.index(k[0]), k[1]))
    x_of = lambda n: patients_all if n == "all" else int(n)  # noqa: E731
    for arm, ratio in keys:
        mine = [r for r in rows if (r["arm"], r["ratio"]) == (arm, ratio)]
        xs = sorted({x_of(r["n"]) for r in mine})
        vals = [[float(r["dice_fat"]) for r in mine if x_of(r["n"]) == x] for x in xs]
        label = arm if arm == "real" else f"{arm} ({ratio}:1)"
        line, = ax.plot(xs, [np.mean(v) for v in vals], "o-", label=label)
        ax.fill_between(xs, [min(v) for v in vals], [max(v) for v in vals], color=line.get_color(), alpha=0.15)
    ax.set_xscale("log")
    ax.set(xlabel="real training patients (log scale)", ylabel="fat Dice on patients 450-499",
           title="Does synthetic data help? (mean over seeds, band: min-max)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)


def summary_table(rows: list[dict]) -> str:
    """A markdown table: fat Dice mean +- sd over seeds per n (rows) and arm (columns)."""
    keys = sorted({(r["arm"], r["ratio"]) for r in rows}, key=lambda k: (ARMS.index(k[0]), k[1]))
    ns = list(dict.fromkeys(r["n"] for r in rows))
    head = ["n"] + [a if a == "real" else f"{a} {r}:1" for a, r in keys]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n in ns:
        cells = [n]
        for key in keys:
            v = [float(r["dice_fat"]) for r in rows if r["n"] == n and (r["arm"], r["ratio"]) == key]
            cells.append(mean_sd(v) if v else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def kept_rows(path: Path) -> list[dict]:
    """The rows of the blocks an interrupted study finished, one JSON object a line (written whole, atomically; a
    line cut short by an older version's interruption is skipped)."""
    rows = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def run_study(data: Path, output: Path, cfg: StudyConfig, overwrite: bool = False) -> list[dict]:
    """The whole study: `output/` gets results.csv, dice_vs_n.png, summary.md, config.json and the runs. An hour on
    a CPU is long enough to be interrupted: the work goes on in `.<output>.partial` beside the output, each finished
    (n, seed) block written to its `rows.jsonl`, and the same command run again resumes after the last one."""
    inputs = [data, *([Path(cfg.reference)] if cfg.reference else [])]
    check_output_path(output, inputs, overwrite)
    slices = read_slices(data)
    study = Study(slices, cfg, partial_dir(output) / "runs")  # refuses the data and the reference before any folder is made
    with resumable_dir(output, settings_key(cfg, inputs), overwrite=overwrite) as tmp:
        kept = tmp / ROWS
        done = kept_rows(kept)
        written = list(done)

        def keep(block: list[dict]) -> None:  # the whole file anew, atomically: an interruption cannot cut a line
            written.extend(block)
            with atomic_file(kept) as part:
                part.write_text("".join(json.dumps(r) + "\n" for r in written))

        rows = study.run(done, keep)
        kept.unlink(missing_ok=True)
        with open(tmp / "results.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        plot_study(rows, tmp / "dice_vs_n.png", len(study.patients))
        (tmp / "summary.md").write_text(f"Fat Dice on {len(study.heldout)} slices of patients 450-499 at {cfg.size}x{cfg.size}, "
                                        f"mean ± sd over {cfg.seeds} seeds\n\n{summary_table(rows)}\n")
        (tmp / "config.json").write_text(json.dumps({**asdict(cfg), "data": str(data)}, indent=1, default=str))
    return rows
