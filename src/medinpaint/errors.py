"""The exceptions the CLI turns into one line and an exit status: problems a user can fix, and runs stopped early.

Light on purpose (no torch): the CLI imports it before it knows which command runs."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class InputError(ValueError):
    """Bad input named by file or field: printed as one line by the CLI, never a traceback."""


class StoppedEarly(Exception):
    """A run stopped by a signal before its budget, its state saved and its (partly trained) weights exported."""

    def __init__(self, signal_name: str, weights: str) -> None:
        super().__init__(f"{signal_name}: stopped early, weights so far in {weights}")
        self.signal_name, self.weights = signal_name, weights

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, as a shell reports a process ended by that signal."""
        return 128 + signal.Signals[self.signal_name].value


def error_about(source: Path | str, message: str) -> InputError:
    """An InputError about the input `source` names it first (nothing to name when `source` is empty)."""
    return InputError(f"{source}: {message}" if str(source) else message)


@contextmanager
def about(path: Path | str) -> Iterator[None]:
    """An InputError raised inside is about `path` (a check that sees only arrays cannot name it): prefix it."""
    try:
        yield
    except InputError as exc:
        raise error_about(path, str(exc)) from None
