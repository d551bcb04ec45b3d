"""The segmentation family's task for the training engine: Dice + cross-entropy, geometric augmentation, and
the Dice of each class on held-out patients as the validation measure."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from medinpaint.augment import check_crop, random_symmetries
from medinpaint.checkpoint import Preprocessing
from medinpaint.data.split import one_patient_note, training_split
from medinpaint.engine import EngineConfig, Task, fit
from medinpaint.errors import InputError
from medinpaint.models import SegmentationUNet, SegmenterConfig
from medinpaint.segmentation.data import LabelledSet, check_classes_present
from medinpaint.metrics import SegmentationMetrics
from medinpaint.segmentation.inference import SEGMENTER_KIND, predict_classes


@dataclass
class SegTrainConfig(EngineConfig):
    batch_size: int = 8
    lr: float = 2e-3
    val_every: int = 250
    crop: int | None = None  # train on random square crops of this size
    augment: bool = True  # the 8 symmetries of the square (turns and mirrors), applied to image and labels alike
    dice_weight: float = 1.0  # loss = cross-entropy + dice_weight * (1 - soft Dice of the foreground classes)
    val_cases: int = 64
    network: SegmenterConfig = field(default_factory=SegmenterConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.network, dict):
            self.network = SegmenterConfig(**self.network)


def dice_ce_loss(logits: torch.Tensor, target: torch.Tensor, dice_weight: float) -> torch.Tensor:
    """Cross-entropy plus one minus the soft Dice of the foreground classes over the whole batch (nnU-Net's
    "batch Dice"): the Dice term keeps small classes from being drowned by the background."""
    ce = F.cross_entropy(logits, target)
    probs = logits.softmax(1)[:, 1:]
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2)[:, 1:].to(probs.dtype)
    dims = (0, 2, 3)
    dice = (2 * (probs * onehot).sum(dims) + 1) / (probs.sum(dims) + onehot.sum(dims) + 1)
    return ce + dice_weight * (1 - dice.mean())


class SegmentationTask(Task):
    """Labelled slices of the training patients (plus optional `extra` pairs, e.g. synthetic ones, which are never
    used for validation)."""

    kind = SEGMENTER_KIND
    name = "training segmenter"

    def __init__(self, data: LabelledSet, cfg: SegTrainConfig, extra: LabelledSet | None = None, check_classes: bool = True) -> None:
        if data.labels is None:
            raise InputError("training needs label maps")
        check_crop(cfg.crop, data.images.shape[1:])
        if cfg.network.classes != len(data.values):
            raise InputError(f"the network has {cfg.network.classes} classes, the labels {len(data.values)} ({list(data.values)})")
        train_idx, val_idx = training_split(data.ids, data.source)
        train = data.subset(train_idx)
        if extra is not None:
            if extra.values != data.values or extra.images.shape[1:] != data.images.shape[1:]:
                raise InputError("extra training pairs must have the same classes and size as the data")
            train = LabelledSet(train.ids + extra.ids, np.concatenate([train.images, extra.images]),
                                np.concatenate([train.labels, extra.labels]), data.values, data.names, data.layout, data.window)
        if check_classes:
            check_classes_present(train, "training data")
        rng = np.random.default_rng(cfg.seed + 1)
        val_from = val_idx if len(val_idx) else train_idx
        self.notes = () if len(val_idx) else (one_patient_note(data.source),)
        self.val = data.subset(np.sort(rng.choice(val_from, size=min(cfg.val_cases, len(val_from)), replace=False)))
        self.train, self.cfg, self.network_config = train, cfg, cfg.network
        self.train_slices, self.window = len(train), data.window
        self.val_fields = ("val_dice", *(f"val_dice_{n}" for n in data.names[1:]))

    def build_network(self) -> SegmentationUNet:
        return SegmentationUNet(self.network_config)

    def preprocessing(self) -> Preprocessing:
        return Preprocessing(channels=("ct",), tissue_levels=self.train.values, vertebra_encoding="none", intensity_window=self.window)

    def setup(self, device: torch.device) -> None:
        self.images = torch.from_numpy(self.train.images).to(device)
        self.labels = torch.from_numpy(self.train.labels).to(device)

    def batch(self, gen: torch.Generator, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        dev = self.images.device
        idx = torch.randint(len(self.images), (size,), generator=gen, device=dev)
        pair = torch.stack([self.images[idx], self.labels[idx]], dim=1)  # (B, 2, H, W): one transform for both
        if self.cfg.augment:
            pair = random_symmetries(pair, gen)
        crop, (h, w) = self.cfg.crop, pair.shape[-2:]
        if crop is not None and crop < min(h, w):
            y, x = (int(torch.randint(n - crop + 1, (1,), generator=gen, device=dev)) for n in (h, w))
            pair = pair[..., y : y + crop, x : x + crop]
        return pair[:, :1].float() / 255.0, pair[:, 1].long()

    def loss(self, forward: Callable[..., torch.Tensor], batch: tuple[torch.Tensor, torch.Tensor], gen: torch.Generator) -> torch.Tensor:
        image, target = batch
        return dice_ce_loss(forward(image).float(), target, self.cfg.dice_weight)

    def validate(self, network: torch.nn.Module, device: torch.device) -> dict[str, float]:
        metrics = SegmentationMetrics(self.val.names)
        for case, pred, truth in zip(self.val.ids, predict_classes([network.eval()], self.val.images, device), self.val.labels):
            metrics(case, pred, truth)
        summary = metrics.aggregate()
        return {"val_dice": summary["mean_dice"], **{f"val_dice_{n}": summary[f"dice_{n}"] for n in self.val.names[1:]}}


def train_segmenter(data: LabelledSet, output: Path, cfg: SegTrainConfig, extra: LabelledSet | None = None,
                    device: str | None = None, progress: bool = True, overwrite: bool = False, check_classes: bool = True) -> Path:
    """Train on the training patients of `data` (plus `extra` pairs), writing `output/`; the weights' path.
    `check_classes=False` trains even when a class never occurs (a study measuring a poor generator's pairs)."""
    return fit(SegmentationTask(data, cfg, extra, check_classes), output, cfg, device=device, progress=progress, overwrite=overwrite)
