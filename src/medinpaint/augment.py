"""Geometric augmentation on the training device, shared by the families that train on slices."""

from __future__ import annotations

import torch

from medinpaint.errors import InputError


def random_symmetries(batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each item of a (B, ..., H, W) batch turned and flipped through one of the 8 symmetries of the square (only
    the two flips when H != W), all channels of an item alike: new training pairs with the same statistics."""
    flip = torch.rand(len(batch), 3, generator=gen, device=batch.device) < 0.5
    per_item = (len(batch),) + (1,) * (batch.ndim - 1)
    if batch.shape[-1] == batch.shape[-2]:
        batch = torch.where(flip[:, 0].view(per_item), batch.transpose(-1, -2), batch)
    batch = torch.where(flip[:, 1].view(per_item), batch.flip(-1), batch)
    return torch.where(flip[:, 2].view(per_item), batch.flip(-2), batch)


def check_crop(crop: int | None, shape: tuple[int, ...]) -> None:
    """A training crop must fit the slices: a larger one would silently train on whole slices instead."""
    if crop is not None and not 1 <= crop <= min(shape):
        raise InputError(f"--crop must be 1..{min(shape)} for slices of {shape[-1]}x{shape[-2]}, got {crop}")
