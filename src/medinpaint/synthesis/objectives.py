"""What each synthesis model is trained to minimise, on a batch of (CT, tissue level) pairs.

Every objective takes the network, the batch as uint8 (B,2,H,W), the vertebra levels (B,), the training config
and a random generator on the batch's device, and returns a scalar loss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medinpaint.models.denoiser import NULL_CLASS
from medinpaint.synthesis.diffusion import Diffusion

Objective = Callable[[nn.Module, torch.Tensor, torch.Tensor, Any, torch.Generator], torch.Tensor]


def with_null_class(levels: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """Replace a fraction `p` of the class labels by the null class (classifier-free dropout)."""
    drop = torch.rand(len(levels), generator=gen, device=levels.device) < p
    return torch.where(drop, torch.full_like(levels, NULL_CLASS), levels)


def diffusion_loss(net: nn.Module, pairs: torch.Tensor, levels: torch.Tensor, cfg: Any, gen: torch.Generator) -> torch.Tensor:
    """v-prediction MSE at a random diffusion step, on pairs scaled to [-1, 1]."""
    x0 = pairs.float() / 127.5 - 1
    return Diffusion(cfg.timesteps).loss(net, x0, with_null_class(levels, cfg.cond_dropout, gen), gen)


def vae_loss(net: nn.Module, pairs: torch.Tensor, levels: torch.Tensor, cfg: Any, gen: torch.Generator) -> torch.Tensor:
    """Mean L1 reconstruction error + beta * KL(q(z|x) || N(0, I)) per pixel. With beta equal to the typical
    per-pixel error, this is the negative ELBO of a Laplace likelihood of that scale, up to a constant."""
    x = pairs.float() / 255
    recon, mean, logvar = net(x, with_null_class(levels, cfg.cond_dropout, gen))
    kl = 0.5 * (mean.float() ** 2 + logvar.float().exp() - 1 - logvar.float()).sum(dim=1).mean()
    return F.l1_loss(recon.float(), x) + cfg.kl_weight * kl / x[0].numel()


def encoder_loss(net: nn.Module, pairs: torch.Tensor, levels: torch.Tensor, cfg: Any, gen: torch.Generator) -> torch.Tensor:
    """Cross-entropy of the vertebra level + 10 x L1 of the body and fat fractions, from the CT channel alone."""
    logits, fractions = net(pairs[:, :1].float() / 255)
    tissue = pairs[:, 1]
    target = torch.stack([(tissue > 0).float().mean(dim=(1, 2)), (tissue == 255).float().mean(dim=(1, 2))], dim=1)
    return F.cross_entropy(logits.float(), levels) + 10 * F.l1_loss(fractions.float(), target)


OBJECTIVES: dict[str, Objective] = {"diffusion": diffusion_loss, "vae": vae_loss, "encoder": encoder_loss}
