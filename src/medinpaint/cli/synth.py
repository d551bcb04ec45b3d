"""`medinpaint synth ...`: train generators, sample from them, and report how good the samples are."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from medinpaint.cli.options import (BatchSize, Compile, DeviceOpt, Minutes, NoProgress, Overwrite, RunFolder, Seed, Steps,
                                    WeightsDtype, resolve_device, user_errors)
from medinpaint.errors import InputError

synth_app = typer.Typer(no_args_is_help=True, help="Generate synthetic slices with tissue maps; train and judge the generators.")

SamplerSteps = Annotated[int | None, typer.Option("--steps", help="diffusion sampler steps (default: 25 for ddim, 1000 for ddpm, 10 for dpm++)")]
SampleBatch = Annotated[int, typer.Option("--batch-size", min=1, help="samples per forward pass; each sample's noise is "
                                         "seeded by the seed and its index, so the batch size does not change the samples")]
Sampler = Annotated[str | None, typer.Option("--sampler", help="ddim (deterministic given the seed), ddpm, or dpm++ (DPM-Solver++(2M), deterministic, few steps)")]


@synth_app.command("train")
@user_errors
def train_cmd(
    data: Annotated[Path, typer.Option("--data", help="real slices with tissue maps and vertebra levels (DM-i-AI folder or packed cache)")],
    output: RunFolder,
    family: Annotated[str | None, typer.Option("--model", help="family: diffusion, vae, or encoder (the feature network of "
                                               "`synth report`) \\[default: diffusion, or --init's]")] = None,
    size: Annotated[int | None, typer.Option(help="resolution: 64, 128 or 256 (the data are resized) \\[default: 64, or --init's]")] = None,
    init: Annotated[str | None, typer.Option("--init", help="fine-tune: start from this generator checkpoint ('default': the "
                                             "shipped one of --size); family, size and network come from it")] = None,
    minutes: Minutes = None,
    steps: Steps = None,
    batch_size: BatchSize = 64,
    lr: Annotated[float | None, typer.Option(help="peak learning rate (default: 3e-4 diffusion, 1e-3 otherwise)")] = None,
    base_channels: Annotated[int | None, typer.Option(min=1, help="network width at full resolution (default: by family and size)")] = None,
    blocks: Annotated[int | None, typer.Option(min=1, help="diffusion: residual blocks per level (default 2)")] = None,
    compile: Compile = False,
    weights_dtype: WeightsDtype = "float32",
    seed: Seed = 0,
    device: DeviceOpt = "auto",
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
) -> None:
    """Train a generator (or the report's feature encoder); patients 450-499 are never trained on."""
    from medinpaint.data import read_slices
    from medinpaint.outputs import check_not_an_input
    from medinpaint.synthesis.task import SynthTrainConfig, train_generator

    check_not_an_input(output, [data])  # an existing run folder is resumed, but never one in the data
    family, size, network, init_path = _generator_to_train(family, size, base_channels, blocks, init)
    cfg = SynthTrainConfig(family=family, size=size, steps=steps, minutes=minutes, batch_size=batch_size, lr=lr, seed=seed,
                           compile=compile, weights_dtype=weights_dtype, network=network, init=init_path)
    weights = train_generator(read_slices(data), output, cfg, device=resolve_device(device), progress=not no_progress, overwrite=overwrite)
    typer.echo(f"weights: {weights}")


def _generator_to_train(family: str | None, size: int | None, base_channels: int | None, blocks: int | None,
                        init: str | None) -> tuple[str, int, dict, str | None]:
    """(family, size, network config, checkpoint to start from): the defaults with the options given, or, with
    `init`, all of it from that checkpoint (options that contradict it are refused)."""
    from medinpaint.synthesis.generator import shipped_weights
    from medinpaint.synthesis.registry import checkpoint_family, network_config

    if init is None:
        family, size = family or "diffusion", size or 64
        return family, size, network_config(family, size, base_channels, blocks).to_dict(), None
    path = shipped_weights(size or 64) if init == "default" else Path(init)
    stored, meta = checkpoint_family(path)
    if base_channels is not None or blocks is not None:
        raise InputError(f"{path}: the network's shape comes from the --init checkpoint; leave out --base-channels and --blocks")
    for option, given, own in (("--model", family, stored), ("--size", size, meta.preprocessing.size)):
        if given is not None and given != own:
            raise InputError(f"{path}: --init holds a {stored} network of size {meta.preprocessing.size}, not {option} {given}")
    return stored, meta.preprocessing.size, meta.config, str(path)


@synth_app.command("sample")
@user_errors
def sample_cmd(
    n: Annotated[int, typer.Option("-n", "--number", help="how many slices to generate")],
    output: Annotated[Path, typer.Option("--output", "-o", help="X.npy (float32 (N,1,H,W), with X.tissue.npy and X.vertebrae.npy) or a folder (DM-i-AI ct/ tissue/ vertebrae/)")],
    weights: Annotated[Path | None, typer.Option(help="generator checkpoint (default: the shipped generator of --size)")] = None,
    size: Annotated[int | None, typer.Option(help="64 or 256: which shipped model (default 64)")] = None,
    steps: SamplerSteps = None,
    sampler: Sampler = None,
    temperature: Annotated[float, typer.Option(help="noise scale: below 1 gives typical slices, above 1 varied ones")] = 1.0,
    guidance: Annotated[float, typer.Option(help="diffusion: classifier-free guidance towards the vertebra level (1 = none)")] = 1.0,
    vertebrae: Annotated[int | None, typer.Option(help="one vertebra level 0..24 for all (default: as often as in training)")] = None,
    seed: Seed = 0,
    batch_size: SampleBatch = 64,
    device: DeviceOpt = "auto",
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
) -> None:
    """Generate N (slice, tissue map, vertebra level) triples, streamed to disk chunk by chunk."""
    from medinpaint.synthesis.generator import load_generator
    from medinpaint.synthesis.writers import write_dmiai, write_npy

    gen = load_generator(weights, size, device=resolve_device(device))
    inputs = [weights] if weights is not None else []
    chunks = gen.stream(n, seed=seed, steps=steps, sampler=sampler, temperature=temperature, batch_size=batch_size,
                        vertebrae=vertebrae, guidance=guidance, progress=not no_progress)
    if output.suffix == ".npy":
        paths = write_npy(output, chunks, n, gen.size, overwrite=overwrite, inputs=inputs)
        typer.echo(f"{n} slices of {gen.size}x{gen.size}: {', '.join(map(str, paths.values()))}")
    else:
        write_dmiai(output, chunks, n, overwrite=overwrite, inputs=inputs)
        typer.echo(f"{n} slices of {gen.size}x{gen.size} in {output} (ct/ tissue/ vertebrae/)")


@synth_app.command("report")
@user_errors
def report_cmd(
    data: Annotated[Path, typer.Option("--data", help="the real data the generators were trained on (with patients 450-499 held out)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="report folder")],
    weights: Annotated[list[Path] | None, typer.Option(help="generator checkpoints to compare (default: the shipped one)")] = None,
    n: Annotated[int, typer.Option("-n", "--number", help="samples per generator")] = 1000,
    encoder: Annotated[Path | None, typer.Option(help="feature encoder from `synth train --model encoder` (default: train one)")] = None,
    encoder_steps: Annotated[int, typer.Option(help="steps for the encoder trained when none is given")] = 500,
    utility_steps: Annotated[int, typer.Option(help="inpainting steps per utility run (real vs synthetic); 0 skips it")] = 0,
    utility_base_channels: Annotated[int, typer.Option(min=1, help="width of the utility runs' inpainting U-Net")] = 32,
    steps: SamplerSteps = None,
    sampler: Sampler = None,
    seed: Seed = 0,
    batch_size: SampleBatch = 64,
    device: DeviceOpt = "auto",
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
) -> None:
    """Fidelity/diversity (FID, precision, recall), memorisation, figures and (optionally) utility of samples."""
    from medinpaint.synthesis.report import ReportConfig, synth_report

    cfg = ReportConfig(n=n, steps=steps, sampler=sampler, batch_size=batch_size, seed=seed, encoder=encoder, encoder_steps=encoder_steps,
                       utility_steps=utility_steps, utility_base_channels=utility_base_channels, device=resolve_device(device),
                       progress=not no_progress)
    summary = synth_report(list(weights or [None]), data, output, cfg, overwrite=overwrite)
    typer.echo(json.dumps({k: summary[k] for k in ("heldout_real", "models", *(["utility"] if "utility" in summary else []))}, indent=1))
