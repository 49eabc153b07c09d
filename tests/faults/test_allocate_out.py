"""Faults during `mixbit allocate --out`: kill -9 at every filesystem step of the folder swap and at random
points of a real run. Each case asserts that the folder holds the previous good result whole or the new one whole,
never a mix, and that nothing is left beside it once the next run has started. (A full filesystem during the write:
tests/allocator/test_outputs.py::test_failed_writer_leaves_the_old_folder, with a simulated ENOSPC.)"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from mounts import full_tmpfs

from allocator import outputs
from allocator.outputs import clean_stale_staging, replace_folder

REPO = Path(__file__).resolve().parents[2]
OWNED = ("plan.json", "problem.csv", "report.md", "bits.png", "pareto.png", "result.json")
OLD = {"plan.json": "old plan", "problem.csv": "old,csv", "report.md": "old", "pareto.png": "old", "result.json": "1"}
NEW = {"plan.json": "new plan", "problem.csv": "new,csv", "report.md": "new", "bits.png": "new", "result.json": "2"}
# the steps a writer can be killed at: every call into the filesystem that replace_folder makes
STEPS = ("write_text", "chmod", "fsync", "rename", "_exchange", "rmtree")


def contents(folder: Path) -> dict[str, str] | None:
    if not folder.is_dir():
        return None
    return {p.name: p.read_text() for p in folder.iterdir()}


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name != out.name)


def killed_at(step: int, out: Path, atomic: bool) -> bool:
    """Fork a writer that SIGKILLs itself just before its ``step``-th filesystem call; True if it was killed."""
    pid = os.fork()
    if pid == 0:  # the child: count calls, die at the chosen one
        calls = [0]

        def tripwire(real: Callable) -> Callable:
            def call(*args, **kwargs):
                if calls[0] == step:
                    os.kill(os.getpid(), signal.SIGKILL)
                calls[0] += 1
                return real(*args, **kwargs)

            return call

        Path.write_text = tripwire(Path.write_text)  # type: ignore[method-assign]
        os.chmod = tripwire(os.chmod)
        os.fsync = tripwire(os.fsync)
        os.rename = tripwire(os.rename)
        shutil.rmtree = tripwire(shutil.rmtree)
        outputs._exchange = tripwire(outputs._exchange if atomic else (lambda a, b: False))

        def write(staging: Path) -> None:
            for name, text in NEW.items():
                (staging / name).write_text(text)

        try:
            replace_folder(out, write, owned=OWNED)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


@pytest.mark.parametrize("atomic", [True, False], ids=["renameat2-exchange", "rename-aside"])
def test_kill_at_every_step_of_the_swap(tmp_path: Path, atomic: bool) -> None:
    step = 0
    seen: set[str] = set()
    while True:
        case = tmp_path / f"step{step}"
        case.mkdir()
        out = case / "res"
        out.mkdir()
        for name, text in OLD.items():
            (out / name).write_text(text)
        if not killed_at(step, out, atomic):
            assert contents(out) == NEW and leftovers(out) == []  # ran to the end: the new folder, nothing beside
            break
        now = contents(out)
        if atomic:
            assert now in (OLD, NEW), f"killed before call {step}: {now}"
        clean_stale_staging(out)  # what the next run does first
        after = contents(out)
        assert after in (OLD, NEW), f"killed before call {step}, after cleanup: {after}"
        assert leftovers(out) == []
        seen.add("old" if after == OLD else "new")
        step += 1
    assert step >= 8 and seen == {"old", "new"}  # kills landed both before and after the swap


# a small run: 16 sensitivity images, 40 evaluation images (what is killed is the run, not its accuracy)
ALLOCATE = ["allocate", "--target", "zcu102", "--model", "mixbit_vit_digits"]
ALLOCATE += ["--sensitivity-images", "16", "--eval-images", "40"]


def cli(*args: str) -> list[str]:
    code = "import sys; from allocator.cli.main import main; raise SystemExit(main(sys.argv[1:]))"
    return [sys.executable, "-c", code, *args]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def whole_result(out: Path) -> dict:
    """The result in ``out``, checked whole: every file result.json lists and nothing else, all readable."""
    result = json.loads((out / "result.json").read_text())
    listed = {Path(path).name for path in result["outputs"].values()}
    assert {p.name for p in out.iterdir()} == listed
    plan = json.loads((out / "plan.json").read_text())
    assert set(plan["layers"]) == {layer["name"] for layer in result["layers"]}
    report = (out / "report.md").read_text()
    assert report.startswith("# mixbit:")
    assert ("pareto.png" in report) == ("pareto_plot" in result["outputs"])  # no stale file listed either
    return result


@pytest.mark.slow  # four digits-testbed allocations (15-60 s each on a loaded 2-core machine)
def test_kill_minus_9_at_random_points_of_allocate(tmp_path: Path) -> None:
    out = tmp_path / "res"
    began = time.perf_counter()
    first = subprocess.run(
        cli(*ALLOCATE, "--pareto-points", "2", "--out", str(out), "--json"), env=env(), capture_output=True, text=True
    )
    wall = time.perf_counter() - began
    assert first.returncode == 0, first.stderr
    old = whole_result(out)
    assert "pareto_plot" in old["outputs"]
    rng = random.Random(15)
    # the second run writes no pareto.png: a mix of the two folders would show it beside the new result.json
    for trial in range(2):
        proc = subprocess.Popen(
            cli(*ALLOCATE, "--pareto-points", "0", "--seed", str(trial + 1), "--out", str(out)),
            env=env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if trial == 0:  # anywhere in the run
            deadline = time.perf_counter() + rng.uniform(0.2, 1.0) * wall
            while time.perf_counter() < deadline and proc.poll() is None:
                time.sleep(0.01)
        else:  # while the results are written: once the staging folder appears, after a random delay
            while proc.poll() is None and not any(p.name.startswith(".res.mixbit-") for p in tmp_path.iterdir()):
                time.sleep(0.002)
            time.sleep(rng.uniform(0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        now = whole_result(out)
        assert now == old or "pareto_plot" not in now["outputs"]
    final = subprocess.run(cli(*ALLOCATE, "--pareto-points", "0", "--out", str(out)), env=env(), capture_output=True)
    assert final.returncode == 0
    assert "pareto_plot" not in whole_result(out)["outputs"]
    assert leftovers(out) == []  # staging folders of the killed runs are gone


@pytest.mark.slow  # two digits-testbed allocations
def test_real_full_filesystem_keeps_the_previous_result(tmp_path: Path) -> None:
    """A real tmpfs that fills up while allocate writes: exit 2 with one `error:` line, the old folder whole."""
    with full_tmpfs(tmp_path / "mnt", size_kib=4096) as mnt:
        os.remove(mnt / "filler")
        out = mnt / "res"
        small = (*ALLOCATE, "--pareto-points", "0")
        first = subprocess.run(cli(*small, "--out", str(out)), env=env(), capture_output=True)
        assert first.returncode == 0, first.stderr
        old = {p.name: p.read_bytes() for p in out.iterdir()}
        free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
        (mnt / "filler").write_bytes(b"\0" * max(0, free - 3 * 4096))  # room for the up-front probe only
        done = subprocess.run(
            cli(*small, "--seed", "1", "--out", str(out)),
            env=env(),
            capture_output=True,
            text=True,
        )
        assert done.returncode == 2, done.stderr
        # the disk fills only at the end: progress lines come first, then one `error:` line
        errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and done.stderr.splitlines()[-1] == errors[0] and "No space left on device" in errors[0]
        assert {p.name: p.read_bytes() for p in out.iterdir()} == old
        assert sorted(p.name for p in mnt.iterdir()) == ["filler", "res"]  # no staging folder left behind
