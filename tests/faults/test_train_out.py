"""Faults during `mixbit train --out`: kill -9 while the checkpoint is written and at a random point of a real
run, and a disk that fills up during the write (a real full tmpfs, and a simulated ENOSPC). Each case asserts
that the previous good checkpoint is byte-for-byte intact or the new one loads whole."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mounts import full_tmpfs

REPO = Path(__file__).resolve().parents[2]
TRAIN = ["train", "--epochs", "1"]

# A stand-in for torch.save that writes half of the real bytes to the destination (a path or an open file),
# flushes, and then dies (kill) or fails as a full disk would (enospc): a crash or a full disk mid-write.
FAULTY_SAVE = """
import errno, io, os, signal, sys
import torch
mode = sys.argv.pop(1)
real_save = torch.save

def faulty_save(obj, f, *args, **kwargs):
    buffer = io.BytesIO()
    real_save(obj, buffer, *args, **kwargs)
    data = buffer.getvalue()[: len(buffer.getvalue()) // 2]
    if isinstance(f, (str, os.PathLike)):
        with open(f, "wb") as handle:
            handle.write(data)
    else:
        f.write(data)
        f.flush()
    if mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

torch.save = faulty_save
from allocator.cli.main import main
raise SystemExit(main(sys.argv[1:]))
"""


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def cli(*args: str) -> list[str]:
    code = "import sys; from allocator.cli.main import main; raise SystemExit(main(sys.argv[1:]))"
    return [sys.executable, "-c", code, *args]


def loads_whole(path: Path) -> bool:
    import torch

    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # any failure to load is what this checks for
        return False
    return isinstance(saved, dict) and bool(saved.get("state_dict"))


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("good") / "model.pt"
    done = subprocess.run(cli(*TRAIN, "--out", str(path)), env=env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert loads_whole(path)
    return path.read_bytes()


@pytest.mark.slow  # two short training runs in subprocesses
def test_kill_while_the_checkpoint_is_written(tmp_path: Path, good_checkpoint: bytes) -> None:
    out = tmp_path / "model.pt"
    out.write_bytes(good_checkpoint)
    done = subprocess.run(
        [sys.executable, "-c", FAULTY_SAVE, "kill", *TRAIN, "--seed", "1", "--out", str(out)], env=env()
    )
    assert done.returncode == -signal.SIGKILL
    assert out.read_bytes() == good_checkpoint
    [half] = [p.name for p in tmp_path.iterdir() if p != out]  # the half-written temporary of the killed writer
    assert half.startswith(".model.pt.") and half.endswith(".tmp")
    done = subprocess.run(cli(*TRAIN, "--seed", "1", "--out", str(out)), env=env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert loads_whole(out) and [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # the next write removed it


@pytest.mark.slow
def test_disk_full_while_the_checkpoint_is_written(tmp_path: Path, good_checkpoint: bytes) -> None:
    out = tmp_path / "model.pt"
    out.write_bytes(good_checkpoint)
    done = subprocess.run(
        [sys.executable, "-c", FAULTY_SAVE, "enospc", *TRAIN, "--seed", "1", "--out", str(out)],
        env=env(),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    err = done.stderr.splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "No space left on device" in err[0]
    assert out.read_bytes() == good_checkpoint
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary left beside it


@pytest.mark.slow
def test_real_full_filesystem_keeps_the_previous_checkpoint(tmp_path: Path, good_checkpoint: bytes) -> None:
    with full_tmpfs(tmp_path / "mnt", size_kib=4 * len(good_checkpoint) // 1024 + 64) as mnt:
        os.remove(mnt / "filler")
        out = mnt / "model.pt"
        out.write_bytes(good_checkpoint)
        free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
        (mnt / "filler").write_bytes(b"\0" * max(0, free - 3 * 4096))  # room for the up-front probe only
        done = subprocess.run(cli(*TRAIN, "--seed", "1", "--out", str(out)), env=env(), capture_output=True, text=True)
        assert done.returncode == 2
        err = done.stderr.splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and "No space left on device" in err[0]
        assert out.read_bytes() == good_checkpoint
        assert sorted(p.name for p in mnt.iterdir()) == ["filler", "model.pt"]


@pytest.mark.slow
def test_kill_minus_9_at_a_random_point_of_training(tmp_path: Path, good_checkpoint: bytes) -> None:
    out = tmp_path / "model.pt"
    out.write_bytes(good_checkpoint)
    rng = random.Random(15)
    proc = subprocess.Popen(
        cli("train", "--epochs", "3", "--seed", "2", "--out", str(out)),
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(rng.uniform(1.0, 8.0))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert out.read_bytes() == good_checkpoint or loads_whole(out)
    left = [p.name for p in tmp_path.iterdir() if p != out]  # at most the killed writer's temporary
    assert len(left) <= 1 and all(name.startswith(f".model.pt.{proc.pid}.") for name in left)
