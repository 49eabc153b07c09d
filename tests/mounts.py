"""Small real filesystems for output-path tests: a full tmpfs and a read-only one (needs root and mount(8)).

Tests that use them skip where mounting is not allowed (an unprivileged container); the same cases are then
covered by simulated ENOSPC/EROFS errors: tests/allocator/test_cli_args.py::
test_outputs_on_simulated_full_and_readonly_filesystems (the up-front --out probe of allocate, train, sweep),
tests/faults/test_sweep_out.py::test_disk_full_while_parts_are_written_keeps_the_stored_parts,
tests/faults/test_train_out.py::test_disk_full_while_the_checkpoint_is_written and
tests/allocator/test_outputs.py::test_failed_writer_leaves_the_old_folder.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["fill", "full_tmpfs", "readonly_tmpfs"]


def _mount(where: Path, options: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")


def _umount(where: Path) -> None:
    subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


def fill(where: Path, name: str = "filler") -> Path:
    """Fill the filesystem holding ``where`` to the last byte with the file ``where/name``; returns it."""
    filler = where / name
    with open(filler, "ab", buffering=0) as handle:
        for chunk in (4096, 1):  # whole pages, then the last bytes
            with contextlib.suppress(OSError):
                while True:
                    handle.write(b"\0" * chunk)
    return filler


@contextlib.contextmanager
def full_tmpfs(where: Path, size_kib: int = 256) -> Iterator[Path]:
    """A ``size_kib`` tmpfs at ``where``, filled to the last byte (the file ``filler``); yields it."""
    _mount(where, f"size={size_kib}k")
    try:
        fill(where)
        yield where
    finally:
        _umount(where)


@contextlib.contextmanager
def readonly_tmpfs(where: Path) -> Iterator[Path]:
    """A read-only tmpfs at ``where``; yields it."""
    _mount(where, "size=64k,ro")
    try:
        yield where
    finally:
        _umount(where)
