"""Inpainter: load a checkpoint once, then fill slices from numpy arrays, one at a time or in batches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from medinpaint.backends import runners
from medinpaint.checkpoint import (CheckpointMeta, Preprocessing, load_checkpoint, load_members, load_state, network_from, save_checkpoint,
                                   shipped_weights_dir)
from medinpaint.constants import MASK_LEVELS, MAX_VERTEBRA
from medinpaint.data import read_slices
from medinpaint.data.slices import SliceSet, check_tissue_levels, in_levels, tissue_to_classes, to_uint8, to_unit
from medinpaint.errors import InputError
from medinpaint.models.architectures import ARCHITECTURES, architecture_of, checkpoint_kind
from medinpaint.samples import sample_dir

INPAINTING_KIND = checkpoint_kind("unet")  # the shipped architecture's kind
INPAINTING_KINDS = tuple(checkpoint_kind(name) for name in ARCHITECTURES)
INPAINTING_PREPROCESSING = Preprocessing()  # CT in [0, 1], tissue one-hot, vertebra plane: the defaults
DEFAULT_WEIGHTS = "ct-unet.safetensors"


def default_weights() -> Path:
    """The checkpoint shipped inside the package."""
    return shipped_weights_dir() / DEFAULT_WEIGHTS


class Inpainter:
    """Fill the masked pixels of slices. Known pixels are always returned unchanged.

    `backend`: `auto` (ONNX Runtime on CPU when installed, else PyTorch), `torch`, `onnx` or `int8` (ONNX Runtime with
    8-bit convolutions calibrated on the bundled sample cases); see `backends`."""

    INPUT_NAMES = ("image", "mask", "tissue", "vertebrae")

    def __init__(
        self, network: torch.nn.Module | list[torch.nn.Module], device: str = "cpu", flips: bool = False, name: str = "",
        checksum: str = "", metadata: list[CheckpointMeta] | None = None, backend: str = "auto",
    ) -> None:
        self.members = [m.to(device).eval() for m in (network if isinstance(network, list) else [network])]
        self.network = self.members[0]
        self.runners, self.backend = runners(self.members, backend, device, self._example(), self.INPUT_NAMES,
                                             calibration=self._calibration)
        self.metadata = metadata or []  # one per member, when loaded from checkpoints
        self.device = torch.device(device)
        self.flips = flips
        self.name = name
        self.checksum = checksum

    @classmethod
    def from_pretrained(
        cls, path: str | Path | list[str | Path] | None = None, device: str = "cpu", flips: bool = False,
        backend: str = "auto",
    ) -> Inpainter:
        """Rebuild the model from a checkpoint's own metadata; `path=None` loads the shipped default, and a list
        of paths makes an ensemble that averages its members (slower by the number of members).
        `flips=True` averages with the left-right flipped prediction (about 2x slower; it did not help the shipped CT
        model: abdominal anatomy is not mirror-symmetric)."""
        def load_one(p: Path) -> tuple[torch.nn.Module, CheckpointMeta]:
            state, meta = load_checkpoint(p, INPAINTING_KINDS, INPAINTING_PREPROCESSING)
            config_type, network_type = ARCHITECTURES[architecture_of(meta.kind)]
            return load_state(network_from(meta, config_type, network_type, p), state, p), meta

        networks, metas, name, checksum = load_members(path, default_weights(), device, load_one)
        return cls(networks, device=device, flips=flips, name=name, checksum=checksum, metadata=metas, backend=backend)

    @property
    def config(self) -> Any:
        """The network's config dataclass (of whichever architecture it is)."""
        return self.network.config

    def _example(self) -> tuple[torch.Tensor, ...]:
        """Inputs of the shapes and dtypes `_forward` passes, for the ONNX export."""
        size = 2 * self.network.stride
        image = torch.zeros(1, 1, size, size)
        return image, image, torch.zeros(1, size, size, dtype=torch.int64), torch.zeros(1, dtype=torch.int64)

    @staticmethod
    def _calibration(source: Path | None = None) -> list[tuple[torch.Tensor, ...]]:
        """What the int8 backend measures its activation ranges on: the bundled cases (or the DM-i-AI folder `source`:
        corrupted slices, masks, tissue maps and levels; never their truth) as `_forward` passes them, four a batch.
        Calibrating on 60 slices of training patients instead moved the MAE by 0.003 at most (BENCHMARKS.md)."""
        s = read_slices(source or sample_dir())
        seen = np.where(s.masks, 0, s.images)
        return [_network_inputs(to_unit(seen[i:i + 4]), s.masks[i:i + 4], tissue_to_classes(s.tissue[i:i + 4]),
                                s.vertebrae[i:i + 4], torch.device("cpu")) for i in range(0, len(seen), 4)]

    def predict(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        tissue: np.ndarray | None = None,
        vertebrae: int | None = None,
    ) -> np.ndarray:
        """Fill one (H, W) slice. `image` uint8 0..255 or float [0,1]; `mask` bool or 0/255 (True = missing);
        `tissue` the DM-i-AI map (0/100/255); returns the same dtype as `image`."""
        verts = None if vertebrae is None else np.array([vertebrae])
        tis = None if tissue is None else np.asarray(tissue)[None]
        return self.predict_batch(np.asarray(image)[None], np.asarray(mask)[None], tis, verts)[0]

    def predict_batch(
        self,
        images: np.ndarray,
        masks: np.ndarray,
        tissue: np.ndarray | None = None,
        vertebrae: np.ndarray | None = None,
        batch_size: int = 8,
        progress: bool = False,
    ) -> np.ndarray:
        """Fill (N, H, W) slices in batches of `batch_size`. `vertebrae`: (N,) levels, -1 where one is unknown."""
        images, masks = np.asarray(images), np.asarray(masks)
        tissue = None if tissue is None else np.asarray(tissue)
        vertebrae = None if vertebrae is None else np.asarray(vertebrae)
        if batch_size < 1:
            raise InputError(f"the batch size must be at least 1, got {batch_size}")
        if images.ndim != 3 or masks.shape != images.shape:
            raise InputError(f"images {images.shape} and masks {masks.shape} must both be (N, H, W) of one size")
        masks = _checked_masks(masks)
        _check_images(images, masks)
        if tissue is not None:
            if tissue.shape != images.shape:
                raise InputError(f"tissue map {tissue.shape} does not match images {images.shape}")
            check_tissue_levels(tissue)
        if vertebrae is not None:
            if vertebrae.shape != (len(images),):
                raise InputError(f"vertebrae must be one level per slice, shape ({len(images)},), got {vertebrae.shape}")
            if not np.issubdtype(vertebrae.dtype, np.integer) or (vertebrae.size and (vertebrae.min() < -1 or vertebrae.max() > MAX_VERTEBRA)):
                raise InputError(f"vertebra levels must be integers 0..{MAX_VERTEBRA} (-1: unknown), got {vertebrae[:5].tolist()}")
        seen = np.where(masks, 0, images)  # what lies under the mask is never looked at (not even a NaN)
        out = np.empty(images.shape, dtype=np.float32)
        starts = range(0, len(images), batch_size)
        for s in tqdm(starts, desc="inpainting", unit="batch", disable=not progress):
            sl = slice(s, s + batch_size)
            out[sl] = self._forward(
                to_unit(seen[sl]), masks[sl],
                None if tissue is None else tissue_to_classes(tissue[sl]),
                None if vertebrae is None else np.asarray(vertebrae[sl]),
            )
        if images.dtype == np.uint8:
            return np.where(masks, to_uint8(out), images)
        return np.where(masks, out, images).astype(images.dtype)

    def predict_volume(
        self, volume: np.ndarray, mask: np.ndarray, spacing: tuple[float, float, float] | None = None,
        tissue: np.ndarray | None = None, axis: int = 2, modality: str = "auto", batch_size: int = 8, progress: bool = False,
    ) -> tuple[np.ndarray, dict]:
        """Fill a 3-D array in the scan's units (Hounsfield units for CT) slice by slice along `axis`, each slice as it
        lies in the array; `spacing` is the voxel size in mm along the three axes (slices are resampled to the
        checkpoint's pixel size when it is known). Returns the filled volume (float64; known voxels unchanged) and a
        record of the intensity mapping and resampling used. NIfTI files: `volume_inference.fill_nifti`."""
        from medinpaint.volume_inference import fill_stack

        volume, mask = np.asarray(volume), np.asarray(mask).astype(bool)
        if volume.ndim != 3 or mask.shape != volume.shape or (tissue is not None and np.shape(tissue) != volume.shape):
            raise InputError(f"volume {volume.shape}, mask {mask.shape} and tissue map must all be one 3-D shape")
        if axis not in (0, 1, 2):
            raise InputError(f"axis must be 0, 1 or 2, got {axis}")
        if spacing is not None and len(spacing) != 3:
            raise InputError(f"spacing must give the voxel size along all three axes, got {tuple(spacing)}")
        plane = None if spacing is None else tuple(float(s) for i, s in enumerate(spacing) if i != axis)
        stack = lambda a: np.moveaxis(np.asarray(a), axis, 0)  # noqa: E731
        filled, record = fill_stack(self, stack(volume).astype(np.float64), stack(mask), plane,
                                    None if tissue is None else stack(tissue), modality, batch_size, progress)
        return np.moveaxis(filled, 0, axis), record

    def predict_slices(self, slices: SliceSet, batch_size: int = 8, progress: bool = False) -> np.ndarray:
        if slices.masks is None:
            raise InputError("the dataset has no masks: nothing to fill")
        return self.predict_batch(slices.images, slices.masks, slices.tissue, slices.vertebrae, batch_size, progress)

    @torch.inference_mode()
    def _forward(self, images: np.ndarray, masks: np.ndarray, classes: np.ndarray | None, verts: np.ndarray | None) -> np.ndarray:
        x, m, t, v = _network_inputs(images, masks, classes, verts, self.device)
        preds = [run(x, m, t, v) for run in self.runners]
        if self.flips:
            preds += [run(x.flip(-1), m.flip(-1), t.flip(-1), v).flip(-1) for run in self.runners]
        return (sum(preds) / len(preds))[:, 0].float().cpu().numpy()


def _network_inputs(images: np.ndarray, masks: np.ndarray, classes: np.ndarray | None, verts: np.ndarray | None,
                    device: torch.device) -> tuple[torch.Tensor, ...]:
    """Slices in [0, 1], bool masks, tissue classes and levels as the network's four input tensors."""
    x = torch.from_numpy(images).unsqueeze(1).to(device)
    m = torch.from_numpy(masks.astype(np.float32)).unsqueeze(1).to(device)
    # an unknown tissue class or vertebra level is -1, which the network reads exactly as a missing input
    t = torch.full(x.shape[:1] + x.shape[2:], -1) if classes is None else torch.from_numpy(classes).long()
    v = torch.full(x.shape[:1], -1) if verts is None else torch.from_numpy(verts.astype(np.int64))
    return x, m, t.to(device), v.to(device)


def save_inpainter(path: Path, network: torch.nn.Module, name: str = "", dtype: torch.dtype | None = None,
                   preprocessing: Preprocessing = INPAINTING_PREPROCESSING) -> Path:
    """Write an inpainting network (trained elsewhere, or untrained for a test) as a checkpoint `from_pretrained` reads;
    `preprocessing` may describe its data (intensity window, pixel spacing) beyond the fixed defaults."""
    kind = next(checkpoint_kind(n) for n, (_, t) in ARCHITECTURES.items() if type(network) is t)
    meta = CheckpointMeta(kind=kind, config=network.config.to_dict(), preprocessing=preprocessing)
    meta.training.name = name
    return save_checkpoint(path, network, meta, dtype)


def _checked_masks(masks: np.ndarray) -> np.ndarray:
    """bool, or 0/1 or 0/255 numbers -> bool (True = missing); anything else is refused rather than guessed at."""
    if masks.dtype != bool and not in_levels(masks, MASK_LEVELS).all():
        raise InputError(f"masks must be boolean, 0/1 or 0/255, found {np.setdiff1d(masks, MASK_LEVELS)[:5].tolist()}")
    return masks.astype(bool)


def _check_images(images: np.ndarray, masks: np.ndarray) -> None:
    """uint8 0..255, or float in [0, 1] at the known pixels: other dtypes and ranges would be filled as garbage."""
    if images.dtype == np.uint8:
        return
    if not np.issubdtype(images.dtype, np.floating):
        raise InputError(f"images must be uint8 (0..255) or float in [0, 1], got {images.dtype}")
    known = images[~masks]
    if known.size and not (np.isfinite(known).all() and known.min() >= 0 and known.max() <= 1):
        raise InputError(f"float images must lie in [0, 1] at the known pixels, found {np.nanmin(known):.3g}..{np.nanmax(known):.3g}"
                         " (give 0..255 values as uint8)")
