"""Output paths checked before work starts, and a result folder replaced as a whole or not at all.

``check_output_dir`` / ``check_output_file`` find an unusable ``--out`` (under a file, read-only or full
filesystem, /proc, '') up front, by creating and removing a small probe file where the output will go, so a
long run does not fail at its last step.

``replace_folder`` writes a result folder: every file goes into a hidden staging folder beside ``out``
(``.<name>.mixbit-<pid>-…``), which then takes ``out``'s place in one step. On Linux the two folders are
exchanged atomically (renameat2 RENAME_EXCHANGE) and the old one removed; elsewhere ``out`` is renamed aside
and the new one renamed in (a kill between those two renames leaves the old folder aside, and the next run
puts it back before anything else). A kill at any point leaves the previous folder whole or the new one whole,
never a mix, and files the new result does not contain are gone with the old folder. Staging folders left by
killed runs (their process is gone) are removed by the next run on the same ``out``.

A folder is only replaced when it holds nothing but files this kind of result writes (``owned``): pointing
``--out`` at a folder of other files is refused instead of deleting them.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TypeVar

from sim.errors import InputError

__all__ = ["check_output_dir", "check_output_file", "check_writable_dir", "clean_stale_staging", "replace_folder"]

T = TypeVar("T")

_TAG = ".mixbit-"
_OLD = "-old"
_RENAME_EXCHANGE = 2  # linux/fs.h
_PROBE_BYTES = 4096


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists."""
    probe = path
    while not os.path.lexists(probe) and probe != probe.parent:
        probe = probe.parent
    return probe


def _probe_writable(folder: Path, flag: str, shown: Path) -> None:
    """Create, fill and remove a small file in ``folder``; an InputError naming ``flag`` if that fails.

    The probe is an unnamed O_TMPFILE file where the filesystem allows it, so a kill leaves nothing behind;
    elsewhere a named one, ``.<out>.mixbit-<pid>-probe-…``, which the next run's cleanup removes.
    """
    name = None
    try:
        try:
            fd = os.open(folder, os.O_TMPFILE | os.O_WRONLY, 0o600)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.EISDIR):
                raise
            fd, name = tempfile.mkstemp(prefix=f".{shown.name}{_TAG}{os.getpid()}-probe-", dir=folder)
        with os.fdopen(fd, "wb") as handle:
            handle.write(b"\0" * _PROBE_BYTES)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise InputError(f"{flag} {shown}: cannot write in {folder}: {exc.strerror or exc}") from None
    finally:
        if name is not None:
            with contextlib.suppress(OSError):
                os.unlink(name)


def _check_parent(path: Path, flag: str) -> None:
    existing = _nearest_existing(path.parent)
    if not existing.is_dir():
        raise InputError(f"{flag} {path}: {existing} is a file, not a folder")
    _probe_writable(existing, flag, path)


def _as_path(path: str | os.PathLike[str], flag: str) -> Path:
    text = os.fspath(path)
    if not text or not text.strip():
        raise InputError(f"{flag}: empty path; give a folder or file name")
    if "\0" in text:
        raise InputError(f"{flag} {text!r}: a path cannot contain a NUL character")
    # a symlink to a folder: write the folder it names (replacing the link itself would orphan its target)
    out = Path(os.path.realpath(text) if os.path.islink(text) else os.path.abspath(text))
    if out.parent == out:
        raise InputError(f"{flag} {text}: cannot be the filesystem root")
    return out


def check_output_dir(path: str | os.PathLike[str], *, owned: Collection[str], flag: str = "--out") -> Path:
    """The folder ``path``, checked as a place ``replace_folder`` can write: not a file, holding only files named
    in ``owned`` (it will be replaced whole), and on a writable filesystem with some room. Creates nothing."""
    out = _as_path(path, flag)
    if os.path.lexists(out):
        if not out.is_dir():
            raise InputError(f"{flag} {out}: exists and is not a folder")
        foreign = sorted(entry.name for entry in os.scandir(out) if entry.name not in owned or not entry.is_file())
        if foreign:
            raise InputError(
                f"{flag} {out}: holds {', '.join(foreign[:3])}{' …' if len(foreign) > 3 else ''}, which mixbit did "
                "not write; the folder is replaced as a whole, so give an empty or new folder"
            )
    _check_parent(out, flag)
    return out


def check_writable_dir(path: str | os.PathLike[str], *, flag: str = "--out") -> Path:
    """The folder ``path``, checked as one files can be added to (a dataset folder, kept and added to): not a
    file, on a writable filesystem with some room. Creates nothing."""
    out = _as_path(path, flag)
    if os.path.lexists(out) and not out.is_dir():
        raise InputError(f"{flag} {out}: exists and is not a folder")
    if out.is_dir():
        _probe_writable(out, flag, out)
    else:
        _check_parent(out, flag)
    return out


def check_output_file(path: str | os.PathLike[str], *, flag: str = "--out") -> Path:
    """The file ``path``, checked as something that can be written: not a folder, its parent not a file, on a
    writable filesystem with some room. Creates nothing."""
    out = _as_path(path, flag)
    if out.is_dir():
        raise InputError(f"{flag} {out}: is a folder; give a file name")
    _check_parent(out, flag)
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _staging_pid(entry: str, out_name: str) -> int | None:
    """The process id in a staging folder's name, or None if ``entry`` is not one of ``out``'s."""
    prefix = f".{out_name}{_TAG}"
    if not entry.startswith(prefix):
        return None
    pid, _, _ = entry[len(prefix) :].partition("-")
    return int(pid) if pid.isdigit() else None


def clean_stale_staging(out: Path) -> None:
    """Remove staging folders of ``out`` whose writer process is gone; if ``out`` itself is missing and a dead
    writer left the previous folder aside (no atomic exchange), put that folder back first."""
    parent = out.parent
    if not parent.is_dir():
        return
    stale = []
    for entry in os.listdir(parent):
        pid = _staging_pid(entry, out.name)
        if pid is not None and pid != os.getpid() and not _pid_alive(pid):
            stale.append(parent / entry)
    if not os.path.lexists(out):
        aside = sorted(path for path in stale if path.name.endswith(_OLD))
        if aside:
            os.rename(aside[-1], out)
            stale.remove(aside[-1])
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2); False where the call or the filesystem lacks it."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd = -100
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(a))


def _fsync_tree(folder: Path) -> None:
    for entry in os.scandir(folder):
        if entry.is_file():
            fd = os.open(entry.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def replace_folder(
    out: str | os.PathLike[str], write: Callable[[Path], T], *, owned: Collection[str], flag: str = "--out"
) -> T:
    """Call ``write(staging)`` to fill a new folder, then make it ``out`` in one step; returns what ``write``
    returns. ``write`` may only create files named in ``owned``. If ``write`` or the swap fails, ``out`` is left
    as it was and the staging folder is removed; an OSError becomes an InputError naming ``flag``."""
    out = check_output_dir(out, owned=owned, flag=flag)
    clean_stale_staging(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}{_TAG}{os.getpid()}-", dir=out.parent))
    except OSError as exc:
        raise InputError(f"{flag} {out}: cannot create a folder in {out.parent}: {exc.strerror or exc}") from None
    try:
        result = write(staging)
        unexpected = sorted(name for name in os.listdir(staging) if name not in owned)
        if unexpected:
            raise RuntimeError(f"replace_folder: writer made {unexpected}, not in owned")
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700; a result folder is an ordinary folder
        _fsync_tree(staging)
        if not os.path.lexists(out):
            os.rename(staging, out)
        elif _exchange(staging, out):
            shutil.rmtree(staging, ignore_errors=True)  # it now holds the previous folder
        else:
            aside = staging.with_name(staging.name + _OLD)
            os.rename(out, aside)
            os.rename(staging, out)
            shutil.rmtree(aside, ignore_errors=True)
        _fsync_dir(out.parent)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise InputError(f"{flag} {out}: cannot write the results: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return result


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
