"""The one check of a device name, so that every command refuses `--device cuda` on a machine without CUDA in
the same words, rather than one silently running on the CPU (accelerate falls back to it without a word); and the
one split of the CPU cores between processes (server workers, test workers)."""

from __future__ import annotations

import os

from medinpaint.errors import InputError


def threads_per_process(processes: int) -> int:
    """Each of `processes` processes' share of the cores this one may run on (at least 1): N processes with
    all-core thread pools on N cores spin against each other. Counts the cores of the CPU affinity where the OS
    has one (taskset, a container's cpuset), not every core of the machine."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // processes)


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
