"""Utility of samples: the inpainting model trained on N synthetic slices against the same model trained on N
real ones, with the same budget and masks, scored by whole-image MAE on held-out real patients (450-499)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from medinpaint.data.slices import SliceSet, to_uint8
from medinpaint.inference import Inpainter
from medinpaint.masks import BrushStrokes
from medinpaint.models import UNetConfig
from medinpaint.synthesis.generator import Samples
from medinpaint.synthesis.writers import case_ids
from medinpaint.training import TrainConfig, evaluate_mae, train, validation_set


def pairs_to_slices(ids: list[str], pairs: np.ndarray, vertebrae: np.ndarray) -> SliceSet:
    """(N, 2, H, W) uint8 CT and tissue pairs -> a clean training SliceSet."""
    return SliceSet(ids=list(ids), images=pairs[:, 0], tissue=pairs[:, 1], vertebrae=np.asarray(vertebrae), layout="dmiai")


def samples_to_slices(samples: Samples) -> SliceSet:
    return SliceSet(ids=case_ids(len(samples.images)), images=to_uint8(samples.images[:, 0]), tissue=samples.tissue,
                    vertebrae=samples.vertebrae, layout="dmiai")


class UtilityTest:
    """Train and score inpainting models on training sets of equal size, budget and mask pool."""

    def __init__(self, heldout: SliceSet, workdir: Path, steps: int, base_channels: int = 32, seed: int = 0,
                 device: str = "cpu", progress: bool = True) -> None:
        rng = np.random.default_rng(seed)
        self.pool = np.stack([BrushStrokes()(rng, heldout.images.shape[1:]) for _ in range(512)])
        self.val = validation_set(heldout, len(heldout), seed, self.pool)  # every held-out slice, fixed masks
        self.workdir, self.device, self.progress = Path(workdir), device, progress
        self.trained_on: dict[str, int] = {}  # slices each run trained on: training holds a tenth out to monitor
        self.config = TrainConfig(steps=steps, batch_size=16, val_every=steps, val_cases=16, generated_masks=0, seed=seed,
                                  network=UNetConfig(base_channels=base_channels))

    def mae(self, name: str, slices: SliceSet) -> float:
        """Train on `slices` into workdir/name and return the MAE (0..255) on the held-out slices."""
        weights = train(slices, self.workdir / name, self.config, device=self.device, progress=self.progress, mask_pool=self.pool)
        model = Inpainter.from_pretrained(weights, device=self.device, backend="torch")
        self.trained_on[name] = model.metadata[0].training.slices
        network = model.network
        return evaluate_mae(network, self.val, torch.device(self.device))
