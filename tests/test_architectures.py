"""The inpainting architectures: known pixels kept, any size, a tiny task learnt; the partial convolution's mask
update and the Fourier unit's spectral path against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medinpaint.errors import InputError
from medinpaint.models.architectures import ARCHITECTURES, build_architecture, denoises
from medinpaint.models.ffc import FourierUnit
from medinpaint.models.partial_conv import PartialConv2d

TINY = {"unet": {"base_channels": 8, "depth": 3, "blocks_per_level": 1}, "autoencoder": {"base_channels": 8, "depth": 3},
        "partial-conv": {"base_channels": 8, "depth": 3}, "gated-conv": {"base_channels": 8, "dilations": (2, 4)},
        "ffc": {"base_channels": 8, "blocks": 1},
        "diffusion": {"base_channels": 16, "channel_mults": (1, 2, 2), "attention_levels": (), "sampling_steps": 5}}


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_known_pixels_are_kept_at_sizes_off_the_stride(name: str) -> None:
    torch.manual_seed(0)
    net = build_architecture(name, **TINY[name]).eval()
    image, mask = torch.rand(2, 1, 37, 45), (torch.rand(2, 1, 37, 45) > 0.6).float()
    out = net(image, mask, torch.randint(-1, 3, (2, 37, 45)), torch.tensor([3, -1]))
    assert out.shape == image.shape and torch.equal(out[mask == 0], image[mask == 0])
    assert torch.all((out >= 0) & (out <= 1))


def test_a_diffusion_fill_is_the_same_whatever_batch_it_comes_in() -> None:
    """One posterior sample per input: a slice filled alone, first or third in a batch, gives one answer."""
    torch.manual_seed(0)
    net = build_architecture("diffusion", **TINY["diffusion"]).eval()
    image, mask = torch.rand(3, 1, 24, 24), torch.zeros(3, 1, 24, 24)
    mask[..., 6:18, 6:18] = 1
    with torch.no_grad():
        together = net(image, mask)
        alone = torch.cat([net(image[i : i + 1], mask[i : i + 1]) for i in range(3)])
        reversed_batch = net(image.flip(0), mask.flip(0)).flip(0)
    assert torch.allclose(together, alone, atol=1e-5) and torch.allclose(together, reversed_batch, atol=1e-5)


def test_the_partial_convolution_masks_shrink_from_the_slice_alone() -> None:
    """The side inputs are known everywhere; were they counted as known pixels, every window would hold one and the
    mask would be gone after the first layer. A 32x32 hole must still be there after it, and shrink level by level."""
    net = build_architecture("partial-conv", **TINY["partial-conv"]).eval()
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 16:48, 16:48] = 1
    seen = []
    for conv in [net.stem, *net.down]:
        conv.register_forward_hook(lambda _m, _i, out: seen.append(float((out[1] == 0).float().mean())))
    with torch.no_grad():
        net(torch.rand(1, 1, 64, 64), mask, torch.randint(0, 3, (1, 64, 64)), torch.tensor([5]))
    assert seen[0] == pytest.approx(30 * 30 / 64**2)  # one pixel of the hole's rim known per layer
    assert all(a > b for a, b in zip(seen, seen[1:])) and seen[-1] > 0


def textured_batch(n: int, size: int = 32) -> torch.Tensor:
    """Slices of different brightness with a stripe texture: the hole's level can only come from its surroundings."""
    level = torch.rand(n, 1, 1, 1) * 0.7 + 0.2
    x = torch.linspace(0, 1, size).view(1, 1, 1, size)
    return level * (0.8 + 0.2 * torch.sin(6 * x + torch.rand(n, 1, 1, 1) * 6)).expand(n, 1, size, size)


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_each_architecture_learns_to_fill_from_the_surroundings(name: str) -> None:
    """150 Adam steps at the comparison's learning-rate scale bring the hole's error down by more than half, and the
    fill still follows each slice's level: a network that dies into a constant output (as the unnormalised gated
    convolutions did) fails both."""
    torch.manual_seed(0)
    net = build_architecture(name, **TINY[name])
    mask = torch.zeros(8, 1, 32, 32)
    mask[..., 10:22, 10:22] = 1
    test = textured_batch(8)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    error = lambda: float((net(test, mask) - test).detach().abs()[mask == 1].mean())  # noqa: E731
    before = error()
    gen = torch.Generator().manual_seed(1)
    for _ in range(150):
        image = textured_batch(8)
        opt.zero_grad()
        if denoises(name):  # its own objective, through the same forward
            net(image, mask, training_noise=gen).backward()
        else:
            ((net(image, mask) - image).abs() * mask).mean().backward()
        opt.step()
    assert error() < before / 2
    fills = net(test, mask).detach()[mask.expand_as(test) == 1].view(8, -1).mean(1)
    assert torch.corrcoef(torch.stack([fills, test.mean((1, 2, 3))]))[0, 1] > 0.8


def test_partial_convolution_rescales_by_the_known_count_and_grows_the_mask() -> None:
    conv = PartialConv2d(1, 1, 3, padding=1, bias=True)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.fill_(0.5)
    x = torch.arange(16.0).view(1, 1, 4, 4)
    valid = torch.zeros(1, 1, 4, 4)
    valid[0, 0, 0, 0] = valid[0, 0, 0, 1] = 1  # two known pixels, values 0 and 1, in the top-left corner
    out, new_valid = conv(x, valid)
    # pixel (0, 0): its window holds both known pixels (the rest is padding or unknown): (0 + 1) * 9 / 2 + 0.5
    assert out[0, 0, 0, 0].item() == pytest.approx(1 * 9 / 2 + 0.5)
    # pixel (1, 2): only (0, 1) is known in its window: 1 * 9 / 1 + 0.5; pixel (3, 3) sees nothing: 0, and stays unknown
    assert out[0, 0, 1, 2].item() == pytest.approx(9.5) and out[0, 0, 3, 3].item() == 0
    expected = torch.zeros(4, 4)
    expected[:2, :3] = 1
    assert torch.equal(new_valid[0, 0], expected)


def test_the_fourier_unit_acts_on_the_whole_spectrum() -> None:
    """With its 1x1 convolution the identity the unit returns its input; keeping only the real part of channel 0's
    spectrum gives irfft2(Re(rfft2(x0))), computed here with numpy, and nothing in channel 1."""
    unit = FourierUnit(2, norm=False)
    x = torch.randn(1, 2, 6, 8)
    with torch.no_grad():
        unit.conv.weight.copy_(torch.eye(4).view(4, 4, 1, 1))
        assert torch.allclose(unit(x), x, atol=1e-5)
        spectral = torch.zeros(4, 4, 1, 1)
        spectral[0, 0] = 1.0  # channels are [Re c0, Re c1, Im c0, Im c1]: Re c0 -> Re c0, the rest dropped
        unit.conv.weight.copy_(spectral)
        y = unit(x)
    expected = np.fft.irfft2(np.fft.rfft2(x[0, 0].numpy(), norm="ortho").real.astype(complex), s=(6, 8), norm="ortho")
    assert torch.allclose(y[0, 0], torch.from_numpy(expected).float(), atol=1e-5) and torch.all(y[0, 1] == 0)


def test_an_unknown_architecture_is_a_one_line_error() -> None:
    with pytest.raises(InputError, match="unknown architecture 'vit': choose from unet, autoencoder"):
        build_architecture("vit")


@pytest.mark.parametrize("name", ["ffc", "partial-conv"])
def test_any_architecture_trains_saves_and_loads_through_the_one_engine(name: str, phantom_dataset, tmp_path) -> None:
    from medinpaint.checkpoint import read_metadata
    from medinpaint.data import read_slices
    from medinpaint.inference import Inpainter
    from medinpaint.training import TrainConfig, train

    s = read_slices(phantom_dataset)
    cfg = TrainConfig(steps=2, batch_size=2, val_cases=2, architecture=name, network=TINY[name])
    weights = train(s, tmp_path / name, cfg, device="cpu", progress=False)
    assert read_metadata(weights).kind == f"inpainting-{name}"
    onnx, eager = Inpainter.from_pretrained(weights), Inpainter.from_pretrained(weights, backend="torch")
    assert type(eager.network).__name__ == type(build_architecture(name, **TINY[name])).__name__
    a = onnx.predict_batch(s.images[:2], s.masks[:2], s.tissue[:2], s.vertebrae[:2])
    b = eager.predict_batch(s.images[:2], s.masks[:2], s.tissue[:2], s.vertebrae[:2])
    assert abs(a.astype(int) - b.astype(int)).max() <= 1


def test_the_adversarial_variant_trains_its_critic_and_resumes_it(phantom_dataset, tmp_path) -> None:
    from medinpaint.data import read_slices
    from medinpaint.training import TrainConfig, train

    s = read_slices(phantom_dataset)
    cfg = TrainConfig(steps=2, batch_size=2, val_cases=2, network=TINY["unet"], adversarial=0.01, critic_channels=8,
                      checkpoint_every_s=0.0)
    train(s, tmp_path / "gan", cfg, device="cpu", progress=False)
    first = torch.load(tmp_path / "gan" / "last.pt", weights_only=True)
    assert set(first) >= {"critic", "critic_optimizer"} and first["critic_optimizer"]["state"]  # it took steps
    cfg.steps = 4
    train(s, tmp_path / "gan", cfg, device="cpu", progress=False)  # resumes network and critic from last.pt
    second = torch.load(tmp_path / "gan" / "last.pt", weights_only=True)
    assert second["step"] == 4
    key = next(iter(first["critic"]))
    assert not torch.equal(first["critic"][key], second["critic"][key])
