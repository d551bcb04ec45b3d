"""One exception type for problems a user can fix, so the CLI can print them as one line."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class InputError(ValueError):
    """Bad input named by file or field: printed as one line by the CLI, never a traceback."""


@contextmanager
def about(path: Path | str) -> Iterator[None]:
    """An InputError raised inside is about `path` (a check that sees only arrays cannot name it): prefix it."""
    try:
        yield
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
