"""The synthesis families' task for the training engine: diffusion, VAE and the report's feature encoder.

The training pairs (CT and tissue level at the family's size) stay on the device as uint8; each step draws a
batch at random and the family's objective (`objectives.py`) gives the loss. Patients 450-499 (or a held-out
tenth of patients) are never trained on; up to 256 of their slices give the validation loss. Everything else
(budget, schedule, EMA, resume, logs, export) is the engine's (`medinpaint.engine`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from medinpaint.checkpoint import CheckpointMeta, Preprocessing, Training
from medinpaint.data.slices import SliceSet
from medinpaint.data.split import training_split
from medinpaint.engine import EngineConfig, Task, fit
from medinpaint.synthesis.data import require_triples, resize_pairs, vertebra_counts
from medinpaint.synthesis.diffusion import Diffusion
from medinpaint.synthesis.objectives import OBJECTIVES
from medinpaint.synthesis.registry import KINDS, PREPROCESSING, build_network, check_choice, config_type, network_config

DEFAULT_LR = {"diffusion": 3e-4, "vae": 1e-3, "encoder": 1e-3}
VAL_SLICES = 256


@dataclass
class SynthTrainConfig(EngineConfig):
    family: str = "diffusion"  # diffusion, vae or encoder
    size: int = 64  # slices are resized to size x size
    batch_size: int = 64
    lr: float | None = None  # None: DEFAULT_LR of the family
    weight_decay: float = 0.0
    warmup_steps: int = 200
    val_every: int = 500
    cond_dropout: float = 0.1  # share of steps trained with the null class (unconditional use, guidance)
    kl_weight: float = 0.05  # VAE: beta, the Laplace scale of the reconstruction term
    timesteps: int = 1000  # diffusion steps of the noise schedule
    network: dict = field(default_factory=dict)  # the network config; empty: the default for family and size

    def __post_init__(self) -> None:
        check_choice(self.family, self.size)
        if self.lr is None:
            self.lr = DEFAULT_LR[self.family]
        super().__post_init__()
        if not self.network:
            self.network = network_config(self.family, self.size).to_dict()


class GeneratorTask(Task):
    """(CT, tissue level) pairs of the training patients with their vertebra levels."""

    def __init__(self, data: SliceSet, cfg: SynthTrainConfig, hold_out: bool = True) -> None:
        require_triples(data, data.source or "training data")
        data.require_clean()
        train_idx, val_idx = training_split(data.ids, data.source) if hold_out else (np.arange(len(data)), np.arange(0))
        self.cfg, self.kind, self.name = cfg, KINDS[cfg.family], f"training {cfg.family}"
        self.network_config = config_type(cfg.family)(**cfg.network)
        train = data.subset(train_idx)
        self.pairs, self.levels = torch.from_numpy(resize_pairs(train, cfg.size)), torch.from_numpy(train.vertebrae.astype(np.int64))
        self.train_slices, self.counts, self.window = len(train), vertebra_counts(train.vertebrae), data.intensity_window
        val = data.subset(val_idx[np.linspace(0, len(val_idx) - 1, min(VAL_SLICES, len(val_idx))).astype(int)]) if len(val_idx) else None
        self.val = None if val is None else (torch.from_numpy(resize_pairs(val, cfg.size)), torch.from_numpy(val.vertebrae.astype(np.int64)))
        self.val_fields = ("val_loss",) if self.val is not None else ()
        self.objective = OBJECTIVES[cfg.family]

    def build_network(self) -> nn.Module:
        return build_network(self.cfg.family, self.network_config)

    def resume_key(self) -> dict:
        return {"size": self.cfg.size}

    def preprocessing(self) -> Preprocessing:
        return replace(PREPROCESSING[self.cfg.family], size=self.cfg.size, intensity_window=self.window)

    def setup(self, device: torch.device) -> None:
        self.pairs, self.levels = self.pairs.to(device), self.levels.to(device)

    def batch(self, gen: torch.Generator, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(self.pairs), (size,), generator=gen, device=self.pairs.device)
        return self.pairs[idx], self.levels[idx]

    def loss(self, forward: Callable[..., torch.Tensor], batch: tuple[torch.Tensor, torch.Tensor], gen: torch.Generator) -> torch.Tensor:
        return self.objective(forward, *batch, self.cfg, gen)

    @torch.no_grad()
    def validate(self, network: nn.Module, device: torch.device) -> dict[str, float]:
        """The objective on the held-out slices, with the same noise every time (a seeded generator), so the
        values of one run compare."""
        gen = torch.Generator(device=device).manual_seed(self.cfg.seed)
        pairs, levels = self.val
        losses = [self.objective(network, pairs[s : s + 64].to(device), levels[s : s + 64].to(device), self.cfg, gen).item() * len(pairs[s : s + 64])
                  for s in range(0, len(pairs), 64)]
        return {"val_loss": float(sum(losses) / len(pairs))}

    def metadata(self, training: Training) -> CheckpointMeta:
        training.vertebra_counts = self.counts
        meta = super().metadata(training)
        meta.schedule = Diffusion(self.cfg.timesteps).to_dict() if self.cfg.family == "diffusion" else None
        return meta


def train_generator(data: SliceSet, output: Path, cfg: SynthTrainConfig, device: str | None = None, progress: bool = True,
                    overwrite: bool = False, hold_out: bool = True) -> Path:
    """Train `cfg.family` on the training patients of `data`, writing `output/` (model.safetensors of the EMA
    weights, log.csv, tensorboard/, progress.png, config.json, last.pt). Returns the path of the weights.
    `hold_out=False` trains on every slice of `data` (no validation loss): for callers that chose the patients."""
    return fit(GeneratorTask(data, cfg, hold_out), output, cfg, device=device, progress=progress, overwrite=overwrite)
