import pytest
import torch

from medinpaint.models import MaskAwareUNet, UNetConfig


@pytest.mark.parametrize("shape", [(64, 64), (50, 37), (8, 8)])
def test_known_pixels_pass_through_at_any_size(shape: tuple[int, int]) -> None:
    torch.manual_seed(0)
    net = MaskAwareUNet(UNetConfig(base_channels=8, depth=3, blocks_per_level=1)).eval()
    image = torch.rand(2, 1, *shape)
    mask = (torch.rand(2, 1, *shape) > 0.6).float()
    out = net(image, mask, torch.randint(0, 3, (2, *shape)), torch.tensor([3, -1]))
    assert out.shape == image.shape
    assert torch.equal(out[mask == 0], image[mask == 0])
    assert 0 <= out.min() and out.max() <= 1


def test_pixels_under_the_mask_are_ignored() -> None:
    """What was there before corruption cannot leak into the prediction."""
    torch.manual_seed(0)
    net = MaskAwareUNet(UNetConfig(base_channels=8, depth=2, blocks_per_level=1)).eval()
    image, mask = torch.rand(1, 1, 16, 16), torch.zeros(1, 1, 16, 16)
    mask[..., 4:10, 4:10] = 1
    other = image.clone()
    other[mask.bool()] = 0.123
    assert torch.equal(net(image, mask), net(other, mask))


def test_side_inputs_are_optional_and_change_the_prediction() -> None:
    torch.manual_seed(0)
    net = MaskAwareUNet(UNetConfig(base_channels=8, depth=2, blocks_per_level=1)).eval()
    image, mask = torch.rand(1, 1, 16, 16), torch.ones(1, 1, 16, 16)
    bare = net(image, mask)
    with_tissue = net(image, mask, torch.full((1, 16, 16), 2), None)
    with_level = net(image, mask, None, torch.tensor([20]))
    assert not torch.equal(bare, with_tissue) and not torch.equal(bare, with_level)


def test_mri_config_without_side_information() -> None:
    cfg = UNetConfig(base_channels=8, depth=2, blocks_per_level=1, tissue_classes=0, use_vertebrae=False)
    assert cfg.in_channels == 2
    net = MaskAwareUNet(cfg)
    assert net(torch.rand(1, 1, 12, 12), torch.ones(1, 1, 12, 12)).shape == (1, 1, 12, 12)


def test_bottleneck_attention_starts_as_the_identity_is_used_and_keeps_known_pixels() -> None:
    torch.manual_seed(0)
    net = MaskAwareUNet(UNetConfig(base_channels=8, depth=3, blocks_per_level=1, attention=True)).eval()
    image, mask = torch.rand(1, 1, 30, 44), (torch.rand(1, 1, 30, 44) > 0.5).float()
    attention = net.bottleneck
    net.bottleneck = torch.nn.Identity()
    without = net(image, mask)
    net.bottleneck = attention
    assert torch.equal(net(image, mask), without)  # zero-initialised output projection: adding it changes nothing
    torch.nn.init.normal_(attention.proj.weight)  # as after training
    with_attention = net(image, mask)
    assert torch.equal(with_attention[mask == 0], image[mask == 0])
    assert not torch.equal(with_attention, without)