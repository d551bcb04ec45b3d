"""`medinpaint segment ...`: train a segmentation U-Net, segment slices, score segmentations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from medinpaint.cli.options import (Backend, BatchSize, Compile, Crop, DeviceOpt, Init, Minutes, NoProgress, Overwrite, PeakLr,
                                    RunFolder, Seed, Steps, ValEvery, WeightsDtype, network_to_train, resolve_device, user_errors)

segment_app = typer.Typer(no_args_is_help=True, help="Segment slices (e.g. body composition: background / body / fat).")

Values = Annotated[list[int] | None, typer.Option("--class-value", help="label value of each class, in order (repeat; default: "
                                                   "DM-i-AI tissue coding 0/100/255, else the values found)")]


@segment_app.command("train")
@user_errors
def train_cmd(
    data: Annotated[Path, typer.Option("--data", help="images with label maps: DM-i-AI folder (tissue/), .npy folder or PNG pairs")],
    output: RunFolder,
    minutes: Minutes = None,
    steps: Steps = None,
    batch_size: BatchSize = 8,
    lr: PeakLr = 2e-3,
    init: Init = None,
    base_channels: Annotated[int | None, typer.Option(min=1, help="U-Net width at full resolution \\[default: 16]")] = None,
    depth: Annotated[int | None, typer.Option(min=1, help="U-Net resolution levels \\[default: 4]")] = None,
    blocks: Annotated[int | None, typer.Option(min=1, help="residual blocks per level \\[default: 1]")] = None,
    crop: Crop = None,
    no_augment: Annotated[bool, typer.Option("--no-augment", help="no turns and mirrors")] = False,
    class_value: Values = None,
    val_every: ValEvery = 250,
    compile: Compile = False,
    weights_dtype: WeightsDtype = "float32",
    seed: Seed = 0,
    device: DeviceOpt = "auto",
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
) -> None:
    """Train the segmentation U-Net (Dice + cross-entropy); patients 450-499 (or a tenth) are kept for validation."""
    from medinpaint.models import SegmenterConfig
    from medinpaint.segmentation.data import read_labelled
    from medinpaint.segmentation.inference import SEGMENTER_KIND, default_weights
    from medinpaint.outputs import check_not_an_input
    from medinpaint.segmentation.task import SegTrainConfig, train_segmenter

    check_not_an_input(output, [data])  # an existing run folder is resumed, but never one in the data
    labelled = read_labelled(data, tuple(class_value) if class_value else None, require_clean=True)
    network, init_path = network_to_train(
        SegmenterConfig, init, default_weights, (SEGMENTER_KIND,), defaults={"base_channels": 16, "depth": 4, "blocks_per_level": 1},
        given={"classes": len(labelled.values), "base_channels": base_channels, "depth": depth, "blocks_per_level": blocks})
    cfg = SegTrainConfig(steps=steps, minutes=minutes, batch_size=batch_size, lr=lr, crop=crop, augment=not no_augment,
                         val_every=val_every, compile=compile, weights_dtype=weights_dtype, seed=seed, network=network,
                         init=init_path)
    weights = train_segmenter(labelled, output, cfg, device=resolve_device(device), progress=not no_progress, overwrite=overwrite)
    typer.echo(f"weights: {weights}\ncurves: {output / 'progress.png'}")


@segment_app.command("predict")
@user_errors
def predict_cmd(
    input: Annotated[Path, typer.Option("--input", "-i", help="slices: DM-i-AI folder (ct/, else corrupted/), .npy or PNG folder")],
    output: Annotated[Path, typer.Option("--output", "-o", help="folder for the label maps")],
    weights: Annotated[list[Path] | None, typer.Option(help="checkpoint (default: the shipped model); repeat for an ensemble")] = None,
    device: DeviceOpt = "cpu",
    batch_size: Annotated[int, typer.Option(min=1, help="slices per forward pass")] = 16,
    backend: Backend = "auto",
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
) -> None:
    """Segment slices; DM-i-AI and PNG input give OUTPUT/<case id>.png in the labels' coding, .npy gives labels.npy."""
    from medinpaint.outputs import atomic_dir, check_output_path
    from medinpaint.segmentation.data import read_labelled, write_segmentations
    from medinpaint.segmentation.inference import Segmenter

    check_output_path(output, [input, *(weights or [])], overwrite)
    segmenter = Segmenter.from_pretrained(weights or None, device=resolve_device(device), backend=backend)
    data = read_labelled(input, segmenter.values, with_labels=False)
    maps = segmenter.to_values(segmenter.predict(data.images, batch_size=batch_size, progress=not no_progress))
    with atomic_dir(output, overwrite=overwrite) as tmp:
        write_segmentations(tmp, data, maps)
    typer.echo(f"segmented {len(data)} slices into {output}")


@segment_app.command("evaluate")
@user_errors
def evaluate_cmd(
    pred: Annotated[Path, typer.Option("--pred", help="label maps written by `medinpaint segment predict`: a folder of <case id>.png, or a .npy stack")],
    data: Annotated[Path, typer.Option("--data", help="the dataset with its label maps")],
    output: Annotated[Path, typer.Option("--output", "-o", help="report folder")],
    class_value: Values = None,
    overwrite: Overwrite = False,
) -> None:
    """Score segmentations: summary.json (Dice and Jaccard per class, fat fraction error), per_case.csv, cases.png."""
    from medinpaint.outputs import atomic_dir, check_output_path
    from medinpaint.segmentation.data import read_labelled
    from medinpaint.segmentation.evaluate import read_segmentations, score, write_report

    check_output_path(output, [pred, data], overwrite)
    reference = read_labelled(data, tuple(class_value) if class_value else None)
    predicted = read_segmentations(pred, reference)
    metrics = score(reference, predicted)
    with atomic_dir(output, overwrite=overwrite) as tmp:
        summary = write_report(tmp, reference, predicted, metrics)
    typer.echo(json.dumps(summary, indent=1))


@segment_app.command("study")
@user_errors
def study_cmd(
    data: Annotated[Path, typer.Option("--data", help="slices with tissue maps and vertebra levels (DM-i-AI folder or packed cache)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="report folder: results.csv, dice_vs_n.png, summary.md")],
    n: Annotated[list[str] | None, typer.Option("--n", help="real training patients (repeat; 'all' for every one); default 1 2 5 10 25 50 all")] = None,
    seeds: Annotated[int, typer.Option(help="seeds (each also draws the patients)")] = 3,
    ratio: Annotated[list[int] | None, typer.Option("--ratio", help="synthetic pairs per real slice (repeat); default 1 and 4")] = None,
    arm: Annotated[list[str] | None, typer.Option("--arm", help="real, real+own, real+all, synthetic (repeat); default all four")] = None,
    size: Annotated[int, typer.Option(help="slice size the study works at: 64, 128 or 256 (a generator size)")] = 64,
    generator: Annotated[str, typer.Option(help="family of the generator trained on the n patients: vae or diffusion")] = "vae",
    reference: Annotated[Path | None, typer.Option(help="generator trained on all training patients (default: the shipped one)")] = None,
    seg_steps: Annotated[int, typer.Option(help="segmenter training steps per run")] = 120,
    seg_batch_size: Annotated[int, typer.Option(help="segmenter batch size")] = 8,
    seg_base_channels: Annotated[int, typer.Option(min=1, help="segmenter U-Net width (3 levels)")] = 8,
    gen_steps: Annotated[int, typer.Option(help="generator training steps per (n, seed)")] = 120,
    gen_base_channels: Annotated[int, typer.Option(min=1, help="width of the generator trained per (n, seed)")] = 8,
    device: DeviceOpt = "auto",
    overwrite: Overwrite = False,
) -> None:
    """Does adding generated image/label pairs help when real labels are scarce? Fat Dice against n, with seeds."""
    from medinpaint.models import SegmenterConfig
    from medinpaint.segmentation.study import ARMS, StudyConfig, run_study

    ns = tuple(None if v == "all" else _positive_int(v) for v in (n or ["1", "2", "5", "10", "25", "50", "all"]))
    cfg = StudyConfig(ns=ns, seeds=seeds, ratios=tuple(ratio or (1, 4)), arms=tuple(arm or ARMS), size=size, family=generator,
                      reference=reference, seg_steps=seg_steps, seg_batch=seg_batch_size, gen_steps=gen_steps,
                      network=SegmenterConfig(base_channels=seg_base_channels, depth=3), gen_base_channels=gen_base_channels,
                      device=resolve_device(device))
    run_study(data, output, cfg, overwrite=overwrite)
    typer.echo((output / "summary.md").read_text() + f"\nfigure: {output / 'dice_vs_n.png'}")


def _positive_int(text: str) -> int:
    from medinpaint.errors import InputError

    if not text.isdigit() or int(text) < 1:
        raise InputError(f"--n takes a positive number of patients or 'all', got {text!r}")
    return int(text)
