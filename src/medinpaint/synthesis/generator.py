"""Load a trained generator (diffusion or VAE) and draw (slice, tissue map, vertebra level) triples.

`SliceGenerator.stream` yields the samples chunk by chunk, so a caller can write 100,000 of them to disk
without holding them in memory; `sample` gathers the chunks. Sample i draws its noise from its own generator
seeded by (seed, i), and the vertebra levels are drawn once for all n from `seed`: the same seed and device give
the same samples whatever the batch size (up to the rounding of the batch's kernels), and the first k of n samples
are the k samples of the same seed.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from medinpaint.checkpoint import CheckpointMeta, file_checksum, shipped_weights_dir
from medinpaint.constants import MAX_VERTEBRA
from medinpaint.devices import check_device
from medinpaint.errors import InputError
from medinpaint.synthesis.data import quantise_tissue
from medinpaint.models.denoiser import NULL_CLASS
from medinpaint.synthesis.diffusion import Diffusion, randn_per_sample
from medinpaint.synthesis.registry import checkpoint_family, load_network

SHIPPED_SIZES = (64, 256)
SAMPLERS = {"ddim": ("ddim", 0.0), "ddpm": ("ddim", 1.0), "dpm++": ("dpm++", 0.0)}  # name -> (solver, eta)
DEFAULT_STEPS = {"ddim": 25, "ddpm": 1000, "dpm++": 10}


class Samples(NamedTuple):
    images: np.ndarray  # float32 (n, 1, H, W) in [0, 1]
    tissue: np.ndarray  # uint8 (n, H, W), DM-i-AI levels 0 / 100 / 255
    vertebrae: np.ndarray  # int16 (n,), 0..24


SHIPPED_FAMILIES = ("diffusion", "vae")  # the first one shipped for a size is its default generator


def _shipped_file(size: int) -> Path | None:
    for family in SHIPPED_FAMILIES:
        path = shipped_weights_dir() / f"synth-{family}-{size}.safetensors"
        if path.is_file():
            return path
    return None


def shipped_sizes() -> list[int]:
    """The sizes a generator is shipped for in this installation."""
    return [s for s in SHIPPED_SIZES if _shipped_file(s) is not None]


def nearest_shipped_size(size: int) -> int | None:
    """The shipped generator's size to sample `size` x `size` slices from: that size, else the smallest larger one
    (shrinking loses nothing), else the largest; None when no generator is shipped."""
    present = shipped_sizes()
    if not present:
        return None
    return size if size in present else min((s for s in present if s >= size), default=max(present))


def shipped_size_within(size: int) -> int:
    """The largest shipped generator size not above `size`: the generator a report on `size` x `size` slices
    measures (the real slices shrink to it; they cannot grow). `size` itself when none fits, so that
    `shipped_weights` says what is missing."""
    return max((s for s in shipped_sizes() if s <= size), default=size)


def shipped_weights(size: int, option: str = "--weights") -> Path:
    """The generator shipped for `size` (the diffusion model where there is one, else the VAE); an InputError
    that says what to do when there is none, naming the command's `option` for a checkpoint of one's own."""
    path = _shipped_file(size) if size in SHIPPED_SIZES else None
    if path is not None:
        return path
    present = [f"{s}x{s}" for s in shipped_sizes()]
    raise InputError(f"no shipped generator for size {size} yet (shipped: {', '.join(present) or 'none'}): pass {option} or "
                     f"train one with `medinpaint synth train --model diffusion --size {size} --data DIR --output RUN_DIR`")


def load_generator(path: str | Path | None = None, size: int | None = None, device: str = "cpu", compile: bool = False) -> SliceGenerator:
    """A generator from a checkpoint written by `medinpaint synth train` (diffusion or VAE), or with `path=None`
    the shipped generator of `size` (default 64; the diffusion model where one is shipped, else the VAE). A given `size` must match the checkpoint's."""
    path = Path(path) if path is not None else shipped_weights(size or 64)
    family, _ = checkpoint_family(path)
    if family not in ("diffusion", "vae"):
        raise InputError(f"{path}: holds the feature encoder, which cannot generate slices (expected a diffusion or VAE checkpoint)")
    check_device(device)
    network, meta = load_network(path, family)
    if size is not None and size != meta.preprocessing.size:
        raise InputError(f"{path}: a {meta.preprocessing.size}x{meta.preprocessing.size} generator, not {size}x{size}")
    if meta.training.vertebra_counts is None or (family == "diffusion" and not meta.schedule):
        raise InputError(f"{path}: a generator checkpoint must record its vertebra counts (and a diffusion one its schedule)")
    try:
        return SliceGenerator(network, family, meta, device=device, compile=compile, name=meta.training.name or path.stem,
                              checksum=file_checksum(path))
    except ValueError as exc:  # a schedule this version does not implement
        raise InputError(f"{path}: {exc}") from None


class SliceGenerator:
    def __init__(self, net: nn.Module, family: str, meta: CheckpointMeta, device: str = "cpu", compile: bool = False, name: str = "",
                 checksum: str = "") -> None:
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        if self.device.type == "cuda":
            self.net = self.net.to(memory_format=torch.channels_last)
        self.forward = torch.compile(self.net) if compile else self.net
        self.family, self.size, self.name, self.checksum, self.meta = family, int(meta.preprocessing.size), name, checksum, meta
        self.diffusion = Diffusion.from_dict(meta.schedule) if family == "diffusion" else None
        counts = np.asarray(meta.training.vertebra_counts, dtype=np.float64)
        self.level_probs = counts / counts.sum()

    def sample(self, n: int, seed: int = 0, steps: int | None = None, sampler: str | None = None, temperature: float = 1.0,
               batch_size: int = 64, vertebrae: int | Sequence[int] | np.ndarray | None = None, guidance: float = 1.0,
               progress: bool = False) -> Samples:
        """All n samples at once (see `stream` for the arguments)."""
        chunks = list(self.stream(n, seed, steps, sampler, temperature, batch_size, vertebrae, guidance, progress))
        return Samples(*(np.concatenate(parts) for parts in zip(*chunks)))

    def stream(self, n: int, seed: int = 0, steps: int | None = None, sampler: str | None = None, temperature: float = 1.0,
               batch_size: int = 64, vertebrae: int | Sequence[int] | np.ndarray | None = None, guidance: float = 1.0,
               progress: bool = False) -> Iterator[Samples]:
        """An iterator over n samples in chunks of `batch_size`; the arguments are checked at once, not at the
        first chunk. The noise is seeded per sample, so the samples drawn depend on `seed`, not on `batch_size`
        (see the module's docstring). Diffusion: `sampler` ddim (default, 25 steps), ddpm (default 1000 steps) or dpm++
        (DPM-Solver++(2M), default 10 steps); `guidance` > 1
        pushes samples towards their vertebra level. Both models: `temperature` scales the noise; `vertebrae` is
        one level for all, one per sample, or None to draw levels as often as they occur in the training data."""
        steps, sampler = self.check_arguments(n, steps, sampler, temperature, batch_size, guidance)
        levels = self._levels(n, seed, vertebrae)
        return self._chunks(levels, seed, steps, sampler, temperature, batch_size, guidance, progress)

    def _chunks(self, levels: np.ndarray, seed: int, steps: int, sampler: str, temperature: float, batch_size: int,
                guidance: float, progress: bool) -> Iterator[Samples]:
        with tqdm(total=len(levels), unit="slice", desc=f"sampling ({self.family})", disable=not progress) as bar:
            for start in range(0, len(levels), batch_size):
                chunk = levels[start : start + batch_size]
                gens = [torch.Generator(self.device).manual_seed(int(np.random.SeedSequence([seed, i]).generate_state(1)[0]))
                        for i in range(start, start + len(chunk))]
                x = self._draw(torch.from_numpy(chunk.astype(np.int64)).to(self.device), gens, steps, sampler, temperature, guidance)
                x = x.float().cpu().numpy()
                yield Samples(np.clip(x[:, :1], 0, 1), quantise_tissue(x[:, 1]), chunk)
                bar.update(len(chunk))

    @torch.inference_mode()
    def _draw(self, labels: torch.Tensor, gens: list[torch.Generator], steps: int, sampler: str, temperature: float,
              guidance: float) -> torch.Tensor:
        """One chunk as (B, 2, H, W) in [0, 1]: CT and tissue level, sample b's noise drawn from gens[b]."""
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            if self.diffusion is None:
                z = randn_per_sample(gens, (self.net.config.latent_dim,), self.device) * temperature
                return self.forward.decode(z, labels)
            shape = (len(labels), self.net.config.channels, self.size, self.size)
            solver, eta = SAMPLERS[sampler]
            x = self.diffusion.sample(self.forward, labels, shape, gens, steps, eta, temperature, guidance, NULL_CLASS, solver)
            return (x + 1) / 2

    def check_arguments(self, n: int, steps: int | None = None, sampler: str | None = None, temperature: float = 1.0,
                        batch_size: int = 64, guidance: float = 1.0) -> tuple[int, str]:
        """Validate `sample`'s arguments, so that a command can refuse them before its long work, not after;
        (steps, sampler name) for the diffusion sampler."""
        if n <= 0:
            raise InputError(f"the number of samples must be positive, got {n}")
        if batch_size <= 0:
            raise InputError(f"--batch-size must be positive, got {batch_size}")
        if not (temperature > 0 and math.isfinite(temperature)):
            raise InputError(f"--temperature must be a positive number, got {temperature}")
        if self.diffusion is None:
            if steps is not None or sampler is not None or guidance != 1.0:
                raise InputError("--steps, --sampler and --guidance apply to diffusion checkpoints; this one is a VAE")
            return 0, ""
        sampler = sampler or "ddim"
        if sampler not in SAMPLERS:
            raise InputError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
        steps = DEFAULT_STEPS[sampler] if steps is None else steps
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or not 1 <= steps <= self.diffusion.timesteps:
            raise InputError(f"--steps must be 1..{self.diffusion.timesteps}, got {steps}")
        if not (guidance >= 1 and math.isfinite(guidance)):
            raise InputError(f"--guidance must be a number of at least 1, got {guidance}")
        return steps, sampler

    def _levels(self, n: int, seed: int, vertebrae: int | Sequence[int] | np.ndarray | None) -> np.ndarray:
        """The vertebra level of each of the n samples, as int16."""
        if vertebrae is None:
            return np.random.default_rng(seed).choice(len(self.level_probs), size=n, p=self.level_probs).astype(np.int16)
        levels = np.asarray(vertebrae)
        if levels.ndim == 0:
            levels = np.full(n, levels)
        if levels.shape != (n,) or not np.issubdtype(levels.dtype, np.integer):
            raise InputError(f"vertebrae must be one integer level or one per sample ({n}), got shape {levels.shape}")
        bad = levels[(levels < 0) | (levels > MAX_VERTEBRA)]
        if bad.size:
            raise InputError(f"vertebra levels must lie in 0..{MAX_VERTEBRA}, got {int(bad[0])}")
        return levels.astype(np.int16)
