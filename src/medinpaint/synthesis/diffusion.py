"""Gaussian diffusion: the noise schedule, the training loss, and the DDIM / DDPM / DPM-Solver++ samplers.

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
- DPM-Solver++(2M) (Lu et al. 2022), the multistep second-order solver of the same ODE as DDIM, for 10 steps or
  fewer: its first step is DDIM's, each later one corrects with the previous x0 prediction, and the last one (onto
  t = 0) is first order again; its times are evenly spaced in log-SNR, which kept an exact denoiser's spread at
  10 steps (0.302 for 0.3) where even spacing in t did not (0.255). It is checked against diffusers'
  `DPMSolverMultistepScheduler` (midpoint form, lower-order final step, final sigma the schedule's minimum);
- `temperature` scales the starting and the injected noise, `guidance` > 1 is classifier-free guidance
  towards the requested class (the denoiser is also trained with the null class).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

# DPM-Solver's steps start where the log-SNR is -5.1, not at T-1 (about -9.9 here): the cosine schedule's last
# steps are nearly pure noise, and spacing from there wastes a few-step budget on them (diffusers' lambda_min_clipped)
LOG_SNR_MIN = -5.1

Denoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@functools.lru_cache(maxsize=4)  # built once per T, not at every training step
def cosine_alpha_bar(timesteps: int, offset: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Cumulative signal fraction a_t for t = 0..T-1 (float64), from the cosine schedule with clipped betas."""
    f = lambda t: math.cos((t / timesteps + offset) / (1 + offset) * math.pi / 2) ** 2  # noqa: E731
    betas = [min(1 - f(t + 1) / f(t), max_beta) for t in range(timesteps)]
    return torch.cumprod(1 - torch.tensor(betas, dtype=torch.float64), dim=0)


def randn_per_sample(gens: Sequence[torch.Generator], shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """(len(gens), *shape) standard normal noise, row b drawn from gens[b]: a sample's noise whatever its batch."""
    return torch.cat([torch.randn((1, *shape), generator=g, device=device) for g in gens])


class Diffusion:
    def __init__(self, timesteps: int = 1000) -> None:
        self.timesteps = timesteps
        self.alpha_bar = cosine_alpha_bar(timesteps)
        self._on_device: dict[torch.device, torch.Tensor] = {}  # a copy per device: a CPU->GPU copy every step syncs

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
        table = self._on_device.get(like.device)
        if table is None:
            table = self._on_device.setdefault(like.device, self.alpha_bar.to(like.device))
        a = table[t].float().view(-1, *([1] * (like.ndim - 1)))
        return a.sqrt(), (1 - a).sqrt()

    def loss(self, net: Denoiser, x0: torch.Tensor, labels: torch.Tensor, gen: torch.Generator,
             weight: torch.Tensor | None = None) -> torch.Tensor:
        """MSE between the predicted and the true v at a uniformly drawn step, for clean samples x0 in [-1, 1];
        `gen` lives on x0's device (drawing the noise on the CPU would starve a GPU). `weight` (broadcast to x0)
        restricts the mean to where it is nonzero, e.g. an inpainting mask."""
        t = torch.randint(self.timesteps, (len(x0),), generator=gen, device=x0.device)
        noise = torch.randn(x0.shape, generator=gen, device=x0.device)
        sa, sb = self._a(t, x0)
        pred = net(sa * x0 + sb * noise, t.float() / self.timesteps, labels)
        if weight is None:
            return F.mse_loss(pred.float(), sa * noise - sb * x0)
        weight = weight.expand_as(x0)
        return ((pred.float() - (sa * noise - sb * x0)) ** 2 * weight).sum() / weight.sum().clamp(min=1.0)

    def step_times(self, steps: int, spacing: str = "linear") -> list[int]:
        """Distinct times down to 0 (the last step always lands on x0): `linear`, `steps` of them evenly spaced from
        T-1 (DDIM's); `logsnr`, evenly spaced in log-SNR from LOG_SNR_MIN (DPM-Solver's; fewer when two targets fall
        on one discrete time)."""
        if not 1 <= steps <= self.timesteps:
            raise ValueError(f"steps must be 1..{self.timesteps}, got {steps}")
        if spacing == "linear":
            return sorted({int(round(x)) for x in np.linspace(self.timesteps - 1, 0, steps)}, reverse=True)
        log_snr = 0.5 * torch.log(self.alpha_bar / (1 - self.alpha_bar))
        targets = np.linspace(max(LOG_SNR_MIN, float(log_snr[-1])), float(log_snr[0]), steps)
        return sorted({int(torch.argmin((log_snr - x).abs())) for x in targets}, reverse=True)

    @torch.no_grad()
    def sample(
        self,
        net: Denoiser,
        labels: torch.Tensor,
        shape: tuple[int, ...],
        gen: torch.Generator | Sequence[torch.Generator],
        steps: int = 25,
        eta: float = 0.0,
        temperature: float = 1.0,
        guidance: float = 1.0,
        null_class: int | None = None,
        solver: str = "ddim",
        known: tuple[torch.Tensor, torch.Tensor] | None = None,
        shared_noise: bool = False,
    ) -> torch.Tensor:
        """Samples of `shape` (B,C,H,W) in [-1, 1] for class `labels` (B,), drawn with `gen` (on the device), or
        with one generator per sample (a sequence of B), so that a sample does not depend on the batch it is in.
        `solver` ddim (with `eta`) or dpm++ (DPM-Solver++(2M), deterministic: `eta` must be 0).
        `known` (x0, keep), both broadcast to `shape`: where keep is 1, every x_t is held at the forward-noised x0,
        sqrt(a_t) x0 + sqrt(1 - a_t) eps with the starting noise eps, so a denoiser trained on forward-noised known
        pixels sees them at sampling too (RePaint's replacement; without it they drift with outputs no loss trained).
        `shared_noise`: one noise draw of shape (1, C, H, W) for the whole batch, so that a sample depends on its own
        inputs and `gen`'s seed, not on its place in the batch or the batch's size."""
        if solver not in ("ddim", "dpm++") or (solver == "dpm++" and eta != 0):
            raise ValueError(f"solver must be ddim (any eta) or dpm++ (eta 0), got {solver!r} with eta {eta}")
        dev = labels.device
        if not isinstance(gen, torch.Generator):
            if shared_noise or len(gen) != shape[0]:
                raise ValueError(f"one generator per sample ({shape[0]}) and no shared noise, got {len(gen)} (shared {shared_noise})")
            draw = lambda: randn_per_sample(gen, shape[1:], dev)  # noqa: E731
        else:
            noise_shape = (1, *shape[1:]) if shared_noise else shape
            draw = lambda: torch.randn(noise_shape, generator=gen, device=dev).expand(shape)  # noqa: E731
        start = draw()
        x = start * temperature
        times = self.step_times(steps, "logsnr" if solver == "dpm++" else "linear")

        def hold(x: torch.Tensor, t: int) -> torch.Tensor:
            if known is None:
                return x
            sa, sb = self._a(torch.full((len(x),), t, device=dev), x)
            return torch.lerp(x, sa * known[0] + sb * start, known[1])

        x = hold(x, times[0])
        x0_prev, h_prev = None, 0.0
        for i, t in enumerate(times):
            v = self._predict(net, x, t, labels, guidance, null_class)
            sa, sb = self._a(torch.full((len(x),), t, device=dev), x)
            x0 = (sa * x - sb * v).clamp(-1, 1)
            if i + 1 == len(times):
                break
            if solver == "dpm++":  # the update onto t = 0 is first order: a long step there would extrapolate wildly
                x, h_prev = self._dpm_solver_step(x, x0, None if i + 2 == len(times) else x0_prev, h_prev, t, times[i + 1])
                x, x0_prev = hold(x, times[i + 1]), x0
                continue
            eps = (x - sa * x0) / sb
            a_t, a_s = float(self.alpha_bar[t]), float(self.alpha_bar[times[i + 1]])
            sigma = eta * math.sqrt((1 - a_s) / (1 - a_t) * (1 - a_t / a_s))
            x = math.sqrt(a_s) * x0 + math.sqrt(max(1 - a_s - sigma**2, 0.0)) * eps
            if sigma > 0:
                x = x + sigma * temperature * draw()
            x = hold(x, times[i + 1])
        return x0

    def _log_snr(self, t: int) -> float:
        """lambda_t = log(sqrt(a_t) / sqrt(1 - a_t)), the time variable DPM-Solver steps in."""
        a = float(self.alpha_bar[t])
        return 0.5 * math.log(a / (1 - a))

    def _dpm_solver_step(self, x: torch.Tensor, x0: torch.Tensor, x0_prev: torch.Tensor | None, h_prev: float,
                         t: int, s: int) -> tuple[torch.Tensor, float]:
        """From time t to the earlier s < t: x_s = (sigma_s / sigma_t) x_t - alpha_s (e^-h - 1) D, with
        h = lambda_s - lambda_t and D = x0 on the first step, x0 + (h / 2 h_prev)(x0 - x0_prev) after it."""
        h = self._log_snr(s) - self._log_snr(t)
        d = x0 if x0_prev is None else x0 + (0.5 * h / h_prev) * (x0 - x0_prev)
        a_t, a_s = float(self.alpha_bar[t]), float(self.alpha_bar[s])
        return math.sqrt((1 - a_s) / (1 - a_t)) * x - math.sqrt(a_s) * math.expm1(-h) * d, h

    def _predict(self, net: Denoiser, x: torch.Tensor, t: int, labels: torch.Tensor, guidance: float, null_class: int | None) -> torch.Tensor:
        tt = torch.full((len(x),), t / self.timesteps, device=x.device)
        if guidance == 1.0:
            return net(x, tt, labels).float()
        if null_class is None:
            raise ValueError("classifier-free guidance needs the null class")
        both = net(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([labels, torch.full_like(labels, null_class)])).float()
        cond, uncond = both.chunk(2)
        return uncond + guidance * (cond - uncond)
