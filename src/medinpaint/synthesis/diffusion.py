"""Gaussian diffusion: the noise schedule, the training loss, and the DDIM / DDPM samplers.

Written here rather than taken from MONAI or diffusers: it is under two hundred lines, and the GPU machines
this project trains on carry only torch, numpy, safetensors and accelerate, so nothing more has to travel.
The procedures know nothing of a particular network: a denoiser is any `net(x, t, labels) -> v`, with x the
noisy sample, t the diffusion time in [0, 1] and labels class ids.

Choices (Nichol & Dhariwal 2021; Salimans & Ho 2022; Song et al. 2021):
- cosine schedule over T = 1000 discrete steps;
- v-prediction (v = sqrt(a) * noise - sqrt(1 - a) * x0), which stays well-posed at both ends of the schedule
  and suits few-step DDIM;
- one sampler for both: DDIM with eta = 0 is deterministic given the starting noise, eta = 1 is DDPM's
  ancestral sampler (over all T steps: the original DDPM; over fewer: its respaced form);
- `temperature` scales the starting and the injected noise, `guidance` > 1 is classifier-free guidance
  towards the requested class (the denoiser is also trained with the null class).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

Denoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@functools.lru_cache(maxsize=4)  # built once per T, not at every training step
def cosine_alpha_bar(timesteps: int, offset: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Cumulative signal fraction a_t for t = 0..T-1 (float64), from the cosine schedule with clipped betas."""
    f = lambda t: math.cos((t / timesteps + offset) / (1 + offset) * math.pi / 2) ** 2  # noqa: E731
    betas = [min(1 - f(t + 1) / f(t), max_beta) for t in range(timesteps)]
    return torch.cumprod(1 - torch.tensor(betas, dtype=torch.float64), dim=0)


class Diffusion:
    def __init__(self, timesteps: int = 1000) -> None:
        self.timesteps = timesteps
        self.alpha_bar = cosine_alpha_bar(timesteps)

    def to_dict(self) -> dict:
        return {"timesteps": self.timesteps, "schedule": "cosine", "prediction": "v"}

    @classmethod
    def from_dict(cls, stored: dict) -> Diffusion:
        """The diffusion a checkpoint was trained with; a ValueError for a schedule this code does not implement."""
        diffusion = cls(int(stored["timesteps"]))
        if stored != diffusion.to_dict():
            raise ValueError(f"unsupported diffusion schedule {stored} (this version implements {diffusion.to_dict()})")
        return diffusion

    def _a(self, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(sqrt(a_t), sqrt(1 - a_t)) shaped to broadcast over `like`."""
        a = self.alpha_bar.to(like.device)[t].float().view(-1, *([1] * (like.ndim - 1)))
        return a.sqrt(), (1 - a).sqrt()

    def loss(self, net: Denoiser, x0: torch.Tensor, labels: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """MSE between the predicted and the true v at a uniformly drawn step, for clean samples x0 in [-1, 1];
        `gen` lives on x0's device (drawing the noise on the CPU would starve a GPU)."""
        t = torch.randint(self.timesteps, (len(x0),), generator=gen, device=x0.device)
        noise = torch.randn(x0.shape, generator=gen, device=x0.device)
        sa, sb = self._a(t, x0)
        pred = net(sa * x0 + sb * noise, t.float() / self.timesteps, labels)
        return F.mse_loss(pred.float(), sa * noise - sb * x0)

    def step_times(self, steps: int) -> list[int]:
        """`steps` distinct times from T-1 down to 0, evenly spaced (the last step always lands on x0)."""
        if not 1 <= steps <= self.timesteps:
            raise ValueError(f"steps must be 1..{self.timesteps}, got {steps}")
        return sorted({int(round(x)) for x in np.linspace(self.timesteps - 1, 0, steps)}, reverse=True)

    @torch.no_grad()
    def sample(
        self,
        net: Denoiser,
        labels: torch.Tensor,
        shape: tuple[int, ...],
        gen: torch.Generator,
        steps: int = 25,
        eta: float = 0.0,
        temperature: float = 1.0,
        guidance: float = 1.0,
        null_class: int | None = None,
    ) -> torch.Tensor:
        """Samples of `shape` (B,C,H,W) in [-1, 1] for class `labels` (B,), drawn with `gen` (on the device)."""
        dev = labels.device
        x = torch.randn(shape, generator=gen, device=dev) * temperature
        times = self.step_times(steps)
        for i, t in enumerate(times):
            v = self._predict(net, x, t, labels, guidance, null_class)
            sa, sb = self._a(torch.full((len(x),), t, device=dev), x)
            x0 = (sa * x - sb * v).clamp(-1, 1)
            if i + 1 == len(times):
                break
            eps = (x - sa * x0) / sb
            a_t, a_s = float(self.alpha_bar[t]), float(self.alpha_bar[times[i + 1]])
            sigma = eta * math.sqrt((1 - a_s) / (1 - a_t) * (1 - a_t / a_s))
            x = math.sqrt(a_s) * x0 + math.sqrt(max(1 - a_s - sigma**2, 0.0)) * eps
            if sigma > 0:
                x = x + sigma * temperature * torch.randn(shape, generator=gen, device=dev)
        return x0

    def _predict(self, net: Denoiser, x: torch.Tensor, t: int, labels: torch.Tensor, guidance: float, null_class: int | None) -> torch.Tensor:
        tt = torch.full((len(x),), t / self.timesteps, device=x.device)
        if guidance == 1.0:
            return net(x, tt, labels).float()
        if null_class is None:
            raise ValueError("classifier-free guidance needs the null class")
        both = net(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([labels, torch.full_like(labels, null_class)])).float()
        cond, uncond = both.chunk(2)
        return uncond + guidance * (cond - uncond)
