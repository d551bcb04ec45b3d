"""The learned lesion-mask generator: a conditional VAE (`models.lesion_vae`) of lesion-centred patches of mask and
anatomy, trained through the one engine on a user's example lesions, and `LearnedMasks`, which samples with the
shared mask-generator signature.

Where a new lesion goes is not the network's job: the checkpoint's `sampling` metadata keeps the share of training
lesions centred in each anatomy class and how deep in that class each centre sat (pixels to the class border). A
sample draws a class present in the slice, a centre at least as deep as a drawn training lesion, and decodes a shape
from N(0, I) for the anatomy around that centre.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from medinpaint.augment import random_symmetries
from medinpaint.checkpoint import CheckpointMeta, Preprocessing, Training, config_from, load_checkpoint, load_state
from medinpaint.engine import EngineConfig, Task, fit
from medinpaint.errors import InputError
from medinpaint.lesions.masks import ellipsoid, pick
from medinpaint.models.lesion_vae import MaskVAE, MaskVAEConfig, one_hot

KIND = "lesion-mask-vae"
# the mask in [0, 1] and the anatomy as one-hot class ids (no tissue-map coding)
PREPROCESSING = Preprocessing(channels=("lesion", "anatomy"), tissue_levels=(), vertebra_encoding="none")
RETRIES = 4  # new draws of z before an empty decoded shape gives way to the fallback disc
FALLBACK_RADIUS = 2.0
DEPTH_QUANTILES = 101  # centre depths kept per class: all of them, or this many quantiles


def crop(array: np.ndarray, centre: tuple[int, int], patch: int) -> np.ndarray:
    """The patch x patch window of a 2D `array` whose pixel (patch // 2, patch // 2) is `centre`; zero beyond the borders."""
    (y, x), half = centre, patch // 2
    return np.pad(array, half)[y : y + patch, x : x + patch]


def paste(window: np.ndarray, centre: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    """The inverse of `crop`: `window` put back into a zero array of `shape`, what falls outside dropped."""
    (y, x), patch = centre, len(window)
    half = patch // 2
    out = np.zeros((shape[0] + 2 * half, shape[1] + 2 * half), dtype=window.dtype)
    out[y : y + patch, x : x + patch] = window
    return out[half : half + shape[0], half : half + shape[1]]


def lesion_patches(masks: np.ndarray, anatomy: np.ndarray, patch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One patch per lesion (8-connected component of a slice's mask) centred on its rounded centroid: that lesion's
    mask alone (bool (K,P,P)) and the anatomy (uint8 (K,P,P)), zero beyond the slice; with the anatomy class at each
    centre (K,) and the centre's depth in that class (K,), its distance to the nearest pixel of another class."""
    if masks.ndim != 3 or masks.shape != anatomy.shape:
        raise InputError(f"lesion masks {masks.shape} and anatomy {anatomy.shape} must be stacks (N, H, W) of one shape")
    windows, anats, classes, depths = [], [], [], []
    for mask, anat in zip(masks.astype(bool), anatomy.astype(np.uint8)):
        labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
        depth_of: dict[int, np.ndarray] = {}
        for k, centroid in enumerate(ndimage.center_of_mass(mask, labels, range(1, n + 1)), start=1):
            centre = tuple(int(round(c)) for c in centroid)
            cls = int(anat[centre])
            if cls not in depth_of:
                depth_of[cls] = ndimage.distance_transform_edt(anat == cls)
            windows.append(crop(labels == k, centre, patch))
            anats.append(crop(anat, centre, patch))
            classes.append(cls)
            depths.append(float(depth_of[cls][centre]))
    if not windows:
        return (np.zeros((0, patch, patch), dtype=bool), np.zeros((0, patch, patch), dtype=np.uint8),
                np.zeros(0, dtype=np.int64), np.zeros(0))
    return np.stack(windows), np.stack(anats), np.asarray(classes, dtype=np.int64), np.asarray(depths)


def placement(classes: np.ndarray, depths: np.ndarray, n_classes: int) -> dict:
    """The checkpoint's `sampling` record: the share of training lesions centred in each anatomy class, and per class
    the depths of their centres (all of them, or DEPTH_QUANTILES quantiles when there are more)."""
    counts = np.bincount(classes, minlength=n_classes)
    kept = [depths[classes == k] for k in range(n_classes)]
    return {"centre_classes": (counts / counts.sum()).tolist(),
            "centre_depths": [np.quantile(d, np.linspace(0, 1, min(len(d), DEPTH_QUANTILES))).round(3).tolist() if len(d) else []
                              for d in kept]}


def fitting_patch(masks: np.ndarray) -> int:
    """The smallest patch (a multiple of 8) that holds the largest lesion (8-connected, as lesions are counted
    everywhere) with a quarter of its size to spare."""
    extents = [max(s.stop - s.start for s in box) for mask in masks for box in ndimage.find_objects(ndimage.label(mask, np.ones((3, 3)))[0]) if box]
    return int(8 * np.ceil(1.25 * max(extents, default=1) / 8))


@dataclass
class MaskGenTrainConfig(EngineConfig):
    batch_size: int = 32
    lr: float = 2e-3
    warmup_steps: int = 50
    beta: float = 1.0  # loss = BCE summed over a patch's pixels + beta * KL(q(z | mask, anatomy) || N(0, I))
    augment: bool = True  # the 8 symmetries of the square, applied to mask and anatomy alike
    network: MaskVAEConfig = field(default_factory=MaskVAEConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.network, dict):
            self.network = MaskVAEConfig(**self.network)


class MaskGenTask(Task):
    """Lesion-centred patches of every lesion in the training masks; the network gets as many anatomy classes, and
    patches as large, as the config or the data need, whichever is more."""

    kind = KIND
    name = "training mask generator"

    def __init__(self, masks: np.ndarray, anatomy: np.ndarray, cfg: MaskGenTrainConfig,
                 anatomy_names: Sequence[str] | None = None) -> None:
        self.cfg = cfg
        self.network_config = replace(cfg.network, anatomy_classes=max(cfg.network.anatomy_classes, int(np.max(anatomy, initial=0)) + 1),
                                      patch=max(cfg.network.patch, fitting_patch(np.asarray(masks))))
        windows, anats, classes, depths = lesion_patches(np.asarray(masks), np.asarray(anatomy), self.network_config.patch)
        if not len(windows):
            raise InputError("the learned mask generator needs at least one lesion: the lesion masks are all empty")
        self.pairs = torch.from_numpy(np.stack([windows.astype(np.uint8), anats], axis=1))  # (K, 2, P, P)
        self.train_slices = len(windows)
        self.sampling = placement(classes, depths, self.network_config.anatomy_classes)
        if anatomy_names is not None:  # so that a user cannot apply it to other anatomy with as many classes
            self.sampling["anatomy_names"] = list(anatomy_names)

    def build_network(self) -> MaskVAE:
        return MaskVAE(self.network_config)

    def preprocessing(self) -> Preprocessing:
        return PREPROCESSING

    def setup(self, device: torch.device) -> None:
        self.pairs = self.pairs.to(device)

    def batch(self, gen: torch.Generator, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = self.pairs[torch.randint(len(self.pairs), (size,), generator=gen, device=self.pairs.device)]
        if self.cfg.augment:
            pairs = random_symmetries(pairs, gen)
        return pairs[:, :1].float(), one_hot(pairs[:, 1], self.network_config.anatomy_classes)

    def loss(self, forward: Callable[..., tuple[torch.Tensor, ...]], batch: tuple[torch.Tensor, torch.Tensor], gen: torch.Generator) -> torch.Tensor:
        mask, anatomy = batch
        logits, mean, logvar = (t.float() for t in forward(mask, anatomy))
        bce = F.binary_cross_entropy_with_logits(logits, mask, reduction="sum")
        kl = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).sum()
        return (bce + self.cfg.beta * kl) / len(mask)

    def metadata(self, training: Training) -> CheckpointMeta:
        meta = super().metadata(training)
        meta.sampling = self.sampling
        return meta


def train_mask_generator(masks: np.ndarray, anatomy: np.ndarray, output: Path, cfg: MaskGenTrainConfig, device: str | None = None,
                         progress: bool = True, overwrite: bool = False, anatomy_names: Sequence[str] | None = None) -> Path:
    """Train the mask VAE on every lesion of `masks` (N, H, W) with its `anatomy` class maps (named by
    `anatomy_names`, recorded in the checkpoint), writing `output/` (see `engine.fit`); the weights' path."""
    return fit(MaskGenTask(masks, anatomy, cfg, anatomy_names), output, cfg, device=device, progress=progress, overwrite=overwrite)


class LearnedMasks:
    """Lesion masks shaped like the training lesions, placed like them (see the module's docstring); deterministic
    given `rng`. A slice with no body (anatomy all 0) gets an empty mask, so the caller draws another slice."""

    def __init__(self, network: MaskVAE, sampling: dict, device: str = "cpu") -> None:
        self.network, self.device = network.to(device).eval(), torch.device(device)
        self.config = network.config
        self.shares = np.asarray(sampling["centre_classes"], dtype=np.float64)
        self.depths = [np.asarray(d, dtype=np.float64) for d in sampling["centre_depths"]]
        names = sampling.get("anatomy_names")
        self.anatomy_names = tuple(names) if names is not None else None  # None: a checkpoint from before names were kept

    def check_anatomy(self, names: Sequence[str], source: Path) -> None:
        """Refuse anatomy named otherwise than the training anatomy: class k of a brain map is not class k of CT."""
        if self.anatomy_names is not None and tuple(names) != self.anatomy_names:
            raise InputError(f"{source}: its anatomy classes are ({', '.join(names)}), but this mask generator was trained "
                             f"on ({', '.join(self.anatomy_names)})")

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "cpu") -> LearnedMasks:
        path = Path(path)
        state, meta = load_checkpoint(path, KIND, PREPROCESSING)
        sampling = meta.sampling
        if sampling is None:
            raise InputError(f"{path}: the metadata lacks the lesion placement ('sampling')")
        try:
            shares, depths = sampling["centre_classes"], sampling["centre_depths"]
            well_formed = len(shares) == len(depths) > 0 and all(isinstance(d, list) for d in depths)
        except (KeyError, TypeError):
            well_formed = False
        if not well_formed:
            raise InputError(f"{path}: malformed lesion placement ('sampling' needs centre_classes and centre_depths, one per class)")
        return cls(load_state(MaskVAE(config_from(meta, MaskVAEConfig, path)), state, path), meta.sampling, device)

    def centre(self, anatomy: np.ndarray, rng: np.random.Generator) -> tuple[int, int] | None:
        """A centre pixel: its class drawn from the training centres' classes among those in the slice (any body pixel
        when none is), at least as deep in it as a drawn training centre (the deepest pixels when none is that deep)."""
        shares = np.where(np.isin(np.arange(len(self.shares)), np.unique(anatomy)), self.shares, 0.0)
        shares[0] = 0.0  # never centred outside the body
        if shares.sum() > 0:
            k = int(rng.choice(len(shares), p=shares / shares.sum()))
            region, depths = anatomy == k, self.depths[k]
        else:
            region, depths = anatomy > 0, np.concatenate(self.depths)
        if not region.any():
            return None
        depth = ndimage.distance_transform_edt(region)
        deep = region & (depth >= rng.choice(depths))
        if not deep.any():
            deep = region & (depth >= depth.max() - 0.5)
        return tuple(int(v) for v in pick(rng, deep))

    @torch.inference_mode()
    def __call__(self, image: np.ndarray, anatomy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        anatomy = np.asarray(anatomy)
        if anatomy.ndim != 2:
            raise InputError(f"the learned mask generator makes 2D masks; got anatomy of shape {anatomy.shape}")
        if anatomy.max(initial=0) >= self.config.anatomy_classes:
            raise InputError(f"anatomy class {int(anatomy.max())}, but this mask generator knows classes 0..{self.config.anatomy_classes - 1}")
        body, centre = anatomy > 0, self.centre(anatomy, rng)
        if centre is None:
            return np.zeros(anatomy.shape, dtype=bool)
        window = torch.from_numpy(crop(anatomy, centre, self.config.patch)[None].astype(np.int64))
        onehot = one_hot(window, self.config.anatomy_classes).to(self.device)
        for _ in range(RETRIES):
            z = torch.from_numpy(rng.standard_normal((1, self.config.latent), dtype=np.float32)).to(self.device)
            shape = (self.network.decode(z, onehot)[0, 0] > 0).cpu().numpy()
            mask = paste(nearest_component(shape), centre, anatomy.shape) & body
            if mask.any():
                return mask
        return ellipsoid(anatomy.shape, np.asarray(centre, dtype=np.float64), np.full(2, FALLBACK_RADIUS), np.eye(2)) & body


def nearest_component(shape: np.ndarray) -> np.ndarray:
    """The 8-connected component of a decoded patch at, or nearest to, its centre pixel (the lesion's centre)."""
    labels, n = ndimage.label(shape, structure=np.ones((3, 3)))
    if n < 2:
        return shape
    ys, xs = np.nonzero(labels)
    mid = len(shape) // 2
    i = int(np.argmin((ys - mid) ** 2 + (xs - mid) ** 2))
    return labels == labels[ys[i], xs[i]]
