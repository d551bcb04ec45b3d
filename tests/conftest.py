"""Shared fixtures: tiny models, phantom datasets written to disk, the bundled samples."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from medinpaint.backends import CACHE_ENV
from medinpaint.data.png import write_gray_png
from medinpaint.devices import threads_per_process
from medinpaint.inference import save_inpainter
from medinpaint.masks import BrushStrokes
from medinpaint.models import MaskAwareUNet, UNetConfig
from medinpaint.samples import sample_dir

TINY = UNetConfig(base_channels=8, depth=3, blocks_per_level=1)


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (`-n`), each worker gets its share of the cores for torch, ONNX Runtime and the commands
    it starts: N workers of all-core thread pools on N cores would spin against each other."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        threads = threads_per_process(int(workers))
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)


def phantom(rng: np.random.Generator, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """A CT-like phantom: an ellipse of body with a fat rim and a bright round 'vertebra', and its tissue map."""
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    a, b = rng.uniform(0.3, 0.45), rng.uniform(0.25, 0.4)
    r = (xx / a) ** 2 + (yy / b) ** 2
    body, inner = r < 1, r < 0.7
    tissue = np.where(inner, 100, np.where(body, 255, 0)).astype(np.uint8)
    ct = np.where(inner, 110, np.where(body, 35, 0)).astype(np.float64)
    ct += np.where(body, rng.normal(0, 4, (size, size)), 0)
    bone = (xx**2 + (yy - 0.15) ** 2) < 0.004
    ct[bone] = 220
    return np.clip(ct, 0, 255).astype(np.uint8), tissue


def write_dmiai(folder: Path, patients: list[int], per_patient: int = 2, size: int = 64, seed: int = 0) -> Path:
    """A DM-i-AI-layout folder of phantom cases `PPP_k`, with brush-stroke masks and the truth."""
    rng = np.random.default_rng(seed)
    brush = BrushStrokes()
    for kind in ("corrupted", "mask", "ct", "tissue", "vertebrae"):
        (folder / kind).mkdir(parents=True, exist_ok=True)
    for p in patients:
        for k in range(per_patient):
            cid = f"{p:03d}_{k}"
            ct, tissue = phantom(rng, size)
            mask = brush(rng, (size, size))
            write_gray_png(folder / "ct" / f"ct_{cid}.png", ct)
            write_gray_png(folder / "tissue" / f"tissue_{cid}.png", tissue)
            write_gray_png(folder / "mask" / f"mask_{cid}.png", (mask * 255).astype(np.uint8))
            write_gray_png(folder / "corrupted" / f"corrupted_{cid}.png", np.where(mask, 0, ct).astype(np.uint8))
            (folder / "vertebrae" / f"vertebrae_{cid}.txt").write_text(str(int(rng.integers(0, 25))))
    return folder


@pytest.fixture
def phantom_dataset(tmp_path: Path) -> Path:
    """Ten training patients (0-9) and two validation patients (450, 451), two 64x64 slices each."""
    return write_dmiai(tmp_path / "phantoms", [*range(10), 450, 451])


@pytest.fixture(scope="session", autouse=True)
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Exported ONNX graphs go to a folder of the test session, never into the user's ~/.cache."""
    folder = tmp_path_factory.mktemp("cache")
    old = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(folder)
    yield folder
    if old is None:
        del os.environ[CACHE_ENV]
    else:
        os.environ[CACHE_ENV] = old


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny U-Net saved as a medinpaint checkpoint (fixed seed)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    return save_inpainter(path, MaskAwareUNet(TINY), name="tiny")


@pytest.fixture
def samples() -> Path:
    """The bundled DM-i-AI sample cases (12 slices of validation patients)."""
    return sample_dir()
