"""engine.stopping: the first SIGTERM is a request, the second acts as before, and the old handler comes back."""

from __future__ import annotations

import os
import signal
import threading

from medinpaint.engine.stopping import stop_on_sigterm


def test_the_first_sigterm_is_recorded_and_the_second_reaches_the_previous_handler() -> None:
    seen: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        with stop_on_sigterm() as request:
            assert request.signal is None
            os.kill(os.getpid(), signal.SIGTERM)
            assert request.signal == "SIGTERM" and seen == []
            os.kill(os.getpid(), signal.SIGTERM)
            assert seen == [signal.SIGTERM]
        os.kill(os.getpid(), signal.SIGTERM)
        assert seen == [signal.SIGTERM] * 2
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_outside_the_main_thread_nothing_is_installed() -> None:
    before, got = signal.getsignal(signal.SIGTERM), []

    def run() -> None:
        with stop_on_sigterm() as request:
            got.append((request.signal, signal.getsignal(signal.SIGTERM)))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert got == [(None, before)]
