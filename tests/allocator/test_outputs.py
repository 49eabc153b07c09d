"""allocator/outputs.py: output paths checked up front; a result folder replaced whole or not at all."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mounts import full_tmpfs, readonly_tmpfs

from allocator import outputs
from allocator.outputs import check_output_dir, check_output_file, check_writable_dir, replace_folder
from sim.errors import InputError

OWNED = ("plan.json", "report.md", "pareto.png")


def write_files(files: dict[str, str]):
    def write(staging: Path) -> str:
        for name, text in files.items():
            (staging / name).write_text(text)
        return "done"

    return write


def listing(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(folder.iterdir())}


def siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir() if p.name != folder.name)


def test_replace_folder_creates_then_replaces_whole(tmp_path: Path) -> None:
    out = tmp_path / "res"
    assert replace_folder(out, write_files({"plan.json": "1", "pareto.png": "old"}), owned=OWNED) == "done"
    assert listing(out) == {"pareto.png": "old", "plan.json": "1"}
    replace_folder(out, write_files({"plan.json": "2", "report.md": "r"}), owned=OWNED)
    assert listing(out) == {"plan.json": "2", "report.md": "r"}  # the stale pareto.png is gone
    assert siblings(out) == []  # no staging folder left
    assert oct(out.stat().st_mode & 0o777) != "0o700"  # an ordinary folder, not mkdtemp's private one


def test_replace_folder_without_atomic_exchange(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outputs, "_exchange", lambda a, b: False)
    out = tmp_path / "res"
    replace_folder(out, write_files({"plan.json": "1", "pareto.png": "p"}), owned=OWNED)
    replace_folder(out, write_files({"plan.json": "2"}), owned=OWNED)
    assert listing(out) == {"plan.json": "2"} and siblings(out) == []


def test_failed_writer_leaves_the_old_folder(tmp_path: Path) -> None:
    out = tmp_path / "res"
    replace_folder(out, write_files({"plan.json": "good"}), owned=OWNED)

    def broken(staging: Path) -> None:
        (staging / "plan.json").write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(InputError, match=r"--out .*res: cannot write the results: No space left on device"):
        replace_folder(out, broken, owned=OWNED)
    assert listing(out) == {"plan.json": "good"} and siblings(out) == []


def test_foreign_files_are_refused_not_deleted(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(InputError, match=r"holds thesis\.tex, which mixbit did not write"):
        check_output_dir(out, owned=OWNED)
    with pytest.raises(InputError, match=r"thesis\.tex"):
        replace_folder(out, write_files({"plan.json": "1"}), owned=OWNED)
    assert listing(out) == {"thesis.tex": "precious"}


def test_stale_staging_of_a_dead_process_is_removed(tmp_path: Path) -> None:
    out = tmp_path / "res"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    stale = tmp_path / f".res.mixbit-{pid}-abc"
    stale.mkdir()
    (stale / "plan.json").write_text("half")
    alive = tmp_path / f".res.mixbit-{os.getppid()}-xyz"  # a live writer's staging folder is left alone
    alive.mkdir()
    other = tmp_path / ".other.mixbit-1-abc"  # another output's is not ours to touch
    other.mkdir()
    replace_folder(out, write_files({"plan.json": "new"}), owned=OWNED)
    assert not stale.exists() and alive.exists() and other.exists()


def test_previous_folder_left_aside_is_put_back(tmp_path: Path) -> None:
    """Without the atomic exchange a kill between the two renames leaves ``out`` missing and the old folder
    aside; the next run restores it before anything else."""
    out = tmp_path / "res"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    aside = tmp_path / f".res.mixbit-{int(dead.stdout)}-abc-old"
    aside.mkdir()
    (aside / "plan.json").write_text("previous")
    outputs.clean_stale_staging(out)
    assert listing(out) == {"plan.json": "previous"} and siblings(out) == []


@pytest.mark.parametrize("check", [check_output_dir, check_output_file, check_writable_dir])
def test_unusable_paths(tmp_path: Path, check) -> None:
    kwargs = {"owned": OWNED} if check is check_output_dir else {}
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(InputError, match=r"^--out: empty path"):
        check("", **kwargs)
    with pytest.raises(InputError, match=r"a_file is a file, not a folder"):
        check(a_file / "sub" / "x", **kwargs)
    with pytest.raises(InputError, match=r"^--out /proc/mixbit_out: cannot write in /proc"):
        check("/proc/mixbit_out", **kwargs)
    with pytest.raises(InputError, match="filesystem root"):
        check("/", **kwargs)
    assert list(tmp_path.iterdir()) == [a_file]  # the checks create nothing


def test_output_on_full_and_readonly_filesystems(tmp_path: Path) -> None:
    with full_tmpfs(tmp_path / "full") as full:
        with pytest.raises(InputError, match="No space left on device"):
            check_output_dir(full / "res", owned=OWNED)
        with pytest.raises(InputError, match="No space left on device"):
            check_output_file(full / "model.pt")
    with readonly_tmpfs(tmp_path / "ro") as ro, pytest.raises(InputError, match="Read-only file system"):
        check_output_dir(ro / "res", owned=OWNED)


def test_probe_without_o_tmpfile_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def no_tmpfile(path, flags, *args):
        if flags & os.O_TMPFILE == os.O_TMPFILE:
            raise OSError(errno.EOPNOTSUPP, "not supported")
        return real_open(path, flags, *args)

    monkeypatch.setattr(outputs.os, "open", no_tmpfile)
    check_output_dir(tmp_path / "res", owned=OWNED)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match="cannot write in /proc"):
        check_output_file("/proc/x.pt")
