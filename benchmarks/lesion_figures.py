"""The figures of the pathology benchmark: masks from each strategy on the same CT slices and on the MNI152 brain
(grey/white junction), and lesions painted into the same healthy slices by each painter beside simulated "real" ones.

    .venv/bin/python benchmarks/lesion_figures.py --bench runs/lesion-bench --report runs/lesion-protocol \
        -o docs/figures

`--bench` is the output of `medinpaint lesions simulate`, `--report` that of `medinpaint lesions protocol` on it (its
trained mask generator and lesion painter are reused, so the figures show the models the table scored).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from medinpaint.lesions.anatomy import mni152
from medinpaint.lesions.data import read_lesion_folder
from medinpaint.lesions.learned import LearnedMasks
from medinpaint.lesions.masks import AnatomyShapes, Spheres
from medinpaint.lesions.painters import ClassicalPainter, InpaintingPainter


def show(ax, image: np.ndarray, mask: np.ndarray | None, title: str = "") -> None:
    ax.imshow(image, cmap="gray", vmin=0, vmax=255)
    if mask is not None and mask.any():
        ax.contour(mask, levels=[0.5], colors="r", linewidths=0.7)
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def masks_figure(bench: Path, report: Path, out: Path, n: int = 4, seed: int = 0) -> None:
    healthy = read_lesion_folder(bench / "healthy", require_lesions=False)
    real = read_lesion_folder(bench / "lesions", require_lesions=True)
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(healthy), n, replace=False)
    strategies = {"spheres": Spheres(), "anatomy (soft tissue)": AnatomyShapes(centre_in=(1,)),
                  "learned (VAE)": LearnedMasks.from_pretrained(report / "models" / "mask-generator" / "model.safetensors")}
    with_lesion = np.flatnonzero(real.lesions.reshape(len(real), -1).any(1))[:n]
    template = mni152(step=2)
    brain = [template.axial(k) for k in (40, 50)]
    brain_gens = {"spheres": Spheres(radius=(2.0, 5.0)), "grey/white junction": AnatomyShapes(junction=(1, 2), radius=(1.5, 4.0), margin=0.0)}
    fig = Figure(figsize=(2.1 * (len(strategies) + 1 + len(brain_gens)), 2.1 * n))
    axes = fig.subplots(n, len(strategies) + 1 + len(brain_gens), squeeze=False)
    for i in range(n):
        show(axes[i][0], real.images[with_lesion[i]], real.lesions[with_lesion[i]], "simulated 'real'" if i == 0 else "")
        for j, (name, gen) in enumerate(strategies.items(), start=1):
            k = picks[i]
            show(axes[i][j], healthy.images[k], gen(healthy.images[k], healthy.anatomy[k], rng), name if i == 0 else "")
        image, anatomy = brain[i % len(brain)]
        for j, (name, gen) in enumerate(brain_gens.items(), start=len(strategies) + 1):
            show(axes[i][j], image, gen(image, anatomy, rng), f"MNI152: {name}" if i == 0 else "")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def painted_figure(bench: Path, report: Path, out: Path, n: int = 4, seed: int = 1) -> None:
    healthy = read_lesion_folder(bench / "healthy", require_lesions=False)
    real = read_lesion_folder(bench / "lesions", require_lesions=True)
    rng = np.random.default_rng(seed)
    gen = AnatomyShapes(centre_in=(1,))
    picks, masks = [], []
    while len(picks) < n:
        k = int(rng.integers(len(healthy)))
        m = gen(healthy.images[k], healthy.anatomy[k], rng)
        if m.any():
            picks.append(k)
            masks.append(m)
    base, masks = healthy.subset(picks), np.stack(masks)
    painters = {"classical": ClassicalPainter(),
                "inpainting (lesion painter)": InpaintingPainter(report / "models" / "lesion-painter" / "model.safetensors")}
    painted = {name: p(base.images, masks, base.anatomy, rng) for name, p in painters.items()}
    with_lesion = np.flatnonzero(real.lesions.reshape(len(real), -1).any(1))[:n]
    fig = Figure(figsize=(2.1 * (2 + len(painters)), 2.1 * n))
    axes = fig.subplots(n, 2 + len(painters), squeeze=False)
    for i in range(n):
        show(axes[i][0], base.images[i], masks[i], "healthy + mask" if i == 0 else "")
        for j, (name, images) in enumerate(painted.items(), start=1):
            show(axes[i][j], images[i], None, name if i == 0 else "")
        show(axes[i][-1], real.images[with_lesion[i]], None, "simulated 'real'" if i == 0 else "")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("-o", "--output", type=Path, required=True, help="folder for lesion_masks.png and lesion_painted.png")
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    masks_figure(args.bench, args.report, args.output / "lesion_masks.png")
    painted_figure(args.bench, args.report, args.output / "lesion_painted.png")
    print(f"{args.output / 'lesion_masks.png'}\n{args.output / 'lesion_painted.png'}")


if __name__ == "__main__":
    main()
