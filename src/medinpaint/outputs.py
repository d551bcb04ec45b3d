"""Safe output handling: never write into an input folder, never overwrite unless asked, never leave halves."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TypeVar

from medinpaint.errors import InputError

T = TypeVar("T")


def check_replaceable(output: Path) -> None:
    """Refuse an output with no name of its own (`.`, `..`, `a/..`) or that is the folder the command runs in or
    holds it: nothing can be renamed onto it, and replacing it would move the working folder away."""
    absolute, here = Path(os.path.abspath(output)), Path.cwd()  # abspath: a link named as output is not followed
    if not absolute.name or absolute == here or absolute in here.parents:
        raise InputError(f"{output}: the output must be a file or folder of its own, not the current folder or one above it")


FILE_SUFFIXES = (".nii.gz", ".nii", ".npy", ".npz", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".json", ".csv", ".txt",
                 ".safetensors", ".onnx", ".pt", ".zip")  # endings a folder output must not have


def check_folder_name(output: Path, what: str = "this output") -> None:
    """Refuse a folder output named like a file (`preds.png`, `out.nii.gz`): the folder made under that name would
    pass for a file it is not, and a user who meant a file gets a folder."""
    suffix = next((s for s in FILE_SUFFIXES if Path(output).name.lower().endswith(s)), None)
    if suffix is not None:
        raise InputError(f"{output}: {what} is a folder, and a name ending in {suffix} would pass for a file it is not: "
                         "name a folder")


def check_not_an_input(output: Path, inputs: list[Path]) -> None:
    """Refuse an output that is an input file, is or lies inside an input folder, or holds an input (replacing it
    would delete the input). The only check of a run folder, which is resumed where it exists."""
    out = output.resolve()
    for inp in inputs:
        src = inp.resolve()
        if out == src:
            raise InputError(f"{output}: output must not be the input itself")
        if src.is_dir() and src in out.parents:
            raise InputError(f"{output}: output must not be inside the input folder {src}")
        if out in src.parents:
            raise InputError(f"{output}: output must not be a folder that holds the input {inp}")


def check_output_path(output: Path, inputs: list[Path], overwrite: bool, kind: str = "folder") -> None:
    """`check_not_an_input`, and refuse now, before the work, what writing the output would refuse after it: an
    output that exists and is not empty (without `overwrite`), a folder output that medinpaint may not replace
    (`check_ours`), a file output where a folder is. `kind`: folder, file, or any (not known yet)."""
    check_not_an_input(output, inputs)
    out = output.resolve()
    if kind == "file" and out.is_dir():
        raise InputError(f"{output}: is a folder; the output is a file")
    if out.exists() and not overwrite:
        if out.is_file():
            raise InputError(f"{output}: already exists (pass --overwrite to replace it)")
        if any(out.iterdir()):
            raise InputError(f"{output}: already exists and is not empty (pass --overwrite to replace it)")
    if kind == "folder":
        check_folder_name(output)
        if overwrite:
            check_ours(output)


def manifest_path(output: Path) -> Path:
    """Beside every folder `atomic_dir` puts in place: the files it wrote there, and the folder's inode (a folder
    deleted and made anew by someone else is not the one listed). Beside, not inside, so an output holds only what
    the command writes (a predictions folder zipped for a challenge holds only predictions)."""
    output = Path(output)
    return output.parent / f".{output.name}.medinpaint-output.json"


def _files_under(folder: Path) -> list[str]:
    return sorted(str(f.relative_to(folder)) for f in folder.rglob("*") if not f.is_dir())


def check_ours(output: Path) -> None:
    """`--overwrite` replaces a folder only if medinpaint wrote everything in it: a file it did not write (one put
    there since, or a folder that was never a medinpaint output) is refused by name, never deleted."""
    output = Path(output)
    if output.is_symlink() or not output.exists():
        return  # a link is replaced, never followed
    if not output.is_dir():
        raise InputError(f"{output}: is a file, and the output is a folder (choose another output)")
    try:
        listed = json.loads(manifest_path(output).read_text())
        written = set(listed["files"]) if listed["inode"] == output.stat().st_ino else set()
    except (OSError, ValueError, KeyError, TypeError):
        written = set()
    foreign = [f for f in _files_under(output) if f not in written]
    if foreign:
        raise InputError(f"{output}: holds {foreign[0]}{f' and {len(foreign) - 1} more files' if len(foreign) > 1 else ''} that "
                         f"medinpaint did not write; --overwrite replaces only an output of its own (move them, or choose "
                         f"another output)")


def _record_ours(output: Path, files: list[str]) -> None:
    with atomic_file(manifest_path(output), suffix=".json") as part:
        part.write_text(json.dumps({"inode": output.stat().st_ino, "files": files}))


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
    except OSError as e:  # read-only, no permission, no space
        raise InputError(f"{path}: cannot create its folder {path.parent} ({e.strerror})") from None
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise InputError(f"{path}: cannot write in its folder {path.parent} (permission denied)")


def _unwritable_is_input_error(output: Path, make: Callable[[], T]) -> T:
    try:
        return make()
    except OSError as e:  # a read-only file system, a full disk
        raise InputError(f"{output}: cannot write in its folder {output.parent} ({e.strerror})") from None


@contextmanager
def atomic_dir(output: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside `output`; it replaces `output` only if the block succeeds."""
    output = Path(output)
    check_replaceable(output)
    check_folder_name(output)
    if overwrite:
        check_ours(output)  # now, before the work, and again when it is done
    make_parent(output)
    tmp = Path(_unwritable_is_input_error(output, lambda: tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent)))
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
    shown aside), the full paths of its inputs and a fingerprint of what they hold, so that data rewritten in
    the same place starts the work afresh rather than mixing old runs with new ones."""
    return json.dumps({**asdict(cfg), "progress": None,
                       "inputs": {str(Path(p).resolve()): fingerprint(Path(p)) for p in inputs}}, sort_keys=True, default=str)


def fingerprint(path: Path) -> str:
    """The names, sizes and modification times of a file or of every file under a folder, hashed: cheap (no
    file is read), and changed by any rewrite."""
    root = path.resolve()
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
    digest = hashlib.sha256()
    for f in files:
        st = f.stat()
        digest.update(f"{f.relative_to(root) if f != root else f.name}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def partial_dir(output: Path) -> Path:
    """The work folder `resumable_dir` keeps for `output` while the work is unfinished."""
    output = Path(output)
    return output.parent / f".{output.name}.partial"


@contextmanager
def resumable_dir(output: Path, key: str, overwrite: bool = False) -> Iterator[Path]:
    """`atomic_dir` for work long enough to be interrupted (a comparison, a study: an hour or more on a CPU). The
    work folder `.<name>.partial` beside `output` survives an interruption, and the same command with the same
    `key` (its settings, as text) yields it again, with what it holds, so that the work goes on where it stopped;
    other settings start it afresh. It replaces `output` only when the block succeeds."""
    output = Path(output)
    check_replaceable(output)
    check_folder_name(output)
    if overwrite:
        check_ours(output)  # now, before the work, and again when it is done
    make_parent(output)
    work = partial_dir(output)
    stamp = work / RESUME_KEY
    if work.exists() and not (stamp.is_file() and stamp.read_text() == key):
        print(f"note: {work} held the unfinished work of other settings (or other input data): it is discarded, and "
              "the work starts afresh", file=sys.stderr, flush=True)
        shutil.rmtree(work)
    work.mkdir(exist_ok=True)
    stamp.write_text(key)
    yield work  # on an exception the folder stays, with its stamp, for the next run of the command
    _put_in_place(work, output, overwrite)  # refused (exists): the work is kept, and the command with --overwrite puts it in place
    (output / RESUME_KEY).unlink()


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
    """Rename the finished folder `tmp` onto `output`, replacing it only with `overwrite` and only if it is an output
    of medinpaint's own (`check_ours`; the list of what `tmp` holds is written beside it for that). The old output is first
    renamed aside and deleted only once the new one is in place, so an interruption leaves one of them whole (the
    old one, if it came before the swap, as `.NAME.old-*` beside it). A symbolic link is replaced, not followed."""
    files = _files_under(tmp)
    if not (output.exists() or output.is_symlink()):
        os.replace(tmp, output)
        _record_ours(output, files)
        return
    if not overwrite and (output.is_symlink() or output.is_file() or any(output.iterdir())):
        raise InputError(f"{output}: already exists (pass --overwrite to replace it)")
    check_ours(output)
    aside = Path(tempfile.mkdtemp(prefix=f".{output.name}.old-", dir=output.parent)) / "old"
    os.replace(output, aside)
    try:
        os.replace(tmp, output)
    except BaseException:
        os.replace(aside, output)  # put the old one back
        aside.parent.rmdir()
        raise
    _record_ours(output, files)
    if aside.is_dir() and not aside.is_symlink():
        shutil.rmtree(aside)
    else:
        aside.unlink()
    aside.parent.rmdir()


@contextmanager
def atomic_file(path: Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it is renamed onto `path` only if the block succeeds. `suffix`: the
    temporary name's ending, for writers that choose a format by it (".nii.gz"); default `path`'s last suffix."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder; the output is a file")
    make_parent(path)
    fd, tmp_name = _unwritable_is_input_error(
        path, lambda: tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix if suffix is None else suffix, dir=path.parent))
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~current_umask())  # after writing: mkstemp's file is private, and some writers replace it
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
