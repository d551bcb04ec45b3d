"""What a family of networks gives the engine: its network, its batches, its loss and its validation measure.

A new family is a network in `medinpaint.models` plus a subclass of `Task`; the engine does the rest (device
and precision, DDP, compile, EMA, budget and schedule, resume, logs, export).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from medinpaint.checkpoint import CheckpointMeta, Preprocessing, Training


class Task(ABC):
    kind: str  # the checkpoint kind, e.g. "inpainting-unet"
    name: str = "training"  # label of the progress bar
    val_fields: tuple[str, ...] = ()  # the CSV columns `validate` returns, each starting with "val_"
    network_config: Any  # the network's config dataclass
    train_slices: int = 0  # training examples, for the checkpoint's record
    train_digest: str = ""  # a digest of the training examples: a resume on other data of the same count is noted
    notes: tuple[str, ...] = ()  # what the user should know before the run starts, printed by the engine

    @abstractmethod
    def build_network(self) -> nn.Module:
        """A fresh network from `network_config` (the engine seeds torch first)."""

    @abstractmethod
    def preprocessing(self) -> Preprocessing:
        """How the data are turned into the network's input: recorded in the checkpoint."""

    @abstractmethod
    def setup(self, device: torch.device) -> None:
        """Put the training data where batches are drawn (the training device)."""

    @abstractmethod
    def batch(self, gen: torch.Generator, size: int) -> Any:
        """A random training batch of `size` examples, drawn with `gen` (a generator on the training device)."""

    @abstractmethod
    def loss(self, forward: Callable[..., Any], batch: Any, gen: torch.Generator) -> torch.Tensor:
        """The scalar loss of `batch` through `forward` (the network as trained: DDP-wrapped, compiled, autocast)."""

    def build_critic(self) -> nn.Module | None:
        """A second network trained against the first (a GAN's discriminator), or None. The engine gives it its own
        optimizer, prepares it for the device, sets it as `self.critic` for `loss`, and after every step of the
        network takes one step of `critic_loss`."""
        return None

    def critic_loss(self, batch: Any, gen: torch.Generator) -> torch.Tensor:
        """The critic's loss on `batch` (and whatever `loss` kept of the network's output)."""
        raise NotImplementedError

    def resume_key(self) -> dict:
        """Besides the network config, what a resumed run must share with the saved one (e.g. the data size)."""
        return {}

    def validate(self, network: nn.Module, device: torch.device) -> dict[str, float]:
        """The validation measures (keys `val_fields`) of the EMA network; none by default."""
        return {}

    def metadata(self, training: Training) -> CheckpointMeta:
        """The exported checkpoint's metadata."""
        return CheckpointMeta(kind=self.kind, config=asdict(self.network_config), preprocessing=self.preprocessing(), training=training)
