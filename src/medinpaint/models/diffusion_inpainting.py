"""Diffusion inpainting conditioned on the masked slice (Palette, Saharia et al. 2022; the SR3 recipe): a denoiser
sees the noisy slice beside the same inputs every architecture gets (slice zeroed under the mask, mask, tissue
one-hot, vertebra plane), learns v-prediction on the masked pixels, and fills a hole by sampling.

Why conditioned rather than RePaint's resampling with an unconditional generator: it trains on the same slices,
masks and budget as the other architectures, through the same engine, and it uses the tissue map and vertebra
level the others get (an unconditional slice generator cannot); RePaint also needs about ten times the network
evaluations per step (its resampling jumps), which a CPU comparison cannot afford.

At sampling the known pixels of every x_t are held at their forward-noised values, as in training (RePaint's
replacement step), so the denoiser never sees known pixels it was not trained on next to the hole.

A fill is one posterior sample, drawn with a fixed seed so the same input gives the same output, whatever the batch
it comes in (one noise draw serves every slice of a batch); `samples` > 1
averages several, which moves the fill towards the posterior mean (the MAE-optimal answer) at that many times
the cost. Sampling loops do not export to ONNX; this network runs in PyTorch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from medinpaint.models.denoiser import ConditionalUNet, DenoiserConfig
from medinpaint.models.inpainting import InpaintingNetwork, SideInputs, assemble_inputs, pad_to
from medinpaint.synthesis.diffusion import Diffusion


@dataclass
class DiffusionInpaintingConfig(SideInputs):
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 2, 4)
    blocks_per_level: int = 1
    attention_levels: tuple[int, ...] = (3,)
    groups: int = 8
    timesteps: int = 1000
    solver: str = "dpm++"  # or ddim
    sampling_steps: int = 10
    samples: int = 1  # posterior samples averaged per fill
    seed: int = 0  # of the sampling noise

    def __post_init__(self) -> None:  # JSON gives lists back
        self.channel_mults = tuple(self.channel_mults)
        self.attention_levels = tuple(self.attention_levels)


class DiffusionInpaintingNet(InpaintingNetwork):
    denoising = True
    onnx_exportable = False

    def __init__(self, config: DiffusionInpaintingConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or DiffusionInpaintingConfig()
        self.denoiser = ConditionalUNet(DenoiserConfig(
            channels=1, cond_channels=cfg.in_channels, base_channels=cfg.base_channels, channel_mults=cfg.channel_mults,
            blocks_per_level=cfg.blocks_per_level, attention_levels=cfg.attention_levels, num_classes=1, groups=cfg.groups))
        self.diffusion = Diffusion(cfg.timesteps)
        self.stride = 2 ** (len(cfg.channel_mults) - 1)

    def denoiser_of(self, cond: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
        """The denoiser with its conditioning bound: `net(x, t, labels) -> v`, as the diffusion procedures call it."""
        return lambda x, t, labels: self.denoiser(x, t, labels, cond)

    def forward(self, image: torch.Tensor, mask: torch.Tensor, tissue: torch.Tensor | None = None,
                vertebrae: torch.Tensor | None = None, training_noise: torch.Generator | None = None) -> torch.Tensor:
        """Filled image in [0,1]: the mean of `samples` draws of the hole; known pixels passed through unchanged.
        With `training_noise` (a generator), the training objective instead: v-prediction MSE on the masked pixels
        at a random diffusion step (through `forward`, so a DDP-wrapped network syncs its gradients)."""
        cfg = self.config
        h, w = image.shape[-2:]
        cond = pad_to(assemble_inputs(cfg, image, mask, tissue, vertebrae), self.stride)
        labels = torch.zeros(len(image), dtype=torch.long, device=image.device)
        if training_noise is not None:
            x0, weight = pad_to(image * 2 - 1, self.stride), pad_to(mask, self.stride)
            return self.diffusion.loss(self.denoiser_of(cond), x0, labels, training_noise, weight=weight)
        gen = torch.Generator(device=image.device).manual_seed(cfg.seed)
        known = (pad_to(image * 2 - 1, self.stride), 1 - pad_to(mask, self.stride))
        draws = [self.diffusion.sample(self.denoiser_of(cond), labels, (len(image), 1, *cond.shape[-2:]), gen,
                                       steps=cfg.sampling_steps, solver=cfg.solver, known=known, shared_noise=True)
                 for _ in range(cfg.samples)]
        pred = ((torch.stack(draws).mean(0) + 1) / 2)[..., :h, :w].to(image.dtype)
        return image * (1 - mask) + pred * mask
