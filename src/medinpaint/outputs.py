"""Safe output handling: never write into an input folder, never overwrite unless asked, never leave halves."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from medinpaint.errors import InputError


def check_output_path(output: Path, inputs: list[Path], overwrite: bool) -> None:
    """Refuse an output that is an input file, is or lies inside an input folder, holds an input (replacing it
    would delete the input), or exists and is not empty."""
    out = output.resolve()
    for inp in inputs:
        src = inp.resolve()
        if out == src:
            raise InputError(f"{output}: output must not be the input itself")
        if src.is_dir() and src in out.parents:
            raise InputError(f"{output}: output must not be inside the input folder {src}")
        if out in src.parents:
            raise InputError(f"{output}: output must not be a folder that holds the input {inp}")
    if out.exists() and not overwrite:
        if out.is_file() or any(out.iterdir()):
            raise InputError(f"{output}: already exists and is not empty (pass --overwrite to replace it)")


def current_umask() -> int:
    """The process's umask (reading it means setting it, so it is put straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_parent(path: Path) -> None:
    """Create the folder `path` goes into, or say in one line why it cannot be."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise InputError(f"{path}: a part of its folder {path.parent} is a file, not a folder") from None


@contextmanager
def atomic_dir(output: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside `output`; it replaces `output` only if the block succeeds."""
    output = Path(output)
    make_parent(output)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes it private; the result should look like any new folder
    try:
        yield tmp
        _put_in_place(tmp, output, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


RESUME_KEY = ".resume-key"  # in a resumable work folder: the settings of the work it holds


def settings_key(cfg: object, inputs: list[Path]) -> str:
    """The settings of a resumable command, as `resumable_dir`'s key: its config (a dataclass; how progress is
    shown aside) and the full paths of its inputs."""
    return json.dumps({**asdict(cfg), "progress": None, "inputs": [str(Path(p).resolve()) for p in inputs]},
                      sort_keys=True, default=str)


@contextmanager
def resumable_dir(output: Path, key: str, overwrite: bool = False) -> Iterator[Path]:
    """`atomic_dir` for work long enough to be interrupted (a comparison, a study: an hour or more on a CPU). The
    work folder `.<name>.partial` beside `output` survives an interruption, and the same command with the same
    `key` (its settings, as text) yields it again, with what it holds, so that the work goes on where it stopped;
    other settings start it afresh. It replaces `output` only when the block succeeds."""
    output = Path(output)
    make_parent(output)
    work = output.parent / f".{output.name}.partial"
    stamp = work / RESUME_KEY
    if work.exists() and not (stamp.is_file() and stamp.read_text() == key):
        shutil.rmtree(work)
    work.mkdir(exist_ok=True)
    stamp.write_text(key)
    yield work  # on an exception the folder stays, for the next run of the command
    stamp.unlink()
    try:
        _put_in_place(work, output, overwrite)
    except InputError:
        stamp.write_text(key)  # the work is kept: the same command with --overwrite puts it in place
        raise


ROW = "row.json"  # in a run's folder inside a resumable work folder, once the run is done: its result


def kept_row(folder: Path, compute: Callable[[], dict]) -> dict:
    """`compute()`, the result of the run in `folder`, written there as it finishes; or, if an interrupted command
    finished that run before, what it wrote. So a resumed comparison or protocol does not run it again."""
    done = folder / ROW
    if done.is_file():
        return json.loads(done.read_text())
    row = compute()
    with atomic_file(done) as part:
        part.write_text(json.dumps(row))
    return row


def _put_in_place(tmp: Path, output: Path, overwrite: bool) -> None:
    """Rename the finished folder `tmp` onto `output`, replacing it only with `overwrite`."""
    if output.exists():
        if not overwrite and (output.is_file() or any(output.iterdir())):
            raise InputError(f"{output}: already exists (pass --overwrite to replace it)")
        if output.is_dir():
            shutil.rmtree(output)
        else:
            output.unlink()
    os.replace(tmp, output)


@contextmanager
def atomic_file(path: Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it is renamed onto `path` only if the block succeeds. `suffix`: the
    temporary name's ending, for writers that choose a format by it (".nii.gz"); default `path`'s last suffix."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder; the output is a file")
    make_parent(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix if suffix is None else suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~current_umask())  # after writing: mkstemp's file is private, and some writers replace it
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
