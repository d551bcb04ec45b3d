"""The training losses: the torch SSIM equals the reported metric, and every loss trains."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medinpaint.errors import InputError
from medinpaint.losses import LOSSES, inpainting_loss, ssim
from medinpaint.metrics import ssim as ssim_metric


def test_the_ssim_loss_is_the_reported_ssim() -> None:
    rng = np.random.default_rng(0)
    a = rng.random((40, 50))
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)
    ours = float(ssim(torch.from_numpy(a)[None, None].double(), torch.from_numpy(b)[None, None].double()))
    assert ours == pytest.approx(ssim_metric(a * 255, b * 255), abs=1e-6)
    assert float(ssim(torch.ones(1, 1, 20, 20), torch.ones(1, 1, 20, 20))) == pytest.approx(1.0)


@pytest.mark.parametrize("kind", [k for k in LOSSES if k != "l1+perceptual"])
def test_every_loss_is_zero_at_the_truth_and_has_a_gradient(kind: str) -> None:
    target = torch.rand(2, 1, 24, 24)
    mask = (torch.rand(2, 1, 24, 24) > 0.5).float()
    assert float(inpainting_loss(target, target, mask, kind)) == pytest.approx(0.0, abs=1e-6)
    pred = (target + 0.2 * mask * torch.randn_like(target)).requires_grad_()
    loss = inpainting_loss(pred, target, mask, kind)
    loss.backward()
    assert loss.item() > 0 and pred.grad.abs().sum() > 0


def test_an_unknown_loss_is_a_one_line_error() -> None:
    with pytest.raises(InputError, match="--loss must be one of l1, mse, ssim, l1\\+ssim, l1\\+perceptual, got .huber."):
        inpainting_loss(torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 16, 16), "huber")


def test_the_perceptual_loss_measures_in_the_encoders_feature_maps() -> None:
    from medinpaint.losses import PerceptualFeatures
    from medinpaint.models import EncoderConfig, FeatureEncoder

    torch.manual_seed(0)
    features = PerceptualFeatures(FeatureEncoder(EncoderConfig(base_channels=8)))
    target = torch.rand(2, 1, 32, 32)
    mask = torch.zeros(2, 1, 32, 32)
    mask[:, :, 8:24, 8:24] = 1
    maps = features(target)
    assert [m.shape[-1] for m in maps] == [32, 16, 8, 4]  # one map per level of the encoder
    assert float(inpainting_loss(target, target, mask, "l1+perceptual", features)) == pytest.approx(0.0, abs=1e-6)
    pred = (target + 0.3 * mask * torch.randn_like(target)).requires_grad_()
    loss = inpainting_loss(pred, target, mask, "l1+perceptual", features)
    loss.backward()
    assert loss.item() > inpainting_loss(pred, target, mask, "l1").item() and pred.grad.abs().sum() > 0
    with pytest.raises(InputError, match="needs an encoder"):
        inpainting_loss(pred, target, mask, "l1+perceptual")
