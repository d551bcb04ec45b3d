"""Fidelity and diversity in the feature space of the project's own encoder (see `encoder.py` for why).

- Fréchet distance (Heusel et al. 2017): between Gaussians fitted to real and to sample features; lower is
  better, and it depends on the number of samples, so compare figures of equal n only.
- Precision and recall (Kynkäänniemi et al. 2019): the share of samples inside the real features' k-NN
  manifold (fidelity), and of real slices inside the samples' (diversity, coverage).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch
from tqdm.auto import tqdm

from medinpaint.data.slices import to_unit
from medinpaint.models.encoder import FeatureEncoder


@torch.inference_mode()
def encode(encoder: FeatureEncoder, ct: np.ndarray, batch_size: int = 256, device: str = "cpu", progress: bool = False) -> np.ndarray:
    """Features (N, D) float64 of CT slices (N,H,W) or (N,1,H,W), uint8 or float in [0, 1]."""
    encoder = encoder.to(device).eval()
    ct = ct.reshape(len(ct), -1, *ct.shape[-2:])[:, :1]
    out = []
    for s in tqdm(range(0, len(ct), batch_size), desc="features", unit="batch", disable=not progress):
        x = torch.from_numpy(to_unit(np.ascontiguousarray(ct[s : s + batch_size]))).to(device)
        out.append(encoder.features(x).double().cpu().numpy())
    return np.concatenate(out)


def frechet_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """||mu_r - mu_f||^2 + Tr(S_r + S_f - 2 (S_r S_f)^(1/2)) between the two feature sets (N, D)."""
    mu_r, mu_f = real.mean(0), fake.mean(0)
    s_r, s_f = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    covmean = scipy.linalg.sqrtm(s_r @ s_f)
    if not np.isfinite(covmean).all():  # near-singular product (few samples): regularise, as pytorch-fid does
        eps = 1e-6 * np.eye(len(s_r))
        covmean = scipy.linalg.sqrtm((s_r + eps) @ (s_f + eps))
    return float(((mu_r - mu_f) ** 2).sum() + np.trace(s_r + s_f - 2 * covmean.real))


def _distances(a: np.ndarray, b: np.ndarray) -> torch.Tensor:
    return torch.cdist(torch.from_numpy(a), torch.from_numpy(b))


def _inside_manifold(points: np.ndarray, support: np.ndarray, k: int, chunk: int = 2048) -> float:
    """Share of `points` within the k-NN radius of at least one `support` point."""
    radii = torch.cat([_distances(support[s : s + chunk], support).kthvalue(k + 1, dim=1).values  # +1: itself
                       for s in range(0, len(support), chunk)])
    inside = [(_distances(points[s : s + chunk], support) <= radii[None]).any(dim=1) for s in range(0, len(points), chunk)]
    return float(torch.cat(inside).double().mean())


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """(precision, recall) of the sample features `fake` against the real features, with k-NN manifolds."""
    k = min(k, len(real) - 1, len(fake) - 1)
    return _inside_manifold(fake, real, k), _inside_manifold(real, fake, k)
