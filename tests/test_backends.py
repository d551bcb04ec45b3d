"""The ONNX Runtime backends: same answers as PyTorch (int8: close ones), cached exports, and fallbacks that say so."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from medinpaint import backends
from medinpaint.backends import cache_dir, resolve_backend, weights_key
from medinpaint.data import read_slices
from medinpaint.errors import InputError
from medinpaint.inference import Inpainter
from medinpaint.models import MaskAwareUNet, SegmentationUNet, SegmenterConfig
from medinpaint.samples import sample_dir
from medinpaint.segmentation.inference import Segmenter

from conftest import TINY

pytest.importorskip("onnxruntime")


def tiny_unet(seed: int) -> MaskAwareUNet:
    torch.manual_seed(seed)
    return MaskAwareUNet(TINY)


def random_slices(rng: np.random.Generator, n: int, h: int, w: int) -> tuple[np.ndarray, ...]:
    images = rng.integers(0, 256, (n, h, w)).astype(np.uint8)
    masks = rng.random((n, h, w)) < 0.3
    tissue = rng.choice(np.array([0, 100, 255], dtype=np.uint8), (n, h, w))
    return images, masks, tissue, rng.integers(0, 25, n)


@pytest.mark.parametrize("side_inputs", [True, False])
def test_onnx_agrees_with_pytorch_at_sizes_off_the_stride(side_inputs: bool) -> None:
    """37x45 is padded to the stride outside the graph; missing side inputs are read as unknown in both."""
    net = tiny_unet(0)
    images, masks, tissue, verts = random_slices(np.random.default_rng(0), 3, 37, 45)
    side = (tissue, verts) if side_inputs else (None, None)
    onnx, eager = Inpainter(net, backend="onnx"), Inpainter(net, backend="torch")
    assert (onnx.backend, eager.backend) == ("onnx", "torch")
    floats = images.astype(np.float32) / 255
    a, b = onnx.predict_batch(floats, masks, *side), eager.predict_batch(floats, masks, *side)
    assert np.abs(a - b).max() < 1e-5
    assert np.array_equal(a[~masks], floats[~masks])


def test_flips_and_ensembles_run_on_onnx_too() -> None:
    images, masks, tissue, verts = random_slices(np.random.default_rng(1), 2, 32, 32)
    members = [tiny_unet(1), tiny_unet(2)]
    onnx = Inpainter(members, flips=True, backend="onnx")
    eager = Inpainter(members, flips=True, backend="torch")
    floats = images.astype(np.float32) / 255
    assert len(onnx.runners) == 2
    assert np.abs(onnx.predict_batch(floats, masks, tissue, verts) - eager.predict_batch(floats, masks, tissue, verts)).max() < 1e-5


def test_a_segmenter_labels_the_same_on_both_backends() -> None:
    torch.manual_seed(0)
    net = SegmentationUNet(SegmenterConfig(classes=3, base_channels=8, depth=3))
    images = np.random.default_rng(2).integers(0, 256, (4, 50, 70)).astype(np.uint8)
    onnx, eager = Segmenter([net], (0, 100, 255), backend="onnx"), Segmenter([net], (0, 100, 255), backend="torch")
    assert onnx.backend == "onnx"
    assert (onnx.predict(images) == eager.predict(images)).mean() > 0.999  # only near-ties may differ


def test_the_export_is_cached_by_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    export = backends.export_onnx
    monkeypatch.setattr(backends, "export_onnx", lambda *a: calls.append(1) or export(*a))
    net = tiny_unet(3)
    Inpainter(net, backend="onnx")
    Inpainter(net, backend="onnx")
    assert len(calls) == 1
    assert len(list(cache_dir().glob("maskawareunet-*.onnx"))) >= 1 and not list(cache_dir().glob("*.part"))
    example = Inpainter(net, backend="torch")._example()
    assert weights_key(net, example) != weights_key(tiny_unet(4), example)
    regrouped = MaskAwareUNet(dataclasses.replace(TINY, groups=1))
    regrouped.load_state_dict(net.state_dict())  # the same weights in another graph: another export
    assert weights_key(net, example) != weights_key(regrouped, example)


def test_a_broken_cached_export_is_made_again_and_an_unwritable_cache_is_skipped(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    monkeypatch.setenv(backends.CACHE_ENV, str(tmp_path / "cache"))
    net, images, masks = tiny_unet(6), *random_slices(np.random.default_rng(1), 2, 32, 32)[:2]
    expected = Inpainter(net, backend="torch").predict_batch(images, masks)
    Inpainter(net, backend="onnx")
    (cached,) = cache_dir().glob("*.onnx")
    assert cached.stat().st_mode & 0o044  # others who share the cache can read it
    cached.write_bytes(cached.read_bytes()[:1000])  # truncated
    again = Inpainter(net, backend="onnx")
    assert again.backend == "onnx" and "does not load" in capsys.readouterr().err
    assert cached.stat().st_size > 1000 and np.abs(again.predict_batch(images, masks).astype(int) - expected).max() <= 1
    (tmp_path / "blocked").write_text("a file where the cache folder should be")
    monkeypatch.setenv(backends.CACHE_ENV, str(tmp_path / "blocked"))
    from_memory = Inpainter(net, backend="onnx")
    assert from_memory.backend == "onnx" and "cannot keep the ONNX export" in capsys.readouterr().err
    assert np.abs(from_memory.predict_batch(images, masks).astype(int) - expected).max() <= 1


def test_a_missing_onnxruntime_falls_back_to_pytorch_with_a_notice(monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` raise ImportError
    assert Inpainter(tiny_unet(0)).backend == "torch"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "onnxruntime is not installed" in err


def test_a_failed_export_falls_back_to_pytorch_with_a_notice(monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    monkeypatch.setenv(backends.CACHE_ENV, str(tmp_path))  # an empty cache: the export must run

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("unsupported operator\nwith a long trace")

    monkeypatch.setattr(torch.onnx, "export", broken)
    inpainter = Inpainter(tiny_unet(5), backend="onnx")
    assert inpainter.backend == "torch"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ONNX export failed (RuntimeError: unsupported operator)" in err
    assert not list(tmp_path.rglob("*.onnx*"))


def test_backend_choice(capsys: pytest.CaptureFixture) -> None:
    assert resolve_backend("auto", "cpu") == "onnx"
    assert resolve_backend("torch", "cpu") == "torch"
    assert resolve_backend("auto", "cuda") == "torch" and capsys.readouterr().err == ""
    assert resolve_backend("onnx", "cuda") == "torch" and "CPU only" in capsys.readouterr().err
    assert resolve_backend("int8", "cpu") == "int8"
    assert resolve_backend("int8", "cuda") == "torch" and "int8 backend runs on CPU only" in capsys.readouterr().err
    with pytest.raises(InputError, match="--backend must be one of auto, torch, onnx, int8"):
        resolve_backend("tensorrt", "cpu")


def test_a_sampling_network_stays_in_pytorch_and_fills_the_same_twice(capsys: pytest.CaptureFixture) -> None:
    from medinpaint.models.architectures import build_architecture

    torch.manual_seed(0)
    net = build_architecture("diffusion", base_channels=8, channel_mults=(1, 2), attention_levels=(), sampling_steps=3)
    inpainter = Inpainter(net, backend="onnx")
    assert inpainter.backend == "torch"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "samples in a loop" in err
    images, masks, tissue, verts = random_slices(np.random.default_rng(0), 2, 20, 24)
    first = inpainter.predict_batch(images, masks, tissue, verts)
    assert np.array_equal(first, inpainter.predict_batch(images, masks, tissue, verts))  # a fixed sampling seed
    assert np.array_equal(first[~masks], images[~masks])


def test_int8_quantizes_the_inner_convolutions_stays_close_to_float_and_is_cached(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import onnx

    monkeypatch.setenv(backends.CACHE_ENV, str(tmp_path / "cache"))
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # the quantizer's scratch files must not land in the user's folder
    net = tiny_unet(7)
    images, masks, tissue, verts = random_slices(np.random.default_rng(3), 3, 40, 48)
    int8, float_ = Inpainter(net, backend="int8"), Inpainter(net, backend="onnx")
    assert int8.backend == "int8" and not list((tmp_path / "cwd").iterdir())
    (graph,) = cache_dir().glob("*-int8-*.onnx")
    nodes = onnx.load(graph).graph.node
    convs = [n for n in nodes if n.op_type == "Conv"]
    dequantized = {n.output[0] for n in nodes if n.op_type == "DequantizeLinear"}
    quantized = [all(i in dequantized for i in c.input[:2]) for c in convs]
    assert quantized[1:-1] == [True] * (len(convs) - 2) and not quantized[0] and not quantized[-1]
    a, b = int8.predict_batch(images, masks, tissue, verts), float_.predict_batch(images, masks, tissue, verts)
    assert np.array_equal(a[~masks], images[~masks])
    diff = np.abs(a.astype(int) - b)[masks]
    assert 0 < diff.mean() < 3  # 8 bits change the fill, by little

    monkeypatch.setattr(backends, "quantize_int8", lambda *a: pytest.fail("quantized again, not read from the cache"))
    again = Inpainter(net, backend="int8")
    assert again.backend == "int8" and np.array_equal(again.predict_batch(images, masks, tissue, verts), a)


def test_int8_graphs_are_cached_by_calibration_too() -> None:
    batches = Inpainter._calibration()
    assert len(batches) == 3 and batches[0][0].shape == (4, 1, 256, 256)
    other = [tuple(t.clone() for t in b) for b in batches]
    other[0][0][0, 0, 0, 0] += 0.5
    assert backends.calibration_key(batches) == backends.calibration_key([tuple(t.clone() for t in b) for b in batches])
    assert backends.calibration_key(batches) != backends.calibration_key(other)


def test_int8_without_calibration_or_with_a_failed_quantization_runs_in_float_and_says_so(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    monkeypatch.setenv(backends.CACHE_ENV, str(tmp_path))
    net = tiny_unet(8)
    chosen = backends.runners([net], "int8", "cpu", Inpainter(net, backend="torch")._example(), Inpainter.INPUT_NAMES)[1]
    assert chosen == "onnx" and "no calibration inputs for int8" in capsys.readouterr().err

    def broken(*args: object) -> bytes:
        raise ValueError("unsupported graph\nwith a long trace")

    monkeypatch.setattr(backends, "quantize_int8", broken)
    inpainter = Inpainter(net, backend="int8")
    err = capsys.readouterr().err
    assert inpainter.backend == "onnx" and err.count("\n") == 1 and "int8 quantization failed (ValueError: unsupported graph)" in err
    assert not list(tmp_path.rglob("*-int8-*"))


def test_a_segmenter_labels_nearly_the_same_in_int8(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(backends.CACHE_ENV, str(tmp_path))
    torch.manual_seed(0)
    net = SegmentationUNet(SegmenterConfig(classes=3, base_channels=8, depth=3))
    images = read_slices(sample_dir()).truth
    int8, float_ = Segmenter([net], (0, 100, 255), backend="int8"), Segmenter([net], (0, 100, 255), backend="onnx")
    assert int8.backend == "int8" and len(list(tmp_path.rglob("*-int8-*.onnx"))) == 1
    assert (int8.predict(images) == float_.predict(images)).mean() > 0.95
