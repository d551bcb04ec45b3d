"""Stop a training run cleanly when it is asked to (SIGTERM), not only when its budget runs out.

Why: `kill PID`, a batch scheduler's pre-emption (SLURM, Kubernetes) and `timeout` send SIGTERM, which would
otherwise end the process between two checkpoints and lose up to `checkpoint_every_s` of training and the
exported weights. With this the loop finishes the step it is in, writes `last.pt`, exports `model.safetensors`
and raises `StoppedEarly`, so that neither a command (exit 143, not 0: `train && predict` must not go on) nor a
study (its next run) takes the run for finished; the same command later resumes the run. A second SIGTERM is not
caught: it ends the process at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from medinpaint.errors import StoppedEarly

__all__ = ["StopRequest", "StoppedEarly", "stop_on_sigterm"]


@dataclass
class StopRequest:
    """Set by the handler: the name of the signal that asked the run to stop, or None."""

    signal: str | None = None


@contextmanager
def stop_on_sigterm() -> Iterator[StopRequest]:
    """While inside, a SIGTERM is recorded in the yielded StopRequest instead of ending the process (only in the
    main thread, where Python can handle signals; elsewhere the request simply never comes)."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is None:  # a handler installed from C: Python cannot put it back, so the default stands in
        previous = signal.SIG_DFL

    def handle(signum: int, frame: object) -> None:
        request.signal = signal.Signals(signum).name
        signal.signal(signal.SIGTERM, previous)  # a second SIGTERM acts as it did before

    signal.signal(signal.SIGTERM, handle)
    try:
        yield request
    finally:
        signal.signal(signal.SIGTERM, previous)
