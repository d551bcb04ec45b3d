"""The inpainting commands of `medinpaint` (train, predict, evaluate, benchmark, pack, demo, serve, fill-gaps)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from medinpaint.cli.options import (Backend, BatchSize, Compile, Crop, DeviceOpt, Init, Minutes, NoProgress, Overwrite, PeakLr,
                                    RunFolder, Seed, Steps, ValEvery, WeightsDtype, network_to_train, resolve_device, user_errors)
from medinpaint.cli.lesions import lesions_app
from medinpaint.cli.segment import segment_app
from medinpaint.cli.synth import synth_app
from medinpaint.errors import InputError

if TYPE_CHECKING:
    from medinpaint.inference import Inpainter

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Repair corrupted CT/MRI slices by inpainting, and generate synthetic ones.")

@app.command()
@user_errors
def train(
    data: Annotated[Path, typer.Option("--data", help="training data: DM-i-AI folder, .npy stack, PNG pairs or packed cache")],
    output: RunFolder,
    minutes: Minutes = None,
    steps: Steps = None,
    batch_size: BatchSize = 16,
    lr: PeakLr = 2e-3,
    init: Init = None,
    base_channels: Annotated[int | None, typer.Option(min=1, help="U-Net width at full resolution \\[default: 32]")] = None,
    depth: Annotated[int | None, typer.Option(min=1, help="U-Net resolution levels \\[default: 4]")] = None,
    blocks: Annotated[int | None, typer.Option(min=1, help="residual blocks per level \\[default: 2]")] = None,
    attention: Annotated[bool, typer.Option("--attention", help="self-attention in the bottleneck")] = False,
    loss: Annotated[str, typer.Option(help="l1 or mse on the missing pixels, ssim, or l1+ssim (0.84 SSIM + 0.16 L1)")] = "l1",
    no_tissue: Annotated[bool, typer.Option("--no-tissue", help="do not condition on the tissue map")] = False,
    no_vertebrae: Annotated[bool, typer.Option("--no-vertebrae", help="do not condition on the vertebra level")] = False,
    crop: Crop = None,
    val_every: ValEvery = 200,
    compile: Compile = False,
    weights_dtype: WeightsDtype = "float32",
    seed: Seed = 0,
    device: DeviceOpt = "auto",
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
) -> None:
    """Train the mask-aware U-Net; patients 450-499 (or a held-out tenth of patients) are kept for validation.

    Several processes: `torchrun --nproc_per_node N -m medinpaint train ...` (CPU or GPUs) or
    `accelerate launch --multi_gpu -m medinpaint train ...`."""
    from medinpaint.data import read_slices
    from medinpaint.inference import default_weights
    from medinpaint.models import UNetConfig
    from medinpaint.models.architectures import checkpoint_kind
    from medinpaint.outputs import check_not_an_input
    from medinpaint.training import TrainConfig, train as run_training

    if loss == "l1+perceptual":  # it needs an encoder, which `compare --perceptual-encoder` takes
        raise InputError("--loss l1+perceptual is compared with `medinpaint compare --loss l1+perceptual --perceptual-encoder "
                         "PATH`; train takes l1, mse, ssim or l1+ssim")
    network, init_path = network_to_train(
        UNetConfig, init, default_weights, (checkpoint_kind("unet"),),
        defaults={"base_channels": 32, "depth": 4, "blocks_per_level": 2},
        given={"base_channels": base_channels, "depth": depth, "blocks_per_level": blocks, "attention": attention or None,
               "tissue_classes": 0 if no_tissue else None, "use_vertebrae": False if no_vertebrae else None})
    cfg = TrainConfig(steps=steps, minutes=minutes, batch_size=batch_size, lr=lr, loss=loss, crop=crop, val_every=val_every,
                      compile=compile, weights_dtype=weights_dtype, seed=seed, network=network, init=init_path)
    check_not_an_input(output, [data])  # an existing run folder is resumed, but never one in the data
    slices = read_slices(data)
    weights = run_training(slices, output, cfg, device=resolve_device(device), progress=not no_progress, overwrite=overwrite)
    if os.environ.get("RANK", "0") == "0":  # one line, not one per process, under torchrun / accelerate launch
        typer.echo(f"weights: {weights}\ncurves: {output / 'progress.png'}")


INPUT_KINDS = {"volume": "a volume (NIfTI or DICOM)", "png": "one PNG slice", "slices": "a set of slices"}
PREDICT_OPTION_INPUTS = {"--mask": ("volume", "png"), "--tissue": ("volume", "png"), "--vertebra": ("png",), "--axis": ("volume",),
                         "--modality": ("volume",), "--series": ("volume",), "--dicom-out": ("volume",)}  # the inputs each is for


@app.command()
@user_errors
def predict(
    input: Annotated[Path, typer.Option("--input", "-i", help="slices to fill: DM-i-AI folder, .npy folder or PNG pairs; or "
                                         "one PNG slice, a NIfTI volume, a DICOM series folder or a folder of NIfTI volumes "
                                         "(with --mask)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="folder for the filled slices; for one PNG slice, its .png; "
                                          "for a volume, its .nii.gz (or with --dicom-out a folder)")],
    weights: Annotated[list[Path] | None, typer.Option(help="checkpoint (default: the shipped model); repeat for an ensemble")] = None,
    device: DeviceOpt = "cpu",
    batch_size: Annotated[int, typer.Option(min=1, help="slices per forward pass")] = 8,
    flips: Annotated[bool, typer.Option("--flips", help="also average with the left-right mirrored prediction: twice the time; it did not help the shipped CT model, whose anatomy is not mirror-symmetric")] = False,
    backend: Backend = "auto",
    mask: Annotated[Path | None, typer.Option(help="NIfTI input: the mask volume (1 = missing), or a folder of them "
                                              "\\[default for INPUT/images/: INPUT/masks/]; one PNG slice: its mask PNG "
                                              "(255 = missing)")] = None,
    tissue: Annotated[Path | None, typer.Option(help="NIfTI input: a tissue map volume (0 / 100 / 255), or a folder; one "
                                                "PNG slice: its tissue map PNG")] = None,
    axis: Annotated[int | None, typer.Option(help="NIfTI input: fill slices along this RAS axis (0 sagittal, 1 coronal, 2 axial) "
                                                  "\\[default: 2]")] = None,
    modality: Annotated[str | None, typer.Option(help="NIfTI input: ct (Hounsfield units), mri (percentile scaling) or auto "
                                                      "\\[default: auto]")] = None,
    vertebra: Annotated[int | None, typer.Option(help="one PNG slice: its vertebra level 0..24 (DM-i-AI), if known")] = None,
    series: Annotated[str | None, typer.Option(help="DICOM input: the series to fill, by description or UID")] = None,
    dicom_out: Annotated[bool, typer.Option("--dicom-out", help="DICOM input: write a new DICOM series into OUTPUT (a folder), not NIfTI")] = False,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
) -> None:
    """Fill the missing pixels of slices, NIfTI volumes or a DICOM series.

    DM-i-AI input gives OUTPUT/<case id>.png (uint8, input size); one PNG slice
    (`-i slice.png --mask mask.png -o filled.png`) gives one PNG; a NIfTI volume
    (`-i scan.nii.gz --mask mask.nii.gz -o filled.nii.gz`, or folders, or a folder of `images/` and `masks/`) gives
    volumes of the input's geometry and type; a folder of one DICOM series (`-i SERIES_DIR`) gives a NIfTI volume of
    the series' geometry."""
    from medinpaint.data import read_slices
    from medinpaint.data.dicom import is_dicom_folder
    from medinpaint.data.readers import detect_layout
    from medinpaint.data.volume_slices import is_volume_folder, volume_folder
    from medinpaint.data.volumes import is_nifti
    from medinpaint.data.writers import write_predictions
    from medinpaint.inference import Inpainter
    from medinpaint.outputs import atomic_dir, check_folder_name, check_output_path, check_replaceable

    check_replaceable(output)
    volume = is_nifti(input) or is_dicom_folder(input) or is_volume_folder(input)
    one_png = not volume and input.is_file() and input.suffix.lower() == ".png"
    check_output_path(output, [p for p in (input, mask, tissue, *(weights or [])) if p is not None], overwrite,
                      kind="file" if one_png else "any")  # a volume's is a file or a --dicom-out folder
    kind = "volume" if volume else "png" if one_png else "slices"
    given = {"--mask": mask, "--tissue": tissue, "--vertebra": vertebra, "--axis": axis, "--modality": modality,
             "--series": series, "--dicom-out": dicom_out or None}
    for name, allowed in PREDICT_OPTION_INPUTS.items():
        if given[name] is not None and kind not in allowed:
            scope = " or ".join(INPUT_KINDS[k] for k in allowed)
            what = INPUT_KINDS[kind] if kind != "slices" else f"a set of slices ({detect_layout(input)} layout)"
            raise InputError(f"{input}: {name} is only for {scope}, and this is {what}")
    if volume:
        if mask is None and is_volume_folder(input) and (input / "masks").is_dir():  # README's images/ + masks/ layout
            mask = input / "masks"
        if mask is None:
            raise InputError(f"{input}: a volume (NIfTI or DICOM) needs --mask (a NIfTI volume, or a folder of them matched "
                             "by name, or masks/ beside images/)")
        inpainter = Inpainter.from_pretrained(weights or None, device=resolve_device(device), flips=flips, backend=backend)
        _predict_volumes(inpainter, volume_folder(input) if input.is_dir() else input, mask, output, tissue,
                         2 if axis is None else axis, modality or "auto", series, dicom_out, batch_size, overwrite,
                         not no_progress)
        return
    if one_png:
        _predict_png(input, mask, tissue, vertebra, output, weights, device, flips, backend)
        return
    check_folder_name(output, "the output of a set of slices")
    slices = read_slices(input, require_masks=True)
    inpainter = Inpainter.from_pretrained(weights or None, device=resolve_device(device), flips=flips, backend=backend)
    filled = inpainter.predict_slices(slices, batch_size=batch_size, progress=not no_progress)
    with atomic_dir(output, overwrite=overwrite) as tmp:
        write_predictions(tmp, slices, filled)
    typer.echo(f"filled {len(slices)} slices into {output}")


def _predict_png(image: Path, mask: Path | None, tissue: Path | None, vertebra: int | None, output: Path,
                 weights: list[Path] | None, device: str, flips: bool, backend: str) -> None:
    """One PNG slice and its mask to one filled PNG of the image's size (the output checked by `predict`)."""
    from medinpaint.data.png import write_gray_png
    from medinpaint.data.readers import read_png_slice
    from medinpaint.inference import Inpainter
    from medinpaint.outputs import atomic_file

    if mask is None:
        raise InputError(f"{image}: one PNG slice needs --mask (a PNG of its size, 255 where a pixel is missing)")
    if output.suffix.lower() != ".png":
        raise InputError(f"{output}: the output of one PNG slice must end in .png")
    slices = read_png_slice(image, mask, tissue, vertebra)
    inpainter = Inpainter.from_pretrained(weights or None, device=resolve_device(device), flips=flips, backend=backend)
    filled = inpainter.predict_slices(slices)
    with atomic_file(output) as tmp:
        write_gray_png(tmp, filled[0])
    typer.echo(f"filled {int(slices.masks.sum())} pixels of {image} into {output}")


def _predict_volumes(inpainter: Inpainter, input: Path, mask: Path, output: Path, tissue: Path | None, axis: int, modality: str,
                     series: str | None, dicom_out: bool, batch_size: int, overwrite: bool, progress: bool) -> None:
    """One NIfTI volume or DICOM series to one output file, or a folder of volumes to a folder (named by case,
    nnU-Net style)."""
    from medinpaint.data.dicom import is_dicom_folder
    from medinpaint.data.volumes import case_volume, is_nifti
    from medinpaint.outputs import atomic_dir, check_folder_name
    from medinpaint.volume_inference import fill_nifti, volume_pairs

    if is_nifti(input) or is_dicom_folder(input):
        mask, tissue = (_own_volume(p, input, what) for p, what in ((mask, "mask"), (tissue, "tissue map")))
        record = fill_nifti(inpainter, input, mask, output, tissue, axis, modality, batch_size, progress, series, dicom_out,
                            overwrite)
        kind = record["intensity"]["kind"]
        guessed = "; taken for MRI, as no known voxel is air or fat in HU: pass --modality ct if it is CT" if (
            kind == "percentiles" and modality == "auto") else ""
        typer.echo(f"filled {record['slices_filled']} of {record['slices']} slices into {output} "
                   f"(intensity: {kind}{guessed}, resampled to: {record['resampled_to'] or 'no'})")
        return
    pairs = volume_pairs(input, mask)
    if dicom_out:
        raise InputError(f"{input}: --dicom-out needs a DICOM series as input, not a folder of NIfTI volumes")
    check_folder_name(output, "the output of a folder of volumes")
    with atomic_dir(output, overwrite=overwrite) as tmp:
        for image, mask_path, case in pairs:
            tissue_path = None if tissue is None else case_volume(tissue, image, "tissue map")
            fill_nifti(inpainter, image, mask_path, tmp / f"{case}.nii.gz", tissue_path, axis, modality, batch_size, progress,
                       recorded_output=output / f"{case}.nii.gz")
    typer.echo(f"filled {len(pairs)} volumes into {output}")


def _own_volume(given: Path | None, image: Path, what: str) -> Path | None:
    """The `what` of one volume: the file given, or, given a folder of them, the one matched by the image's name
    (a DICOM series, which has no file name to match, needs the file)."""
    from medinpaint.data.volumes import case_volume, is_nifti

    if given is None or not given.is_dir():
        return given
    if not is_nifti(image):
        raise InputError(f"{given}: a DICOM series needs its {what} as one NIfTI file, not a folder")
    return case_volume(given, image, what)


@app.command()
@user_errors
def evaluate(
    pred: Annotated[Path, typer.Option("--pred", help="predictions written by `medinpaint predict`")],
    data: Annotated[Path, typer.Option("--data", help="the dataset with ground truth (ct/) and masks")],
    output: Annotated[Path, typer.Option("--output", "-o", help="report folder")],
    overwrite: Overwrite = False,
) -> None:
    """Score predictions: summary.json (means first), per_case.csv and cases.png (best and worst)."""
    from medinpaint.data import read_slices
    from medinpaint.evaluation import read_predictions, score, write_report
    from medinpaint.outputs import atomic_dir, check_output_path

    check_output_path(output, [pred, data], overwrite)
    reference = read_slices(data, require_masks=True, require_truth=True)
    filled = read_predictions(pred, reference)
    metrics = score(reference, filled)
    with atomic_dir(output, overwrite=overwrite) as tmp:
        summary = write_report(tmp, reference, filled, metrics)
    typer.echo(json.dumps(summary, indent=1))


@app.command()
@user_errors
def benchmark(
    data: Annotated[Path, typer.Option("--data", help="dataset with ground truth")],
    weights: Annotated[list[Path] | None, typer.Option(help="model checkpoints to compare (default: the shipped one)")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="score only the first N validation cases")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write the table as JSON here")] = None,
    device: DeviceOpt = "cpu",
    flips: Annotated[bool, typer.Option("--flips", help="also score each model with test-time flips")] = False,
    ensemble: Annotated[bool, typer.Option("--ensemble", help="also score the average of all --weights")] = False,
    backend: Backend = "auto",
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
) -> None:
    """Classical baselines beside models on the same validation cases, as one table."""
    from rich.console import Console
    from rich.table import Table

    from medinpaint.benchmarking import compare
    from medinpaint.outputs import atomic_file, check_output_path

    if output is not None:
        check_output_path(output, [data, *(weights or [])], overwrite, kind="file")

    results = compare(data, weights or [None], limit=limit, device=resolve_device(device), flips=flips,
                      progress=not no_progress, ensemble=ensemble, backend=backend)
    table = Table(title=f"inpainting on {results[0]['n']} cases of {data}")
    for col in ("method", "mae", "mae_in_mask", "psnr", "ssim", "ms_per_slice"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for r in results:
        table.add_row(r["method"], f"{r['mae']:.3f}", f"{r['mae_in_mask']:.2f}", "inf" if r["psnr"] is None else f"{r['psnr']:.2f}", f"{r['ssim']:.4f}", f"{r['ms_per_slice']:.1f}")
    Console().print(table)
    if output is not None:
        with atomic_file(output) as tmp:
            tmp.write_text(json.dumps(results, indent=1))


@app.command()
@user_errors
def pack(
    input: Annotated[Path, typer.Option("--input", "-i", help="dataset to pack")],
    output: Annotated[Path, typer.Option("--output", "-o", help="cache folder")],
    validation_cases: Annotated[int | None, typer.Option(min=0, help="keep at most N slices of validation patients (0: none)")] = None,
    overwrite: Overwrite = False,
) -> None:
    """Pack a dataset into compressed uint8 shards (<= 60 MB each) for fast loading and carrying."""
    import numpy as np

    from medinpaint.data import read_slices, split_by_patient
    from medinpaint.data.cache import pack as pack_cache
    from medinpaint.outputs import atomic_dir, check_output_path

    check_output_path(output, [input], overwrite)
    slices = read_slices(input)
    if validation_cases is not None:
        train_idx, val_idx = split_by_patient(slices.ids)
        slices = slices.subset(np.sort(np.concatenate([train_idx, val_idx[:validation_cases]])))
    with atomic_dir(output, overwrite=overwrite) as tmp:
        shards = pack_cache(slices, tmp)
    typer.echo(f"packed {len(slices)} slices into {len(shards)} shards in {output}")


@app.command()
@user_errors
def demo(
    output: Annotated[Path, typer.Option("--output", "-o", help="folder for predictions and the report")] = Path("medinpaint-demo"),
    overwrite: Overwrite = False,
) -> None:
    """Fill the bundled sample cases with the shipped model, then score them and draw the figure."""
    from medinpaint.outputs import check_output_path
    from medinpaint.samples import sample_dir

    samples = sample_dir()
    for part in ("predictions", "report"):  # both refused before any work: never half a demo written
        check_output_path(output / part, [samples], overwrite)
    predict(input=samples, output=output / "predictions", weights=None, device="cpu", batch_size=4, flips=False,
            overwrite=overwrite, no_progress=True)
    evaluate(pred=output / "predictions", data=samples, output=output / "report", overwrite=overwrite)
    typer.echo(f"figure: {output / 'report' / 'cases.png'}")


@app.command()
@user_errors
def serve(
    host: Annotated[str, typer.Option(help="address to listen on: 0.0.0.0 for every interface, as an evaluation service on another machine (DM-i-AI's) needs")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="port (DM-i-AI's template uses 9050)")] = 9050,
    weights: Annotated[Path | None, typer.Option(help="checkpoint (default: the shipped model)")] = None,
    device: DeviceOpt = "cpu",
    workers: Annotated[int, typer.Option(min=1, help="server processes, each with its own copy of the model")] = 1,
    flips: Annotated[bool, typer.Option("--flips", help="also average with the left-right mirrored prediction: twice the time; it did not help the shipped CT model, whose anatomy is not mirror-symmetric")] = False,
    max_batch: Annotated[int | None, typer.Option(min=1, help="most concurrent slices filled in one forward pass (default: 8 on a GPU, 1 = none on CPU)")] = None,
    backend: Backend = "auto",
) -> None:
    """Serve the DM-i-AI /predict API, /predict/batch, /health, the docs at /docs and a page at /ui/."""
    from medinpaint.serve.server import run

    run(host=host, port=port, weights=weights, device=resolve_device(device), workers=workers, flips=flips, max_batch=max_batch, backend=backend)


@app.command("fill-gaps")
@user_errors
def fill_gaps(
    input: Annotated[Path, typer.Option("--input", "-i", help="corrupted slices: .npy (N,H,W) or (N,1,H,W), uint8 or float in [0,1]")],
    output: Annotated[Path, typer.Option("--output", "-o", help="the filled slices, .npy in the input's shape and dtype")],
    generator: Annotated[Path | None, typer.Option(help="synthesis checkpoint for the training slices (default: the shipped one nearest the slices' size, resampled to it)")] = None,
    train_images: Annotated[Path | None, typer.Option(help="clean training slices instead of synthetic ones: .npy or any dataset")] = None,
    n_train: Annotated[int, typer.Option(min=1, help="training slices to sample or take")] = 5000,
    minutes: Annotated[float, typer.Option(help="training-time budget")] = 5.0,
    steps: Annotated[int | None, typer.Option(min=1, help="also stop after this many steps")] = None,
    missing_value: Annotated[float, typer.Option(help="the value of missing pixels, in the input's units")] = 0,
    figures: Annotated[Path | None, typer.Option(help="folder for figures and a report of the choices made")] = None,
    seed: Seed = 0,
    device: DeviceOpt = "auto",
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
) -> None:
    """Fill an unlabelled set's gaps, learnt from clean (by default synthetic) slices corrupted the same way.

    Finds the missing pixels, trains a U-Net from scratch on clean slices corrupted the same way, and fills the set:
    same order, shape and dtype; pixels of any value but the missing one unchanged, and known black ones too except
    under free-form masks, where gaps cannot be told from black and every pixel of the missing value is filled."""
    from medinpaint.fillgaps.command import run_fill_gaps

    text = run_fill_gaps(input, output, train_images, generator, n_train, minutes, steps, missing_value,
                         resolve_device(device), figures, seed, overwrite, not no_progress)
    typer.echo(text)


@app.command("compare")
@user_errors
def compare_cmd(
    data: Annotated[Path, typer.Option("--data", help="slices with ground truth: DM-i-AI folder, packed cache, ...")],
    output: Annotated[Path, typer.Option("--output", "-o", help="report folder: results.csv, results.md, curves.png, cases.png")],
    architecture: Annotated[list[str] | None, typer.Option("--architecture", "--architectures", help="repeat or comma-separate; default: autoencoder unet partial-conv gated-conv ffc unet-gan diffusion")] = None,
    loss: Annotated[list[str] | None, typer.Option("--loss", "--losses", help="repeat or comma-separate: l1, mse, ssim, l1+ssim, l1+perceptual (default l1; diffusion trains on its own objective)")] = None,
    size: Annotated[int, typer.Option(min=0, help="slices resized to SIZE x SIZE (64 on a CPU; 0 keeps them)")] = 64,
    masks: Annotated[str, typer.Option(help="brush (free-form) or stripes")] = "brush",
    minutes: Annotated[float | None, typer.Option(help="training-time budget of each run (2 when --steps is not given either)")] = None,
    steps: Steps = None,
    seeds: Annotated[int, typer.Option(help="seeds per architecture and loss")] = 1,
    batch_size: BatchSize = 16,
    base_channels: Annotated[int, typer.Option(min=1, help="width at full resolution, for every architecture")] = 16,
    perceptual_encoder: Annotated[Path | None, typer.Option(help="encoder checkpoint for --loss l1+perceptual")] = None,
    tune: Annotated[str | None, typer.Option(help="also tune this architecture with Optuna (lr, optimizer, width, dropout)")] = None,
    trials: Annotated[int, typer.Option(min=1, help="Optuna trials for --tune")] = 8,
    device: DeviceOpt = "cpu",
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
) -> None:
    """Inpainting architectures and losses on the same slices, masks, seeds and budget: one table, curves, a figure."""
    from medinpaint.compare import CompareConfig, compare

    split = lambda values: tuple(v for item in values for v in item.split(",") if v)  # noqa: E731
    cfg = CompareConfig(architectures=split(architecture or CompareConfig.architectures), losses=split(loss or ("l1",)),
                        seeds=seeds, size=size or None, masks=masks, steps=steps, minutes=minutes, batch_size=batch_size,
                        base_channels=base_channels, device=resolve_device(device), progress=not no_progress,
                        perceptual_encoder=str(perceptual_encoder) if perceptual_encoder else None, tune=tune, trials=trials)
    compare(data, output, cfg, overwrite=overwrite)
    typer.echo((output / "results.md").read_text() + f"curves: {output / 'curves.png'}  cases: {output / 'cases.png'}")


@app.command("info")
@user_errors
def info_cmd(
    weights: Annotated[list[Path] | None, typer.Argument(help="checkpoints (default: every shipped one)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON list instead of the cards")] = False,
) -> None:
    """What a checkpoint is and how it was made: kind, parameters, sha256, network, data, training, provenance."""
    from medinpaint.model_card import describe, format_card, shipped_checkpoints

    cards = [describe(p) for p in (weights or shipped_checkpoints())]
    typer.echo(json.dumps(cards, indent=1) if as_json else "\n\n".join(map(format_card, cards)))


app.add_typer(synth_app, name="synth")
app.add_typer(segment_app, name="segment")
app.add_typer(lesions_app, name="lesions")
