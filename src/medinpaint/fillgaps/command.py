"""`medinpaint fill-gaps` from files to files: read and check the target, pick the training slices, fill, write
the result next to a report and figures. Checks come first, so a bad path fails before minutes of training."""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path

import numpy as np

from medinpaint.data.readers import as_images, load_npy
from medinpaint.devices import check_device
from medinpaint.errors import InputError, about
from medinpaint.fillgaps.detect import detect_corruption
from medinpaint.fillgaps.figures import save_figures
from medinpaint.fillgaps.pipeline import FillResult, fill_gaps
from medinpaint.fillgaps.sources import images_from_generator, images_from_path
from medinpaint.outputs import atomic_dir, atomic_file, check_output_path
from medinpaint.training import TrainConfig


def read_target(path: Path) -> tuple[np.ndarray, tuple[int, ...]]:
    """The (N, H, W) target in its own dtype (so known pixels are written back bit for bit) and its source shape."""
    return as_images(load_npy(path), path)


def check_missing_value(value: float, dtype: np.dtype) -> float:
    if not math.isfinite(value):
        raise InputError(f"--missing-value must be a finite number (the value the gaps hold), got {value:g}")
    if dtype == np.uint8 and (value != int(value) or not 0 <= value <= 255):
        raise InputError(f"--missing-value must be an integer 0..255 for uint8 images, got {value:g}")
    if dtype != np.uint8 and not 0 <= value <= 1:
        raise InputError(f"--missing-value must lie in [0, 1] for float images, got {value:g}")
    return value


def check_outputs(inputs: list[Path], output: Path, figures: Path | None, overwrite: bool) -> None:
    """The output file and the figures folder may be neither an input (the target, the training images or the
    generator) nor hold one, nor, without `overwrite`, exist."""
    if output.suffix != ".npy":
        raise InputError(f"{output}: the output must be a .npy file")
    if figures is not None and figures.resolve() == output.resolve():
        raise InputError(f"{figures}: --figures must be a folder other than the output file")
    check_output_path(output, inputs, overwrite, kind="file")
    if figures is not None:
        check_output_path(figures, inputs, overwrite)


def report(input: Path, images: np.ndarray, missing_value: float, source: str, result: FillResult, device: str) -> str:
    """The choices made, in a few lines a person can check."""
    cfg = result.config
    m = cfg.network
    budget = " and ".join(b for b in (cfg.minutes and f"{cfg.minutes:g} min", cfg.steps and f"{cfg.steps} steps") if b)
    val = "n/a" if result.val_mae is None else f"{result.val_mae:.2f}"
    c = result.corruption
    kept = (f": every pixel holding the missing value{' in every image' if c.shared else ''}, as gaps cannot be told "
            "from black there, so true black may come back changed too; every pixel of another value is returned "
            "unchanged" if c.ambiguous else "; every other pixel is returned unchanged")
    return "\n".join([
        f"input: {input} ({len(images)} slices, {images.shape[2]}x{images.shape[1]}, {images.dtype}); "
        f"missing pixels hold exactly {missing_value:g}",
        f"corruption: {result.corruption.describe()}",
        "  gaps outside each image's field of view (the convex hull of its known pixels) "
        + ("cannot be told from background;" if c.ambiguous else "are taken as background;"),
        "  a shared mask is what is missing in every image, so background, which moves, is not mistaken for it",
        f"training slices: {source}",
        f"training masks: {'the target masks as they are' if not cfg.mask_symmetries else 'the target masks, turned and flipped'}"
        f" ({len(result.corruption.pool)} distinct)"
        + ("; the training slices' own pixels of the missing value masked too" if cfg.ambiguous_value is not None else ""),
        f"network: mask-aware U-Net from scratch (width {m.base_channels}, {m.depth} levels, {m.blocks_per_level} blocks "
        f"per level, no side inputs) on {device}; budget {budget}; trained {result.steps} steps",
        f"validation MAE (0..255) on held-out training slices under the target masks: {val}",
        f"filled: {int(c.masks.sum())} pixels{kept}",
    ])


def run_fill_gaps(
    input: Path,
    output: Path,
    train_images: Path | None = None,
    generator: Path | None = None,
    n_train: int = 5000,
    minutes: float | None = 5.0,
    steps: int | None = None,
    missing_value: float = 0,
    device: str = "cpu",
    figures: Path | None = None,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> str:
    """Fill the gaps of the .npy stack `input` into `output`; returns the report."""
    if train_images is not None and generator is not None:
        raise InputError("give --train-images or --generator, not both")
    input, output = Path(input), Path(output)
    check_outputs([p for p in (input, train_images, generator) if p is not None], output, figures, overwrite)
    check_device(device)
    TrainConfig(minutes=minutes, steps=steps)  # refuses a bad budget now, not after detection and sampling
    images, source_shape = read_target(input)
    value = check_missing_value(missing_value, images.dtype)
    with about(input):
        corruption = detect_corruption(images, value)
    shape = images.shape[1:]
    if train_images is not None:
        clean, source = images_from_path(train_images, shape, n_train, seed)
    else:
        clean, source = images_from_generator(generator, shape, n_train, seed, device)
    with tempfile.TemporaryDirectory(prefix="medinpaint-fill-gaps-") as work:
        result = fill_gaps(images, clean, Path(work), corruption, minutes, steps, device=device, seed=seed, progress=progress)
        text = report(input, images, missing_value, source, result, device) + f"\noutput: {output}"
        with atomic_file(output) as tmp:  # the result first: figures are not worth it, should they fail
            np.save(tmp, result.filled.reshape(source_shape))
        if figures is not None:
            with atomic_dir(figures, overwrite=overwrite) as tmp:
                save_figures(tmp, clean, images, result.filled, corruption.masks, corruption.pool, source, seed)
                shutil.copy(Path(work) / "progress.png", tmp / "training_progress.png")
                (tmp / "report.txt").write_text(text + "\n")
    return text
