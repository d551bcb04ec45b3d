"""`medinpaint lesions ...`: lesion masks for healthy slices, lesions painted into them, and the protocol that
compares mask strategies and painters by downstream Dice."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medinpaint.cli.options import DeviceOpt, NoProgress, Overwrite, Seed, resolve_device, user_errors
from medinpaint.errors import InputError
from medinpaint.outputs import check_not_an_input, check_output_path

lesions_app = typer.Typer(no_args_is_help=True, help="Synthetic pathology: lesion masks, lesion painters, the protocol.")

Cases = Annotated[Path, typer.Option("--cases", help="slices with anatomy: images/ + anatomy/ (+ labels/) PNGs, or a DM-i-AI folder / packed cache with tissue maps")]
Output = Annotated[Path, typer.Option("--output", "-o", help="new lesion folder: images/, labels/ (255 = lesion), anatomy/")]
LabelledLesions = Annotated[Path, typer.Option("--lesions", help="labelled lesion cases: images/ + labels/ + anatomy/ PNGs")]
Radius = Annotated[tuple[float, float] | None, typer.Option(help="lesion radius range in pixels (low high); default 2 6")]
DEFAULT_RADIUS = (2.0, 6.0)


def refuse_unused(where: str, **given: object) -> None:
    """Options given (not None) that `where` does not use: one line, rather than silently ignored."""
    unused = [f"--{name.replace('_', '-')}" for name, value in given.items() if value is not None]
    if unused:
        raise InputError(f"{' and '.join(unused)} {'does' if len(unused) == 1 else 'do'} not apply to {where}")


def pair(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    parts = text.split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise InputError(f"expected two class ids like 1,2, got {text!r}")
    return int(parts[0]), int(parts[1])


@lesions_app.command("simulate")
@user_errors
def simulate_cmd(
    healthy: Annotated[Path, typer.Option("--healthy", help="healthy slices with tissue maps (DM-i-AI folder or packed cache)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="new folder: lesions/ (simulated lesions) and healthy/ (other patients)")],
    patients: Annotated[int, typer.Option(min=1, help="patients that get simulated lesions")] = 30,
    healthy_patients: Annotated[int, typer.Option(min=1, help="other patients kept healthy")] = 100,
    fraction: Annotated[float, typer.Option(help="share of a lesion patient's slices with a lesion, above 0 and at most 1")] = 0.6,
    radius: Annotated[tuple[float, float], typer.Option(help="simulated lesion radius range in pixels (low high)")] = (2.5, 6.0),
    seed: Seed = 0,
    overwrite: Overwrite = False,
) -> None:
    """A benchmark with simulated "real" lesions; say plainly that it is simulated when you report it.

    The lesions have a shape family and texture none of the strategies uses, and come from patients outside the
    validation split."""
    from medinpaint.data.split import outside_validation
    from medinpaint.lesions.data import read_healthy_folder, write_lesion_folder
    from medinpaint.lesions.simulate import SimulatedLesions
    import numpy as np

    from medinpaint.outputs import atomic_dir

    if not 0 < fraction <= 1:
        raise InputError(f"--fraction must be above 0 and at most 1, got {fraction:g}")
    check_output_path(output, [healthy], overwrite)
    cases = read_healthy_folder(healthy)
    cases = cases.subset(outside_validation(cases.ids))  # never the validation patients 450-499
    rng = np.random.default_rng(seed)
    order = list(rng.permutation(sorted(set(cases.patients))))
    if len(order) < patients + healthy_patients:
        raise InputError(f"{healthy} has {len(order)} patients outside the validation split (patients 450-499 are "
                         f"never used), fewer than --patients {patients} + --healthy-patients {healthy_patients}")
    sick = SimulatedLesions(radius=radius)(cases.of_patients(set(order[:patients])), rng, fraction)
    with atomic_dir(output, overwrite=overwrite) as tmp:
        for name, part in (("lesions", sick), ("healthy", cases.of_patients(set(order[patients:patients + healthy_patients])))):
            (tmp / name).mkdir()
            write_lesion_folder(tmp / name, part)
    n = int(sick.lesions.reshape(len(sick), -1).any(1).sum())
    typer.echo(f"{output / 'lesions'}: {len(sick)} slices of {patients} patients, {n} with a simulated lesion\n"
               f"{output / 'healthy'}: {healthy_patients} healthy patients")


@lesions_app.command("masks")
@user_errors
def masks_cmd(
    cases: Cases,
    output: Output,
    strategy: Annotated[str, typer.Option(help="spheres, anatomy (distorted ellipsoids in a tissue) or learned")] = "anatomy",
    weights: Annotated[Path | None, typer.Option(help="for --strategy learned: a `lesions train-masks` checkpoint")] = None,
    tissue: Annotated[int | None, typer.Option(help="anatomy: the class lesions are centred in (default 1)")] = None,
    junction: Annotated[str | None, typer.Option(help="anatomy: centre on the junction of two classes, e.g. 1,2 (grey/white), "
                                                      "instead of in --tissue")] = None,
    radius: Radius = None,
    seed: Seed = 0,
    overwrite: Overwrite = False,
) -> None:
    """One lesion mask per slice (empty where a slice has no room), written as labels/ beside the unchanged slices,
    with any lesions the input's own labels/ marked."""
    from medinpaint.lesions.data import LesionSet, read_lesion_folder, write_lesion_folder
    from medinpaint.lesions.masks import AnatomyShapes, Spheres
    from medinpaint.outputs import atomic_dir

    check_output_path(output, [cases, *([weights] if weights else [])], overwrite)
    if strategy == "spheres":
        refuse_unused("--strategy spheres", weights=weights, tissue=tissue, junction=junction)
        generator = Spheres(radius=radius or DEFAULT_RADIUS)
    elif strategy == "anatomy":
        refuse_unused("--strategy anatomy", weights=weights)
        if tissue is not None and junction is not None:
            raise InputError("give --tissue or --junction, not both: a junction's lesions are centred where its two classes meet")
        generator = AnatomyShapes(centre_in=(1 if tissue is None else tissue,), junction=pair(junction), radius=radius or DEFAULT_RADIUS)
    elif strategy == "learned":
        refuse_unused("--strategy learned (its shapes, sizes and places are learnt)", tissue=tissue, junction=junction, radius=radius)
        if weights is None:
            raise InputError("--strategy learned needs --weights (train one with `medinpaint lesions train-masks`)")
        from medinpaint.lesions.learned import LearnedMasks

        generator = LearnedMasks.from_pretrained(weights)
    else:
        raise InputError(f"--strategy must be spheres, anatomy or learned, got {strategy!r}")
    import numpy as np

    data = read_lesion_folder(cases, require_lesions=False)
    if strategy == "learned":
        generator.check_anatomy(data.anatomy_names, cases)
    if strategy == "anatomy":  # a class the anatomy maps do not name would give every slice an empty mask
        unknown = [k for k in (*generator.centre_in, *(generator.junction or ())) if k >= len(data.anatomy_names)]
        if unknown:
            named = ", ".join(f"{k} {n}" for k, n in enumerate(data.anatomy_names))
            raise InputError(f"{cases}: its anatomy has no class {unknown[0]} (it has {named})")
    rng = np.random.default_rng(seed)
    masks = np.stack([generator(data.images[i], data.anatomy[i], rng) for i in range(len(data))])
    with atomic_dir(output, overwrite=overwrite) as tmp:  # lesions the slices already hold keep their labels
        write_lesion_folder(tmp, LesionSet(data.ids, data.images, masks | data.lesions, data.anatomy, data.anatomy_names))
    kept = int(data.lesions.reshape(len(data), -1).any(1).sum())
    typer.echo(f"{int(masks.reshape(len(masks), -1).any(1).sum())} of {len(masks)} slices got a lesion mask"
               f"{f' ({kept} kept the lesions their labels/ marked)' if kept else ''}: {output}")


@lesions_app.command("paint")
@user_errors
def paint_cmd(
    cases: Annotated[Path, typer.Option("--cases", help="a lesion folder whose labels/ are the masks to paint into (`lesions masks` output)")],
    output: Output,
    painter: Annotated[str, typer.Option(help="classical (textured blob) or inpainting (a `lesions train-painter` checkpoint in --weights)")] = "classical",
    weights: Annotated[Path | None, typer.Option(help="the lesion painter's checkpoint, for --painter inpainting")] = None,
    seed: Seed = 0,
    device: DeviceOpt = "cpu",
    overwrite: Overwrite = False,
) -> None:
    """Paint lesions into the slices under their masks; pixels outside the masks stay exactly as they were."""
    from medinpaint.lesions.data import LesionSet, read_lesion_folder, write_lesion_folder
    from medinpaint.lesions.painters import ClassicalPainter, InpaintingPainter
    from medinpaint.outputs import atomic_dir

    check_output_path(output, [cases, *([weights] if weights else [])], overwrite)
    if painter == "inpainting" and weights is None:
        raise InputError("--painter inpainting needs --weights (train one with `medinpaint lesions train-painter`)")
    if painter not in ("classical", "inpainting"):
        raise InputError(f"--painter must be classical or inpainting, got {painter!r}")
    paint = ClassicalPainter() if painter == "classical" else InpaintingPainter(weights, device=resolve_device(device))
    import numpy as np

    data = read_lesion_folder(cases, require_lesions=True)
    if isinstance(paint, InpaintingPainter):
        paint.check_anatomy(data.anatomy_names, cases)
    images = paint(data.images, data.lesions, data.anatomy, np.random.default_rng(seed))
    with atomic_dir(output, overwrite=overwrite) as tmp:
        write_lesion_folder(tmp, LesionSet(data.ids, images, data.lesions, data.anatomy, data.anatomy_names))
    typer.echo(f"painted {int(data.lesions.reshape(len(data), -1).any(1).sum())} slices: {output}")


@lesions_app.command("train-painter")
@user_errors
def train_painter_cmd(
    lesions: LabelledLesions,
    output: Annotated[Path, typer.Option("--output", "-o", help="run folder")],
    steps: Annotated[int, typer.Option(help="optimizer steps")] = 1000,
    base_channels: Annotated[int, typer.Option(min=1, help="U-Net width")] = 16,
    seed: Seed = 0,
    device: DeviceOpt = "auto",
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
) -> None:
    """Train the lesion painter: the inpainting U-Net on the lesion slices, each lesion its own hole."""
    from medinpaint.lesions.data import read_lesion_folder
    from medinpaint.lesions.painters import train_lesion_painter

    check_not_an_input(output, [lesions])  # a run folder, never inside the data
    data = read_lesion_folder(lesions, require_lesions=True)
    weights = train_lesion_painter(data, output, steps, base_channels, seed, resolve_device(device), not no_progress, overwrite)
    typer.echo(f"weights: {weights}")


@lesions_app.command("train-masks")
@user_errors
def train_masks_cmd(
    lesions: LabelledLesions,
    output: Annotated[Path, typer.Option("--output", "-o", help="run folder")],
    steps: Annotated[int, typer.Option(help="optimizer steps")] = 1000,
    seed: Seed = 0,
    device: DeviceOpt = "auto",
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
) -> None:
    """Train the learned mask generator (a conditional VAE on lesion-centred patches of mask and anatomy)."""
    from medinpaint.lesions.data import read_lesion_folder
    from medinpaint.lesions.learned import MaskGenTrainConfig, train_mask_generator

    check_not_an_input(output, [lesions])  # a run folder, never inside the data
    from medinpaint.data.split import outside_validation

    data = read_lesion_folder(lesions, require_lesions=True)
    data = data.subset(outside_validation(data.ids))  # never the validation patients 450-499
    if not data.lesions.any():
        raise InputError(f"{lesions}: no lesions outside the validation patients 450-499, which are never trained on")
    cfg = MaskGenTrainConfig(steps=steps, seed=seed)
    weights = train_mask_generator(data.lesions, data.anatomy, output, cfg, device=resolve_device(device), progress=not no_progress,
                                   overwrite=overwrite, anatomy_names=data.anatomy_names)
    typer.echo(f"weights: {weights}")


@lesions_app.command("protocol")
@user_errors
def protocol_cmd(
    lesions: Annotated[Path, typer.Option("--lesions", help="real labelled lesion cases: images/ + labels/ + anatomy/ PNGs, PATIENT_K names")],
    healthy: Annotated[Path, typer.Option("--healthy", help="healthy cases: images/ + anatomy/ PNGs, or a DM-i-AI folder / packed cache")],
    output: Annotated[Path, typer.Option("--output", "-o", help="report folder: results.csv, results.md, results.png, examples.png")],
    strategy: Annotated[list[str] | None, typer.Option("--strategy", help="repeat: spheres, anatomy, learned (default all)")] = None,
    painter: Annotated[list[str] | None, typer.Option("--painter", help="repeat: classical, inpainting (default both)")] = None,
    seeds: Annotated[int, typer.Option(help="segmenter seeds per arm")] = 3,
    seg_steps: Annotated[int, typer.Option(help="segmenter steps, the same for every arm")] = 300,
    painter_steps: Annotated[int, typer.Option(help="lesion painter steps")] = 300,
    mask_steps: Annotated[int, typer.Option(help="learned mask generator steps")] = 400,
    synthetic_ratio: Annotated[float, typer.Option(help="synthetic lesion slices per real lesion slice")] = 1.0,
    test_fraction: Annotated[float, typer.Option(help="share of lesion patients held out for the test")] = 0.3,
    tissue: Annotated[int | None, typer.Option(help="the anatomy class the anatomy strategy centres lesions in (default 1)")] = None,
    radius: Radius = None,
    device: DeviceOpt = "cpu",
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
) -> None:
    """Real only against real + synthetic for each mask strategy and painter: Dice, coverage, false positives."""
    from medinpaint.lesions.data import read_healthy_folder, read_lesion_folder
    from medinpaint.lesions.protocol import PAINTERS, STRATEGIES, ProtocolConfig, run_protocol

    strategies = tuple(strategy or STRATEGIES)
    if "anatomy" not in strategies:
        refuse_unused("a protocol without --strategy anatomy", tissue=tissue)
    if not {"spheres", "anatomy"} & set(strategies):
        refuse_unused("a protocol of learned masks only (their sizes are learnt)", radius=radius)
    cfg = ProtocolConfig(strategies=strategies, painters=tuple(painter or PAINTERS), seeds=seeds,
                         seg_steps=seg_steps, painter_steps=painter_steps, mask_steps=mask_steps, synthetic_ratio=synthetic_ratio,
                         test_fraction=test_fraction, tissue=1 if tissue is None else tissue, radius=radius or DEFAULT_RADIUS,
                         device=resolve_device(device), progress=not no_progress)
    real, normal = read_lesion_folder(lesions, require_lesions=True), read_healthy_folder(healthy)
    run_protocol(real, normal, output, cfg, [lesions, healthy], overwrite=overwrite)
    typer.echo((output / "results.md").read_text() + f"plot: {output / 'results.png'}  examples: {output / 'examples.png'}")
