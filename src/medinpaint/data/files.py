"""Reading a file the user named: an OS error (a dangling link, no permission, a failing disk) is a one-line
InputError naming the file, as every other problem with an input is, not a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from medinpaint.errors import error_about


@contextmanager
def reading(path: Path | str) -> Iterator[None]:
    """An OSError raised inside, while `path` is read, becomes `<path>: unreadable (<reason>)`."""
    try:
        yield
    except OSError as exc:
        raise error_about(path, f"unreadable ({exc.strerror or exc})") from None
