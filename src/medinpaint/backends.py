"""Where a network runs at inference: eager PyTorch, or an exported copy in ONNX Runtime.

On CPU the same network runs about twice as fast in ONNX Runtime (BENCHMARKS.md, "CPU inference backends"), so
`auto` picks it there when onnxruntime is installed; on a GPU PyTorch stays. `int8` is the same export with its
inner convolutions in 8 bits, calibrated on inputs the caller gives: 1.2-1.7x faster again on batches (slower one
slice at a time on two threads) for about a hundredth of a grey level of MAE, so it is asked for, never chosen. The export is done once per set of
weights and cached on disk under a key made of the network's config and weights, so a retrained checkpoint never meets
a stale graph; a cached file that does not load is exported again, and a cache that cannot be written is skipped (the
export runs from memory). Anything else that goes wrong (no onnxruntime, an export that fails) falls back to PyTorch
with a one-line notice: a slower answer beats none.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from medinpaint.outputs import current_umask

BACKENDS = ("auto", "torch", "onnx", "int8")
CACHE_ENV = "MEDINPAINT_CACHE"
OPSET = 17
EXPORT_VERSION = "1"  # bump when the export itself changes, so every cached graph is rebuilt
INT8_VERSION = "1"  # bump when the quantization recipe changes

Runner = Callable[..., torch.Tensor]  # a network, or anything called like one: tensors in, one tensor out
Calibration = Callable[[], Sequence[Sequence[torch.Tensor]]]  # batches of inputs like the ones to come, for int8


def cache_dir() -> Path:
    """Exported graphs live in $MEDINPAINT_CACHE, else ~/.cache/medinpaint (XDG_CACHE_HOME respected)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]) / "onnx"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "medinpaint" / "onnx"


def notice(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


def resolve_backend(backend: str, device: str | torch.device) -> str:
    """`auto` is ONNX Runtime on CPU when it is installed, PyTorch otherwise; `onnx` or `int8` on a GPU is PyTorch,
    said so."""
    if backend not in BACKENDS:
        from medinpaint.errors import InputError

        raise InputError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "torch":
        return "torch"
    if torch.device(device).type != "cpu":
        if backend in ("onnx", "int8"):
            notice(f"the {backend} backend runs on CPU only; running in PyTorch on the GPU")
        return "torch"
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        notice("onnxruntime is not installed (pip install onnxruntime); running in PyTorch, slower on CPU")
        return "torch"
    return "int8" if backend == "int8" else "onnx"


def weights_key(network: nn.Module, example: Sequence[torch.Tensor]) -> str:
    """What decides the exported graph: the network's class and config (settings such as `groups` change the graph
    but not the weights' shapes), weights and buffers, the inputs' dtypes and ranks, and the exporter's version."""
    config = repr(getattr(network, "config", None))
    digest = hashlib.sha256(f"{type(network).__qualname__}|{config}|{torch.__version__}|{EXPORT_VERSION}|{OPSET}".encode())
    for t in example:
        digest.update(f"{t.dtype}:{t.dim()}:{tuple(t.shape[1:-2])};".encode())
    for name, value in network.state_dict().items():
        digest.update(name.encode())
        digest.update(value.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:32]


def dynamic_axes(names: Sequence[str], example: Sequence[torch.Tensor]) -> dict[str, dict[int, str]]:
    """Batch is always dynamic; so are the last two axes of any input of rank 3 or more (height, width)."""
    axes = {}
    for name, t in zip(names, example):
        axes[name] = {0: "batch"} | ({t.dim() - 2: "height", t.dim() - 1: "width"} if t.dim() >= 3 else {})
    axes["output"] = {0: "batch", 2: "height", 3: "width"}
    return axes


def export_onnx(network: nn.Module, example: Sequence[torch.Tensor], names: Sequence[str]) -> bytes:
    """`network` (float32, in eval mode) as an ONNX model."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on Python branches: OnnxNetwork pads so none is taken
        torch.onnx.export(network, tuple(example), buffer, input_names=list(names), output_names=["output"],
                          dynamic_axes=dynamic_axes(names, example), opset_version=OPSET, dynamo=False)
    return buffer.getvalue()


def write_cache(model: bytes, path: Path) -> None:
    """Keep an export at `path` for next time: atomically (never a half-written file, even on a full disk) and
    readable by everyone who shares the cache. A cache that cannot be written is said once and skipped."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
        with os.fdopen(fd, "wb") as f:
            f.write(model)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        notice(f"cannot keep the ONNX export in {path.parent} ({type(exc).__name__}: {exc}); it is used from memory")


class OnnxNetwork:
    """Called like the network it was exported from (torch tensors in, a torch tensor out), run by ONNX Runtime.

    Height and width are padded (edge values) to the network's stride before the call and cropped after: the traced
    graph holds the no-padding branch of `ResUNet.body`, and edge padding of the raw inputs equals the replicate
    padding of the network's own input because everything before the body is pixel-wise."""

    def __init__(self, model: Path | bytes, names: Sequence[str], stride: int, threads: int | None = None) -> None:
        """`model`: a cached .onnx file, or the export's bytes."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.source = model
        source = str(model) if isinstance(model, Path) else model
        self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        self.names = list(names)
        self.used = {i.name for i in self.session.get_inputs()}  # an unused input may have been pruned away
        self.stride = stride

    def __call__(self, *tensors: torch.Tensor) -> torch.Tensor:
        h, w = next(t.shape[-2:] for t in tensors if t.dim() >= 3)
        ph, pw = (-h) % self.stride, (-w) % self.stride
        feeds = {}
        for name, t in zip(self.names, tensors):
            if name not in self.used:
                continue
            a = t.detach().cpu().numpy()
            if a.ndim >= 3 and (ph or pw):
                a = np.pad(a, [(0, 0)] * (a.ndim - 2) + [(0, ph), (0, pw)], mode="edge")
            feeds[name] = a
        out = self.session.run(None, feeds)[0]
        return torch.from_numpy(out[..., :h, :w])


def cached_export(network: nn.Module, example: Sequence[torch.Tensor], names: Sequence[str], threads: int | None,
                  suffix: str = "", make: Callable[[], bytes] | None = None) -> OnnxNetwork:
    """The cached graph of `network` for inputs like `example` (made now if this is its first use): its export, or
    with `suffix` and `make` a graph derived from it (the int8 one)."""
    path = cache_dir() / f"{type(network).__name__.lower()}-{weights_key(network, example)}{suffix}.onnx"
    stride = getattr(network, "stride", 1)
    if path.exists():
        try:
            return OnnxNetwork(path, names, stride, threads)
        except Exception as exc:  # a truncated or foreign file: make it again over it
            notice(f"the cached ONNX export {path} does not load ({type(exc).__name__}); exporting it again")
    model = make() if make else export_onnx(network, example, names)
    write_cache(model, path)
    return OnnxNetwork(model, names, stride, threads)


def onnx_network(network: nn.Module, example: Sequence[torch.Tensor], names: Sequence[str],
                 threads: int | None = None) -> OnnxNetwork:
    """The cached export of `network` for inputs like `example` (exported now if this is its first use)."""
    return cached_export(network, example, names, threads)


def calibration_key(batches: Sequence[Sequence[torch.Tensor]]) -> str:
    """The int8 graph depends on the calibration inputs as much as on the weights."""
    digest = hashlib.sha256(INT8_VERSION.encode())
    for batch in batches:
        for t in batch:
            digest.update(f"{t.dtype}{tuple(t.shape)}".encode())
            digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def quantize_int8(model: bytes, names: Sequence[str], batches: Sequence[Sequence[torch.Tensor]],
                  operators: Sequence[str] | None = ("Conv",), keep_ends: bool = True, percentile: bool = True) -> bytes:
    """Static int8 quantization of an export's convolutions (per-channel weights, activation ranges at the 99.999th
    percentile of the calibration inputs'), all but the first and the last, which touch the pixels and stay in float.
    The keywords give the recipes this one was chosen over (`operators=None`: every operator; min-max ranges): on the
    shipped inpainter they cost two to five times as much MAE for at most a seventh more speed (BENCHMARKS.md,
    benchmarks/int8_recipes.py)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    graph = onnx.load_from_string(model)
    used = {i.name for i in graph.graph.input}
    convs = [n.name for n in graph.graph.node if n.op_type == "Conv"]
    feeds = [{n: t.detach().cpu().numpy() for n, t in zip(names, batch) if n in used} for batch in batches]

    class Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self.rest = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.rest, None)

    with tempfile.TemporaryDirectory(prefix="medinpaint-int8-") as work, contextlib.redirect_stdout(io.StringIO()):
        level = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)  # the quantizer warns about every integer tensor it leaves alone
        try:
            pre, out = Path(work) / "pre.onnx", Path(work) / "int8.onnx"
            quant_pre_process(graph, str(pre), skip_symbolic_shape=True)
            quantize_static(str(pre), str(out), Feeds(), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=list(operators) if operators else None,
                            nodes_to_exclude=[convs[0], convs[-1]] if keep_ends else [], per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.Percentile if percentile else CalibrationMethod.MinMax)
            return out.read_bytes()
        finally:
            logging.getLogger().setLevel(level)


def int8_network(network: nn.Module, example: Sequence[torch.Tensor], names: Sequence[str],
                 batches: Sequence[Sequence[torch.Tensor]], threads: int | None = None) -> OnnxNetwork:
    """The cached int8 graph of `network`, quantized now from its (cached) export if this is its first use."""
    def make() -> bytes:
        source = cached_export(network, example, names, threads).source
        return quantize_int8(source.read_bytes() if isinstance(source, Path) else source, names, batches)

    return cached_export(network, example, names, threads, f"-int8-{calibration_key(batches)}", make)


def first_line_of(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:200]


def runners(networks: Sequence[nn.Module], backend: str, device: str | torch.device, example: Sequence[torch.Tensor],
            names: Sequence[str], threads: int | None = None,
            calibration: Calibration | None = None) -> tuple[list[Runner], str]:
    """What to call for each network on this backend, and the backend that was actually chosen. `int8` needs
    `calibration`: inputs like those the network will see."""
    chosen = resolve_backend(backend, device)
    if chosen == "torch":
        return list(networks), "torch"
    if not all(getattr(n, "onnx_exportable", True) for n in networks):
        notice(f"{type(networks[0]).__name__} samples in a loop, which ONNX Runtime cannot run as one graph; running in PyTorch")
        return list(networks), "torch"
    if chosen == "int8" and calibration is None:
        notice(f"{type(networks[0]).__name__} has no calibration inputs for int8; running in ONNX Runtime in float")
        chosen = "onnx"
    if chosen == "int8":
        try:
            batches = calibration()
            return [int8_network(n, example, names, batches, threads) for n in networks], "int8"
        except Exception as exc:  # a graph the quantizer cannot take: the float export still runs
            notice(f"int8 quantization failed ({type(exc).__name__}: {first_line_of(exc)}); running in ONNX Runtime in float")
    try:
        return [onnx_network(n, example, names, threads) for n in networks], "onnx"
    except Exception as exc:  # any exporter or runtime failure: PyTorch still gives the answer
        notice(f"ONNX export failed ({type(exc).__name__}: {first_line_of(exc)}); running in PyTorch")
        return list(networks), "torch"
