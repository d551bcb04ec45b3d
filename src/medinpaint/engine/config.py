"""What every training run is given, whatever the network: budget, optimiser, EMA, logging and export settings."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from medinpaint.errors import InputError

WEIGHTS_DTYPES = ("float32", "float16", "bfloat16")
OPTIMIZERS = ("adamw", "adam", "sgd")


@dataclass
class EngineConfig:
    steps: int | None = None  # stop after this many optimizer steps (in total, across resumes)
    minutes: float | None = None  # stop after this much training time (in total, across resumes)
    batch_size: int = 16  # per process
    lr: float = 2e-3  # peak learning rate
    weight_decay: float = 1e-4
    optimizer: str = "adamw"  # adamw, adam, or sgd (momentum 0.9, Nesterov)
    warmup_steps: int = 100
    ema_decay: float = 0.999
    val_every: int = 200  # validate the EMA network every N steps (and at the end)
    log_every: int = 10  # a CSV / TensorBoard row every N steps
    checkpoint_every_s: float = 120.0  # write the resumable last.pt this often
    seed: int = 0
    compile: bool = False  # torch.compile the training forward pass
    weights_dtype: str = "float32"  # of the exported model.safetensors; float16 halves it for shipping
    init: str | None = None  # fine-tune: start from this exported checkpoint (same kind and network config)

    def __post_init__(self) -> None:
        if self.steps is None and self.minutes is None:
            raise InputError("give a budget: --steps N and/or --minutes M")
        if (self.steps is not None and self.steps < 1) or (self.minutes is not None and not self.minutes > 0):  # NaN too
            raise InputError("--steps must be at least 1 and --minutes above 0")
        if self.val_every < 1 or self.log_every < 1:
            raise InputError(f"--val-every must be at least 1, got {self.val_every}")
        if self.weights_dtype not in WEIGHTS_DTYPES:
            raise InputError(f"--weights-dtype must be float32, float16 or bfloat16, got {self.weights_dtype!r}")
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"the optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.init is not None and not Path(self.init).is_file():
            raise InputError(f"{self.init}: no such checkpoint file to start from")
        if self.batch_size < 1:
            raise InputError(f"--batch-size must be at least 1, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise InputError(f"--lr must be a positive number, got {self.lr}")

    def to_dict(self) -> dict:
        return asdict(self)

    def make_optimizer(self, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
        if self.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=0.9, nesterov=True, weight_decay=self.weight_decay)
        kind = torch.optim.AdamW if self.optimizer == "adamw" else torch.optim.Adam
        return kind(params, lr=self.lr, weight_decay=self.weight_decay)

    def budget_left(self, step: int, elapsed_s: float) -> bool:
        return (self.steps is None or step < self.steps) and (self.minutes is None or elapsed_s < self.minutes * 60)

    def lr_at(self, step: int, elapsed_s: float) -> float:
        """Linear warm-up (at most a tenth of a step budget, so a short run reaches its peak), then a cosine to 1 %
        over the budget that runs out first."""
        warmup = min(self.warmup_steps, max(1, self.steps // 10)) if self.steps else self.warmup_steps
        if step < warmup:
            return self.lr * (step + 1) / warmup
        fractions = []
        if self.steps:
            fractions.append(step / self.steps)
        if self.minutes:
            fractions.append(elapsed_s / (self.minutes * 60))
        progress = min(1.0, max(fractions, default=1.0))
        return self.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))
