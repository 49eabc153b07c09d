"""Faults during `mixbit sweep --out`: kill -9 at random points of a real CLI run (workload build, cluster start,
chunk evaluation, part writes, the Pareto pass). After every kill the dataset reads back whole: each stored row
equals the uninterrupted run's row for that point, no point twice; the next run is not locked out and completes
it to exactly the uninterrupted result. A disk that fills while parts are written (a real tmpfs, and a simulated
ENOSPC that runs anywhere) fails with one error line and keeps every part stored before, whole; nothing half-written
is left, and a rerun with space completes the sweep."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from mounts import fill, full_tmpfs

from allocator.cli.main import main
from allocator.sweep import read_results

REPO = Path(__file__).resolve().parents[2]
# 2 boards x 4 x 4 arrays x 3 dataflows x 3 bit pairs x 2 bandwidths = 576 DeiT-S points in parts of 16
SWEEP = """
name = "faults"
models = ["deit_small_patch16_224"]
points_per_part = 16

[grid]
target = ["zcu102", "kv260"]
rows = [8, 12, 16, 24]
cols = [8, 12, 16, 24]
dataflow = ["os", "ws", "is"]
bits = [[8, 8], [4, 8], [4, 4]]
bandwidth_gbps = [4.8, 19.2]
"""
POINTS = 576


def sweep(path: Path, out: Path) -> list[str]:
    code = "import sys; from allocator.cli.main import main; raise SystemExit(main(sys.argv[1:]))"
    return [sys.executable, "-c", code, "sweep", str(path), "--out", str(out), "--workers", "1"]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows without what depends on the run: timings, and the Pareto column (set once a sweep completes)."""
    timing = ("pareto", "eval_s", "seconds", "worker")
    return frame.drop(columns=[c for c in timing if c in frame]).set_index("point_id").sort_index()


@pytest.mark.slow  # one reference sweep, three killed ones and a completing rerun: 40-90 s on a loaded machine
def test_kill_minus_9_at_random_points_of_a_sweep(tmp_path: Path) -> None:
    path = tmp_path / "faults.toml"
    path.write_text(SWEEP)
    began = time.perf_counter()
    subprocess.run(sweep(path, tmp_path / "reference"), env=env(), capture_output=True, check=True, timeout=300)
    wall = time.perf_counter() - began
    reference = comparable(read_results(tmp_path / "reference"))
    assert len(reference) == POINTS

    out = tmp_path / "out"
    rng = random.Random(20)
    stored: list[int] = []
    for trial in range(3):
        proc = subprocess.Popen(
            sweep(path, out), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        if trial == 0:  # anywhere in the run (mostly start-up: imports, workload, cluster)
            deadline = time.perf_counter() + rng.uniform(0.1, 0.8) * wall
            while time.perf_counter() < deadline and proc.poll() is None:
                time.sleep(0.01)
        else:  # while parts are written: once this run's first new part lands, after a random delay
            before = set(out.glob("part-*.parquet"))
            while proc.poll() is None and not set(out.glob("part-*.parquet")) - before:
                time.sleep(0.002)
            time.sleep(rng.uniform(0, 0.3))
        with contextlib.suppress(ProcessLookupError):  # (a run that already finished has no group left)
            os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its Dask workers, as a crash or an OOM kill would
        proc.wait()
        if out.exists():
            rows = comparable(read_results(out))
            assert rows.index.is_unique
            if len(rows):  # (killed before the first part: an empty dataset)
                pd.testing.assert_frame_equal(rows, reference.loc[rows.index], check_dtype=False)
            stored.append(len(rows))
    print(f"rows stored at the three kills: {stored}")  # which stage each kill hit varies with the machine

    done = subprocess.run(sweep(path, out), env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    final = read_results(out)
    assert final["point_id"].is_unique and len(final) == POINTS
    pd.testing.assert_frame_equal(comparable(final), reference, check_dtype=False)
    assert final["pareto"].equals(read_results(tmp_path / "reference")["pareto"])
    # the killed runs' temporaries (.part-*.tmp, ._sweep.*.tmp, ._pareto.*.tmp) and lock are gone after the rerun
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith("part-")) == ["_pareto.parquet", "_sweep.json"]


# ---------------------------------------------------------------------------------------------------------
# A full filesystem while parts are written (a real tmpfs where mounting is allowed, a simulated ENOSPC anywhere)

SMALL = """
name = "full"
models = ["mixbit_vit_test"]
points_per_part = 2

[grid]
target = ["zcu102", "kv260"]
rows = [8, 16]
bits = [[8, 8], [4, 4]]
"""
SMALL_POINTS = 8
PAGE_BYTES = 4096  # tmpfs allocates whole pages


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """A one-worker LocalCluster the in-process CLI runs reach with --scheduler (parts are written here)."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        yield cluster.scheduler_address


def cli_sweep(path: Path, out: Path, address: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(["sweep", str(path), "--out", str(out), "--scheduler", address, "--json"])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def contents(folder: Path) -> dict[str, bytes]:
    return {entry.name: entry.read_bytes() for entry in sorted(folder.iterdir())}


def assert_failed_on_a_full_disk(status: int, stdout: str, stderr: str, out: Path) -> None:
    assert (status, stdout) == (2, "")
    [line] = error_lines(stderr)  # the one error line is the last line (tqdm's bar may precede it)
    assert stderr.rstrip("\n").splitlines()[-1] == line
    assert line.startswith(f"error: --out: {out}: cannot write ") and ".parquet: " in line
    assert "No space left on device" in line


def test_disk_full_while_parts_are_written_keeps_the_stored_parts(
    tmp_path: Path, scheduler: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "full.toml"
    path.write_text(SMALL)
    out = tmp_path / "out"
    real_to_parquet = pd.DataFrame.to_parquet
    writes = {"left": 2}  # parts written before the disk fills

    def filling_to_parquet(frame: pd.DataFrame, where: Any, *args: Any, **kwargs: Any) -> Any:
        if writes["left"] == 0:  # half the part reaches the disk, then the write fails as a full disk does
            real_to_parquet(frame, where, *args, **kwargs)
            data = Path(where).read_bytes()
            Path(where).write_bytes(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        writes["left"] -= 1
        return real_to_parquet(frame, where, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", filling_to_parquet)
    assert_failed_on_a_full_disk(*cli_sweep(path, out, scheduler, capsys), out)
    stored = contents(out)
    assert sorted(stored) == ["_sweep.json", *sorted(p.name for p in out.glob("part-*.parquet"))]
    assert len(read_results(out)) == 4  # the two parts written before the disk filled, whole

    writes["left"] = 0  # the disk is still full: the next run fails at its first part and changes nothing
    assert_failed_on_a_full_disk(*cli_sweep(path, out, scheduler, capsys), out)
    assert contents(out) == stored

    monkeypatch.setattr(pd.DataFrame, "to_parquet", real_to_parquet)  # space again: the rerun completes
    status, stdout, _ = cli_sweep(path, out, scheduler, capsys)
    assert status == 0 and json.loads(stdout)["skipped"] == 4 and json.loads(stdout)["done"] == 4
    final = read_results(out)
    assert len(final) == SMALL_POINTS and final["point_id"].is_unique and final["pareto"].any()
    assert {name: data for name, data in contents(out).items() if name in stored} == stored
    assert not [p.name for p in out.iterdir() if p.name.startswith(".") or p.name.endswith(".tmp")]


@pytest.mark.slow  # three in-process sweeps on a real tmpfs: about 10 s
def test_real_full_filesystem_while_parts_are_written(
    tmp_path: Path, scheduler: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "full.toml"
    path.write_text(SMALL)
    with full_tmpfs(tmp_path / "mnt", size_kib=4096) as mount:
        (mount / "filler").unlink()
        out = mount / "out"
        status, _, stderr = cli_sweep(path, out, scheduler, capsys)
        assert status == 0, stderr
        reference = read_results(out)
        for part in sorted(out.glob("part-*.parquet"))[::2]:  # as if an earlier run had stopped half way
            part.unlink()
        (out / "_pareto.parquet").unlink()
        stored = contents(out)
        kept = len(read_results(out))
        assert 0 < kept < SMALL_POINTS

        filler = fill(mount)
        # one free page: the up-front --out probe passes (a full disk fails there already, see test_cli_args),
        # so the disk fills while a part (larger than a page) is written
        assert min(p.stat().st_size for p in out.glob("part-*.parquet")) > PAGE_BYTES
        os.truncate(filler, filler.stat().st_size - PAGE_BYTES)
        assert_failed_on_a_full_disk(*cli_sweep(path, out, scheduler, capsys), out)
        assert contents(out) == stored  # no half-written part, no temporary file, the stored parts byte-identical
        assert sorted(p.name for p in mount.iterdir()) == ["filler", "out"]

        filler.unlink()
        status, stdout, stderr = cli_sweep(path, out, scheduler, capsys)
        assert status == 0, stderr
        assert (json.loads(stdout)["skipped"], json.loads(stdout)["done"]) == (kept, SMALL_POINTS - kept)
        final = read_results(out)
        pd.testing.assert_frame_equal(comparable(final), comparable(reference), check_dtype=False)
        assert final["pareto"].equals(reference["pareto"])
        assert not [p.name for p in out.iterdir() if p.name.startswith(".") or p.name.endswith(".tmp")]
