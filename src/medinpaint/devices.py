"""The one check of a device name, so that every command refuses `--device cuda` on a machine without CUDA in
the same words, rather than one silently running on the CPU (accelerate falls back to it without a word)."""

from __future__ import annotations

from medinpaint.errors import InputError


def check_device(device: str) -> str:
    """`device` (cpu, cuda, cuda:N) if this machine has it; a one-line InputError otherwise."""
    import torch

    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError):
        kind = None
    if kind not in ("cpu", "cuda"):
        raise InputError(f"the device must be cpu or cuda (or cuda:N), got {device!r}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {device}: no CUDA device is available")
    return device
