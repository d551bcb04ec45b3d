import shutil
from pathlib import Path

import pytest

from medinpaint.errors import InputError
from medinpaint.outputs import atomic_dir, atomic_file, check_output_path, resumable_dir


def test_atomic_dir_leaves_nothing_behind_on_failure(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "out") as tmp:
            (tmp / "half.png").write_text("x")
            raise RuntimeError("crash mid-way")
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_replaces_only_when_asked_and_only_an_output_of_its_own(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with atomic_dir(out) as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "old.txt").write_text("old")
    with pytest.raises(InputError, match="already exists"):
        with atomic_dir(out) as tmp:
            (tmp / "new.txt").write_text("new")
    assert (out / "sub" / "old.txt").exists() and sorted(p.name for p in tmp_path.iterdir()) == [".out.medinpaint-output.json", "out"]
    with atomic_dir(out, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in out.iterdir()] == ["new.txt"]  # what it wrote is listed beside the folder, not in it
    (out / "notes.txt").write_text("mine")  # a file of the user's, put in the output since: refused before the work
    with pytest.raises(InputError, match=r"out: holds notes.txt that medinpaint did not write; --overwrite replaces only"):
        with atomic_dir(out, overwrite=True):
            pytest.fail("the work began")
    (out / "notes.txt").unlink()
    with pytest.raises(InputError, match="holds late.txt"):  # and one put there while the work ran: refused at the end
        with atomic_dir(out, overwrite=True) as tmp:
            (out / "late.txt").write_text("mine too")
            (tmp / "new.txt").write_text("newer")
    assert (out / "late.txt").read_text() == "mine too" and (out / "new.txt").read_text() == "new"
    mine = tmp_path / "mine"  # a folder medinpaint never wrote
    (mine / "a").mkdir(parents=True)
    (mine / "a" / "x.txt").write_text("x")
    (mine / "y.txt").write_text("y")
    with pytest.raises(InputError, match=r"holds a/x.txt and 1 more files that medinpaint did not write"):
        with atomic_dir(mine, overwrite=True):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.medinpaint-output.json", "mine", "out"]
    shutil.rmtree(out)  # a folder made anew where an output was, with a file of the same name: not the one listed
    out.mkdir()
    (out / "new.txt").write_text("someone else's")
    with pytest.raises(InputError, match="holds new.txt that medinpaint did not write"):
        with atomic_dir(out, overwrite=True):
            pass
    (tmp_path / "notes").write_text("mine")  # and a file is never replaced by a folder
    with pytest.raises(InputError, match="notes: is a file, and the output is a folder"):
        with atomic_dir(tmp_path / "notes", overwrite=True):
            pass
    assert (tmp_path / "notes").read_text() == "mine" and (out / "new.txt").read_text() == "someone else's"
    for named_like_a_file in ("preds.png", "out.nii.gz", "Scan.NII"):  # a folder must not pass for a file
        with pytest.raises(InputError, match="this output is a folder, and a name ending in"):
            with atomic_dir(tmp_path / named_like_a_file):
                pass
        assert not (tmp_path / named_like_a_file).exists()


def test_atomic_file_keeps_the_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "w.bin"
    target.write_text("old")
    with pytest.raises(ValueError):
        with atomic_file(target) as tmp:
            tmp.write_text("partial")
            raise ValueError
    assert target.read_text() == "old" and len(list(tmp_path.iterdir())) == 1


def test_output_checks(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "x.npy").write_text("")
    with pytest.raises(InputError, match="inside the input folder"):
        check_output_path(data / "out", [data], overwrite=True)
    with pytest.raises(InputError, match="the input itself"):
        check_output_path(tmp_path / "x.npy", [tmp_path / "x.npy"], overwrite=True)
    check_output_path(tmp_path / "y.npy", [tmp_path / "x.npy"], overwrite=False, kind="file")  # beside an input file is fine
    check_output_path(tmp_path / "empty", [data], overwrite=False)
    with pytest.raises(InputError, match=r"x\.npy: already exists \(pass --overwrite"):  # an empty file is still a file
        check_output_path(tmp_path / "x.npy", [data], overwrite=False, kind="file")


def test_results_get_ordinary_permissions(tmp_path: Path) -> None:
    import os

    os.umask(0o022)
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "a.txt").write_text("a")
    with atomic_file(tmp_path / "f.txt") as tmp:
        tmp.write_text("f")
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644


def test_an_output_folder_may_not_hold_an_input(tmp_path: Path) -> None:
    (tmp_path / "run" / "data").mkdir(parents=True)
    with pytest.raises(InputError, match="holds the input"):
        check_output_path(tmp_path / "run", [tmp_path / "run" / "data"], overwrite=True)


def test_an_output_under_a_file_or_onto_a_folder_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    with pytest.raises(InputError, match="is a file, not a folder"):
        with atomic_dir(tmp_path / "afile" / "sub"):
            pass
    (tmp_path / "folder").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        with atomic_file(tmp_path / "folder"):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "folder"]


def test_a_sigterm_ends_a_command_through_its_cleanup(tmp_path: Path) -> None:
    """`kill PID` on a command half-way through writing its output leaves nothing behind, as Ctrl-C does."""
    import os
    import signal

    from medinpaint.cli.options import user_errors

    @user_errors
    def command() -> None:
        with atomic_dir(tmp_path / "out") as tmp:
            (tmp / "half.png").write_text("x")
            os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stop:
        command()
    assert stop.value.code == 128 + signal.SIGTERM and list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_resumable_folder_survives_an_interruption_and_only_its_own_settings_resume_it(tmp_path: Path,
                                                                                          capsys: pytest.CaptureFixture) -> None:
    from medinpaint.outputs import resumable_dir

    out = tmp_path / "report"
    with pytest.raises(KeyboardInterrupt):
        with resumable_dir(out, "settings A") as work:
            (work / "run-1").write_text("an hour of work")
            raise KeyboardInterrupt
    assert not out.exists() and (tmp_path / ".report.partial" / "run-1").read_text() == "an hour of work"
    with pytest.raises(KeyboardInterrupt):
        with resumable_dir(out, "settings A") as work:  # the same command: the work is there
            assert (work / "run-1").is_file()
            (work / "run-2").write_text("more")
            raise KeyboardInterrupt
    with atomic_dir(out) as earlier:  # an earlier output of the command
        (earlier / "old").write_text("kept")
    with pytest.raises(InputError, match="already exists"):
        with resumable_dir(out, "settings A") as work:
            pass
    assert (out / "old").is_file() and (tmp_path / ".report.partial" / "run-2").is_file()  # neither is lost
    with resumable_dir(out, "settings A", overwrite=True) as work:
        assert sorted(p.name for p in work.iterdir()) == [".resume-key", "run-1", "run-2"]
    assert sorted(p.name for p in out.iterdir()) == ["run-1", "run-2"] and not (tmp_path / ".report.partial").exists()
    with pytest.raises(KeyboardInterrupt):
        with resumable_dir(tmp_path / "b", "settings A") as work:
            (work / "x").write_text("")
            raise KeyboardInterrupt
    with resumable_dir(tmp_path / "b", "settings B") as work:  # other settings: afresh, and said so
        assert [p.name for p in work.iterdir()] == [".resume-key"]
    assert f"note: {tmp_path / '.b.partial'} held the unfinished work of other settings" in capsys.readouterr().err


def test_an_interrupted_replacement_keeps_the_old_output_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    out = tmp_path / "out"
    with atomic_dir(out) as earlier:
        for k in range(5):
            (earlier / f"old-{k}.txt").write_text("old")
    real_replace, calls = os.replace, []

    def interrupted_swap(src, dst):  # the old output is renamed aside, then Ctrl-C as the new one moves in
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr("medinpaint.outputs.os.replace", interrupted_swap)
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(out, overwrite=True) as tmp:
            (tmp / "new.txt").write_text("new")
    monkeypatch.undo()
    assert sorted(p.name for p in out.iterdir()) == [f"old-{k}.txt" for k in range(5)]
    # neither the new work nor an aside copy is left, and the old output is still listed as medinpaint's
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.medinpaint-output.json", "out"]


def test_overwrite_replaces_a_symbolic_link_and_not_what_it_points_to(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "precious.txt").write_text("keep")
    (tmp_path / "out").symlink_to(target)
    with pytest.raises(InputError, match="already exists"):
        with atomic_dir(tmp_path / "out") as tmp:
            (tmp / "new.txt").write_text("new")
    with atomic_dir(tmp_path / "out", overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert not (tmp_path / "out").is_symlink() and [p.name for p in (tmp_path / "out").iterdir()] == ["new.txt"]
    assert (target / "precious.txt").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.medinpaint-output.json", "elsewhere", "out"]


def test_an_output_where_no_folder_can_be_made_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"/sys/medinpaint-test/out: cannot create its folder /sys/medinpaint-test \("):
        with atomic_dir(Path("/sys/medinpaint-test/out")):
            pass


def test_the_resume_key_changes_when_an_input_is_rewritten_in_place(tmp_path: Path) -> None:
    import dataclasses
    import os

    from medinpaint.outputs import settings_key

    @dataclasses.dataclass
    class Cfg:
        steps: int = 10
        progress: bool = True

    data = tmp_path / "data"
    (data / "ct").mkdir(parents=True)
    (data / "ct" / "a.png").write_bytes(b"1")
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"w")
    key = settings_key(Cfg(), [data, weights])
    assert settings_key(Cfg(progress=False), [data, weights]) == key  # how progress is shown does not count
    os.utime(data / "ct" / "a.png", ns=(1, 1))  # the same file, rewritten
    assert settings_key(Cfg(), [data, weights]) != key
    key = settings_key(Cfg(), [data, weights])
    (data / "ct" / "b.png").write_bytes(b"2")  # a file more
    assert settings_key(Cfg(), [data, weights]) != key
    key = settings_key(Cfg(), [data, weights])
    weights.write_bytes(b"other weights")
    assert settings_key(Cfg(), [data, weights]) != key


@pytest.mark.parametrize("here", [".", "..", "sub/..", ""])
def test_the_current_folder_or_one_above_it_is_never_an_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, here: str) -> None:
    """`-o .` has no name to rename onto, and replacing it would move the folder the command runs in away."""
    (tmp_path / "cwd").mkdir()
    (tmp_path / "cwd" / "keep.txt").write_text("x")
    monkeypatch.chdir(tmp_path / "cwd")
    for make in (lambda: atomic_dir(Path(here), overwrite=True), lambda: resumable_dir(Path(here), "key", overwrite=True)):
        with pytest.raises(InputError, match="not the current folder or one above it"):
            with make():
                pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd"] and [p.name for p in Path.cwd().iterdir()] == ["keep.txt"]
