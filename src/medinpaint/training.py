"""The inpainting family: the mask-aware U-Net's task for the training engine, and `train()`.

The training data stay on the device as uint8 tensors; each step draws slices and masks at random and pairs
them afresh (masks turned and flipped through the 8 symmetries of the square), so no epoch sees the same pair
twice. Everything else (budget, schedule, EMA, resume, logs, export) is the engine's (`medinpaint.engine`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medinpaint.augment import check_crop, random_symmetries
from medinpaint.checkpoint import Preprocessing
from medinpaint.data.slices import SliceSet, tissue_to_classes, to_uint8
from medinpaint.data.split import one_patient_note, training_split
from medinpaint.engine import EngineConfig, Task, fit
from medinpaint.errors import InputError
from medinpaint.inference import Inpainter
from medinpaint.losses import LOSSES, PERCEPTUAL_NEEDS_ENCODER, SSIM_WINDOW, PerceptualFeatures, inpainting_loss
from medinpaint.masks import BrushStrokes
from medinpaint.models import UNetConfig
from medinpaint.models.architectures import ARCHITECTURES, checkpoint_kind, config_of, denoises
from medinpaint.models.patchgan import PatchGAN, PatchGANConfig, lsgan_critic_loss, lsgan_generator_loss


@dataclass
class TrainConfig(EngineConfig):
    loss: str = "l1"  # one of losses.LOSSES: l1 or mse on the missing pixels, ssim, l1+ssim
    side_dropout: float = 0.1  # chance to hide the tissue map / vertebra level, so both may be absent later
    generated_masks: int = 512  # procedural brush masks added to the pool (all of it when the data have none)
    mask_symmetries: bool = True  # turn and flip pool masks (off when the mask's orientation is the point)
    own_masks: bool = False  # pair each slice with its own mask (the data's), e.g. lesions for a lesion painter
    crop: int | None = None  # train on random square crops of this size (cheaper per image; the net is convolutional)
    ambiguous_value: int | None = None  # clean pixels of this uint8 value are masked too: the target can't tell them from gaps
    val_cases: int = 64
    adversarial: float = 0.0  # > 0: a PatchGAN critic joins, its least-squares loss added to the network's with this weight
    critic_channels: int = 32
    perceptual_encoder: str | None = None  # encoder checkpoint for --loss l1+perceptual
    architecture: str = "unet"  # a name of models.architectures.ARCHITECTURES
    network: Any = field(default_factory=UNetConfig)  # that architecture's config

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.loss not in LOSSES:
            raise InputError(f"--loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.loss == "l1+perceptual" and not self.perceptual_encoder:
            raise InputError(PERCEPTUAL_NEEDS_ENCODER)
        if "ssim" in self.loss and self.crop is not None and self.crop < SSIM_WINDOW:
            raise InputError(f"--crop {self.crop}: --loss {self.loss} needs crops of at least {SSIM_WINDOW} px (its window)")
        self.network = config_of(self.architecture, self.network)
        if type(self.network) is not ARCHITECTURES[self.architecture][0]:
            raise InputError(f"a {type(self.network).__name__} does not configure the {self.architecture} architecture")
        if denoises(self.architecture) and (self.adversarial > 0 or self.loss != "l1" or self.perceptual_encoder):
            raise InputError(f"the {self.architecture} architecture trains on its own denoising objective: "
                             "leave --loss at l1 and use no adversarial or perceptual term")


class TrainingData:
    """Clean slices, tissue classes, vertebra levels and a mask pool, as tensors on one device."""

    def __init__(self, slices: SliceSet, masks: np.ndarray, device: torch.device, own_masks: bool = False) -> None:
        """`own_masks`: each slice keeps its own mask (`slices.masks`, turned and flipped with it) instead of
        drawing one from the pool `masks`."""
        self.clean = torch.from_numpy(to_uint8(slices.clean)).to(device)
        self.own = torch.from_numpy(slices.masks.astype(bool)).to(device) if own_masks else None
        self.tissue = None if slices.tissue is None else torch.from_numpy(tissue_to_classes(slices.tissue).astype(np.int8)).to(device)
        self.vertebrae = None if slices.vertebrae is None else torch.from_numpy(slices.vertebrae.astype(np.int64)).to(device)
        self.masks = torch.from_numpy(masks).to(device)
        self.device = device

    def __len__(self) -> int:
        return len(self.clean)

    def batch(
        self, gen: torch.Generator, size: int, side_dropout: float, symmetries: bool = True, crop: int | None = None,
        ambiguous_value: int | None = None,
    ) -> dict[str, torch.Tensor | None]:
        """A random batch: slices paired with randomly chosen masks (or their own), turned and flipped if
        `symmetries`, cut to one random `crop` x `crop` window if given; pixels equal to `ambiguous_value` are
        added to the mask."""
        dev = self.device
        idx = torch.randint(len(self.clean), (size,), generator=gen, device=dev)
        image = self.clean[idx]
        if self.own is None:
            mask = self.masks[torch.randint(len(self.masks), (size,), generator=gen, device=dev)]
            if symmetries:
                mask = random_symmetries(mask, gen)
        else:
            mask = self.own[idx]
        keep_side = torch.rand(size, generator=gen, device=dev) >= side_dropout
        tissue = None
        if self.tissue is not None:
            tissue = torch.where(keep_side[:, None, None], self.tissue[idx].long(), torch.full_like(self.tissue[idx].long(), -1))
        verts = None
        if self.vertebrae is not None:
            verts = torch.where(keep_side, self.vertebrae[idx], torch.full_like(self.vertebrae[idx], -1))
        if self.own is not None and symmetries:  # the slice, its own mask and its tissue map turn together
            parts = [image.long(), mask.long()] + ([] if tissue is None else [tissue])
            turned = random_symmetries(torch.stack(parts, dim=1), gen).unbind(1)
            image, mask = turned[0].to(self.clean.dtype), turned[1].bool()
            tissue = None if tissue is None else turned[2]
        h, w = image.shape[-2:]
        if crop is not None and not crop == h == w:
            y, x = (int(torch.randint(n - crop + 1, (1,), generator=gen, device=dev)) for n in (h, w))
            window = (..., slice(y, y + crop), slice(x, x + crop))
            image, mask = image[window], mask[window]
            tissue = None if tissue is None else tissue[window]
        if ambiguous_value is not None:
            mask = mask | (image == ambiguous_value)
        return {"image": image.unsqueeze(1).float() / 255.0, "mask": mask.unsqueeze(1).float(), "tissue": tissue, "vertebrae": verts}


def build_mask_pool(slices: SliceSet, n_generated: int, seed: int) -> np.ndarray:
    """Real masks of the data (if any) plus `n_generated` procedural brush-stroke masks."""
    shape = slices.images.shape[1:]
    rng = np.random.default_rng(seed)
    gen = BrushStrokes()
    parts = [slices.masks] if slices.masks is not None else []
    n = n_generated if parts else max(n_generated, 64)
    if n:
        parts.append(np.stack([gen(rng, shape) for _ in range(n)]))
    return np.concatenate(parts).astype(bool)


def slice_digest(slices: SliceSet) -> str:
    """12 hex digits of the slices' ids and pixels (and masks): a run resumed on other data says so, whatever its size."""
    digest = hashlib.blake2b(digest_size=6)
    digest.update("\n".join(slices.ids).encode())
    for part in (slices.images, slices.truth, slices.masks):
        if part is not None:
            digest.update(np.ascontiguousarray(part).data)
    return digest.hexdigest()


def validation_set(slices: SliceSet, n: int, seed: int, pool: np.ndarray, ambiguous_value: int | None = None) -> SliceSet:
    """Up to `n` validation slices with fixed masks: their own when they have them, else seeded draws from `pool`
    (with every pixel equal to `ambiguous_value` added, as the training batches do)."""
    rng = np.random.default_rng(seed + 1)
    pick = np.sort(rng.choice(len(slices), size=min(n, len(slices)), replace=False))
    val = slices.subset(pick)
    if val.masks is None or val.truth is None:
        masks = pool[rng.integers(len(pool), size=len(val))]
        clean = to_uint8(val.clean)
        if ambiguous_value is not None:
            masks = masks | (clean == ambiguous_value)
        val = SliceSet(val.ids, np.where(masks, 0, clean).astype(np.uint8), masks, clean, val.tissue, val.vertebrae, layout=val.layout)
    return val


@torch.no_grad()
def evaluate_mae(network: torch.nn.Module, val: SliceSet, device: torch.device, batch_size: int = 16) -> float:
    """Whole-image MAE (0..255, as the challenge scores it) of `network` on a validation SliceSet."""
    was_training = network.training
    filled = Inpainter(network, device=str(device), backend="torch").predict_slices(val, batch_size=batch_size)
    network.train(was_training)
    return float(np.abs(filled.astype(np.float64) - to_uint8(val.truth).astype(np.float64)).mean())


class InpaintingTask(Task):
    """Training slices of the non-validation patients, each paired every step with a mask from the pool."""

    val_fields = ("val_mae",)

    def __init__(self, data: SliceSet, cfg: TrainConfig, mask_pool: np.ndarray | None = None) -> None:
        if not cfg.own_masks:
            data.require_clean()
        check_crop(cfg.crop, data.images.shape[1:])
        train_idx, val_idx = training_split(data.ids, data.source)
        if cfg.own_masks and data.masks is None:
            raise InputError("training on the data's own masks (own_masks) needs data with masks")
        self.train_set = data.subset(train_idx)
        self.pool = build_mask_pool(self.train_set, cfg.generated_masks, cfg.seed) if mask_pool is None else mask_pool.astype(bool)
        self.notes = () if len(val_idx) else (one_patient_note(data.source),)
        # seed 0, not the run's: runs of several seeds are measured on one validation set (as `compare`'s table is)
        self.val = validation_set(data.subset(val_idx) if len(val_idx) else self.train_set, cfg.val_cases, 0,
                                  self.pool, cfg.ambiguous_value)
        self.cfg, self.network_config, self.train_slices = cfg, cfg.network, len(self.train_set)
        self.train_digest = slice_digest(self.train_set)
        self.window, self.spacing = data.intensity_window, data.pixel_spacing_mm
        self.kind = checkpoint_kind(cfg.architecture)

    def build_network(self) -> torch.nn.Module:
        return ARCHITECTURES[self.cfg.architecture][1](self.network_config)

    def preprocessing(self) -> Preprocessing:
        return Preprocessing(intensity_window=self.window, pixel_spacing_mm=self.spacing)

    def setup(self, device: torch.device) -> None:
        self.data = TrainingData(self.train_set, self.pool, device, self.cfg.own_masks)
        self.features = None
        if self.cfg.perceptual_encoder:
            from medinpaint.synthesis.registry import load_network

            encoder, _ = load_network(Path(self.cfg.perceptual_encoder), "encoder")
            self.features = PerceptualFeatures(encoder.to(device))

    def batch(self, gen: torch.Generator, size: int) -> dict[str, torch.Tensor | None]:
        c = self.cfg
        return self.data.batch(gen, size, c.side_dropout, c.mask_symmetries, c.crop, c.ambiguous_value)

    def build_critic(self) -> torch.nn.Module | None:
        return PatchGAN(PatchGANConfig(base_channels=self.cfg.critic_channels)) if self.cfg.adversarial > 0 else None

    def loss(self, forward: Callable[..., torch.Tensor], batch: dict, gen: torch.Generator) -> torch.Tensor:
        if denoises(self.cfg.architecture):
            return forward(batch["image"], batch["mask"], batch["tissue"], batch["vertebrae"], training_noise=gen)
        pred = forward(batch["image"], batch["mask"], batch["tissue"], batch["vertebrae"])
        loss = inpainting_loss(pred.float(), batch["image"], batch["mask"], self.cfg.loss, self.features)
        if self.cfg.adversarial > 0:
            self.fake = pred.detach()
            loss = loss + self.cfg.adversarial * lsgan_generator_loss(self.critic(pred, batch["mask"]).float())
        return loss

    def critic_loss(self, batch: dict, gen: torch.Generator) -> torch.Tensor:
        real, fake = self.critic(batch["image"], batch["mask"]), self.critic(self.fake, batch["mask"])
        return lsgan_critic_loss(real.float(), fake.float())

    def validate(self, network: torch.nn.Module, device: torch.device) -> dict[str, float]:
        return {"val_mae": evaluate_mae(network, self.val, device)}


def train(
    data: SliceSet,
    output: Path,
    cfg: TrainConfig,
    device: str | None = None,
    progress: bool = True,
    overwrite: bool = False,
    mask_pool: np.ndarray | None = None,
) -> Path:
    """Train on the non-validation patients of `data`, writing `output/` (weights, log, curves, checkpoint).
    `mask_pool` (N,H,W) bool replaces the default pool (the data's masks plus brush strokes), e.g. to train
    for one known corruption. Returns the path of the final EMA weights, `output/model.safetensors`."""
    return fit(InpaintingTask(data, cfg, mask_pool), output, cfg, device=device, progress=progress, overwrite=overwrite)
