"""Exponential moving average of a network's weights, kept as a network of its own for validation and export."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Parameters follow `decay`-weighted averages; buffers (e.g. BatchNorm statistics) are copied as they are,
    since averaging running statistics of different weights means nothing."""

    def __init__(self, network: nn.Module, decay: float) -> None:
        self.network = copy.deepcopy(network).eval().requires_grad_(False)
        self.decay = decay

    def decay_at(self, step: int) -> float:
        """A short warm-up ((1 + step) / (10 + step)) so that early checkpoints are usable."""
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, network: nn.Module, step: int) -> None:
        d = self.decay_at(step)
        averaged = list(self.network.parameters())  # one fused call, not a kernel launch per tensor on a GPU
        torch._foreach_lerp_(averaged, [p.detach().to(e.dtype) for e, p in zip(averaged, network.parameters())], 1 - d)
        for e, b in zip(self.network.buffers(), network.buffers()):
            e.copy_(b)
