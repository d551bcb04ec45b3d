"""Memorisation: how close each sample comes to a training slice, judged against unseen real slices.

Distances are per-pixel RMS differences of the CT (0..255 units) at no more than 64x64, where a copy of a
training slice cannot hide. A sample is a near-copy when its nearest training slice is less than a third as
far as the second nearest (the ratio rule of Yoon et al. 2023): a copy sits on one training slice, a new
slice lies among several. The same rule applied to held-out real slices, which cannot be copies, gives the
rule's false-alarm rate for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from medinpaint.data.slices import to_unit

NEAR_COPY_RATIO = 1 / 3
EXACT_COPY_RMS = 0.5  # closer than half a grey level (RMS, 0..255): a copy, whatever the second neighbour is


def thumbnails(ct: np.ndarray, side: int = 64) -> np.ndarray:
    """CT slices (N,H,W) or (N,1,H,W) -> (N, side*side) float32 in 0..255, area-averaged when larger."""
    x = torch.from_numpy(to_unit(np.ascontiguousarray(ct.reshape(len(ct), -1, *ct.shape[-2:])[:, :1])))
    if x.shape[-1] > side:
        x = F.interpolate(x, size=(side, side), mode="area")
    return (x.reshape(len(x), -1) * 255).numpy()


@dataclass
class Neighbours:
    distance: np.ndarray  # (N,) RMS distance to the nearest training slice
    second: np.ndarray  # (N,) ... to the second nearest
    index: np.ndarray  # (N,) which training slice is the nearest

    @property
    def near_copies(self) -> np.ndarray:
        """Much nearer to one training slice than to any other, or a copy of one: a training slice present twice
        (or alone) leaves the second neighbour as near as the first, and the ratio alone would miss the copy."""
        return (self.distance < EXACT_COPY_RMS) | (self.distance < NEAR_COPY_RATIO * self.second)


def nearest_training(queries: np.ndarray, train: np.ndarray, chunk: int = 1024, progress: bool = False) -> Neighbours:
    """The two nearest rows of `train` (thumbnails) for every row of `queries`."""
    ref = torch.from_numpy(train).double()  # float32 distances through a matrix product lose ~0.01 near 255
    d1, d2, idx = [], [], []
    for s in tqdm(range(0, len(queries), chunk), desc="nearest training slices", unit="chunk", disable=not progress):
        dist = torch.cdist(torch.from_numpy(queries[s : s + chunk]).double(), ref) / np.sqrt(train.shape[1])
        top = dist.topk(min(2, len(train)), dim=1, largest=False)
        d1.append(top.values[:, 0])
        d2.append(top.values[:, -1])
        idx.append(top.indices[:, 0])
    return Neighbours(*(torch.cat(parts).numpy() for parts in (d1, d2, idx)))


def summarise(nn: Neighbours, heldout: Neighbours) -> dict[str, float]:
    """Near-copy share and nearest distance of samples, and the share of them closer to a training slice than
    all but 1 % of held-out real slices are."""
    return {
        "near_copy_share": float(nn.near_copies.mean()),
        "median_nn_distance": float(np.median(nn.distance)),
        "below_heldout_p1_share": float((nn.distance < np.quantile(heldout.distance, 0.01)).mean()),
    }
