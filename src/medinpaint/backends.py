"""Where a network runs at inference: eager PyTorch, or an exported copy in ONNX Runtime.

On CPU the same network runs about twice as fast in ONNX Runtime (BENCHMARKS.md, "CPU inference backends"), so
`auto` picks it there when onnxruntime is installed; on a GPU PyTorch stays. The export is done once per set of
weights and cached on disk under a key made of the network's config and weights, so a retrained checkpoint never meets
a stale graph; a cached file that does not load is exported again, and a cache that cannot be written is skipped (the
export runs from memory). Anything else that goes wrong (no onnxruntime, an export that fails) falls back to PyTorch
with a one-line notice: a slower answer beats none.
"""

from __future__ import annotations

import hashlib
import io
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

BACKENDS = ("auto", "torch", "onnx")
CACHE_ENV = "MEDINPAINT_CACHE"
OPSET = 17
EXPORT_VERSION = "1"  # bump when the export itself changes, so every cached graph is rebuilt

Runner = Callable[..., torch.Tensor]  # a network, or anything called like one: tensors in, one tensor out


def cache_dir() -> Path:
    """Exported graphs live in $MEDINPAINT_CACHE, else ~/.cache/medinpaint (XDG_CACHE_HOME respected)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]) / "onnx"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "medinpaint" / "onnx"


def notice(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


def resolve_backend(backend: str, device: str | torch.device) -> str:
    """`auto` is ONNX Runtime on CPU when it is installed, PyTorch otherwise; `onnx` on a GPU is PyTorch, said so."""
    if backend not in BACKENDS:
        from medinpaint.errors import InputError

        raise InputError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "torch":
        return "torch"
    if torch.device(device).type != "cpu":
        if backend == "onnx":
            notice("the ONNX backend runs on CPU only; running in PyTorch on the GPU")
        return "torch"
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        notice("onnxruntime is not installed (pip install onnxruntime); running in PyTorch, slower on CPU")
        return "torch"
    return "onnx"


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


def onnx_network(network: nn.Module, example: Sequence[torch.Tensor], names: Sequence[str],
                 threads: int | None = None) -> OnnxNetwork:
    """The cached export of `network` for inputs like `example` (exported now if this is its first use)."""
    path = cache_dir() / f"{type(network).__name__.lower()}-{weights_key(network, example)}.onnx"
    stride = getattr(network, "stride", 1)
    if path.exists():
        try:
            return OnnxNetwork(path, names, stride, threads)
        except Exception as exc:  # a truncated or foreign file: export again over it
            notice(f"the cached ONNX export {path} does not load ({type(exc).__name__}); exporting it again")
    model = export_onnx(network, example, names)
    write_cache(model, path)
    return OnnxNetwork(model, names, stride, threads)


def runners(networks: Sequence[nn.Module], backend: str, device: str | torch.device, example: Sequence[torch.Tensor],
            names: Sequence[str], threads: int | None = None) -> tuple[list[Runner], str]:
    """What to call for each network on this backend, and the backend that was actually chosen."""
    if resolve_backend(backend, device) == "torch":
        return list(networks), "torch"
    if not all(getattr(n, "onnx_exportable", True) for n in networks):
        notice(f"{type(networks[0]).__name__} samples in a loop, which ONNX Runtime cannot run as one graph; running in PyTorch")
        return list(networks), "torch"
    try:
        return [onnx_network(n, example, names, threads) for n in networks], "onnx"
    except Exception as exc:  # any exporter or runtime failure: PyTorch still gives the answer
        first_line = (str(exc).strip().splitlines() or [""])[0][:200]
        notice(f"ONNX export failed ({type(exc).__name__}: {first_line}); running in PyTorch")
        return list(networks), "torch"
