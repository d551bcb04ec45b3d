"""Segmenter: load a segmentation checkpoint once, then label slices from numpy arrays, in batches."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from medinpaint.backends import Runner, runners
from medinpaint.checkpoint import (CheckpointMeta, Preprocessing, load_checkpoint, load_members, load_state, network_from, read_metadata,
                                   shipped_weights_dir)
from medinpaint.data import read_slices
from medinpaint.data.slices import to_unit
from medinpaint.errors import InputError
from medinpaint.models import SegmentationUNet, SegmenterConfig
from medinpaint.samples import sample_dir
from medinpaint.segmentation.data import coding

SEGMENTER_KIND = "segmentation-unet"
SEGMENTER_PREPROCESSING = Preprocessing(channels=("ct",), vertebra_encoding="none")  # tissue_levels: the label coding
DEFAULT_WEIGHTS = "ct-segmenter.safetensors"


def default_weights() -> Path:
    return shipped_weights_dir() / DEFAULT_WEIGHTS


@torch.inference_mode()
def predict_classes(networks: list[nn.Module] | list[Runner], images: np.ndarray, device: torch.device | str, batch_size: int = 16,
                    progress: bool = False) -> np.ndarray:
    """(N, H, W) uint8 or float [0, 1] slices -> (N, H, W) int64 class ids, averaging the members' probabilities."""
    out = np.empty(images.shape, dtype=np.int64)
    for s in tqdm(range(0, len(images), batch_size), desc="segmenting", unit="batch", disable=not progress):
        x = torch.from_numpy(to_unit(images[s : s + batch_size])).unsqueeze(1).to(device)
        probs = sum(net(x).float().softmax(1) for net in networks)
        out[s : s + batch_size] = probs.argmax(1).cpu().numpy()
    return out


def calibration() -> list[tuple[torch.Tensor]]:
    """What the int8 backend measures its activation ranges on: the bundled cases' clean slices, four a batch."""
    images = read_slices(sample_dir()).truth
    return [(torch.from_numpy(to_unit(images[i:i + 4])).unsqueeze(1),) for i in range(0, len(images), 4)]


class Segmenter:
    """Label the pixels of slices; `values` are the label-map values of the classes (DM-i-AI: 0, 100, 255).
    `backend`: `auto` (ONNX Runtime on CPU when installed, else PyTorch), `torch`, `onnx` or `int8` (ONNX Runtime with
    8-bit convolutions calibrated on the bundled sample cases' clean slices); see `backends`."""

    def __init__(self, networks: list[SegmentationUNet], values: tuple[int, ...], device: str = "cpu", name: str = "",
                 checksum: str = "", metadata: list[CheckpointMeta] | None = None, backend: str = "auto") -> None:
        self.members = [n.to(device).eval() for n in networks]
        example = (torch.zeros(1, 1, 2 * self.members[0].stride, 2 * self.members[0].stride),)
        self.runners, self.backend = runners(self.members, backend, device, example, ("image",), calibration=calibration)
        self.values, self.names = tuple(values), coding(tuple(values))
        self.device, self.name, self.checksum, self.metadata = torch.device(device), name, checksum, metadata or []

    @classmethod
    def from_pretrained(cls, path: str | Path | list[str | Path] | None = None, device: str = "cpu",
                        backend: str = "auto") -> Segmenter:
        """Rebuild from checkpoints' own metadata; `None` is the shipped body-composition model; a list of paths
        is an ensemble (same classes) that averages the members' probabilities."""
        def load_one(p: Path) -> tuple[SegmentationUNet, CheckpointMeta]:
            values = read_metadata(p).preprocessing.tissue_levels
            state, meta = load_checkpoint(p, SEGMENTER_KIND, replace(SEGMENTER_PREPROCESSING, tissue_levels=values))
            network = network_from(meta, SegmenterConfig, SegmentationUNet, p)
            if network.config.classes != len(values):
                raise InputError(f"{p}: {network.config.classes} classes but {len(values)} label values in the metadata")
            return load_state(network, state, p), meta

        networks, metas, name, checksum = load_members(path, default_weights(), device, load_one)  # one preprocessing: one coding
        return cls(networks, metas[0].preprocessing.tissue_levels, device, name, checksum, metas, backend)

    def predict(self, images: np.ndarray, batch_size: int = 16, progress: bool = False) -> np.ndarray:
        """(N, H, W) or one (H, W) slice, uint8 0..255 or float [0, 1] -> class ids of the same shape (int64)."""
        images = np.asarray(images)
        if images.ndim not in (2, 3):
            raise InputError(f"expected (H, W) or (N, H, W) slices, got shape {images.shape}")
        one = images.ndim == 2
        out = predict_classes(self.runners, images[None] if one else images, self.device, batch_size, progress)
        return out[0] if one else out

    def to_values(self, classes: np.ndarray) -> np.ndarray:
        """Class ids -> the label maps' own coding, as uint8."""
        return np.asarray(self.values, dtype=np.uint8)[classes]
