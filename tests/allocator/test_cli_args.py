"""CLI hardening (issue #15): one `error:` line naming the flag, exit status 2, bounds on every count flag,
output paths checked before any work, odd numerals, and a stdout that cannot take the output.

Each case asserts the exit status, that stderr is exactly one line starting ``error:``, and what is left behind.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from mounts import full_tmpfs, readonly_tmpfs

from allocator.cli.main import main

REPO = Path(__file__).resolve().parents[2]
SIM = ["simulate", "--target", "zcu102"]
ALLOC = ["allocate", "--target", "zcu102", "--model", "mixbit_vit_digits"]
VERIFY = ["verify", "--model", "m", "--bits", "p.json"]
EXPORT = ["export", "--model", "m", "--bits", "p.json", "--format", "npz", "--out", "o"]


def one_error(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert captured.out == ""
    return lines[0]


def run_cli(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    code = "import sys; from allocator.cli.main import main; raise SystemExit(main(sys.argv[1:]))"
    kwargs.setdefault("capture_output", True)
    return subprocess.run([sys.executable, "-c", code, *args], text=True, env=env, cwd=REPO, **kwargs)


# item 20: argparse errors are one line naming the flag; --help stays as it is
@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        ([*SIM, "--gemm", "-1,1,1"], ("--gemm", "M=-1")),
        ([*SIM, "--gemm", "1,-2,1"], ("--gemm", "N=-2")),
        ([*SIM, "--gemm"], ("argument --gemm", "expected one argument")),
        ([*SIM, "--gemm", "1,1,1", "--dataflow", "xx"], ("argument --dataflow", "invalid choice")),
        (["simulate", "--gemm", "1,1,1"], ("required", "--target")),
        ([*SIM, "--gemm", "1,1,1", "--model", "m"], ("--model", "not allowed with argument --gemm")),
        (["allocate", "--target", "zcu102"], ("required", "--model")),
        (["nosuchcommand"], ("invalid choice", "nosuchcommand")),
        ([*ALLOC, "--no-such-flag"], ("unrecognized arguments", "--no-such-flag")),
        ([*ALLOC, "--latency-of", "W9"], ("argument --latency-of", "W4A4")),
    ],
)
def test_usage_errors_are_one_line_naming_the_flag(
    argv: list[str], needles: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    one_error(capsys, *needles)


def test_help_is_unchanged(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: mixbit simulate") and "--ideal-memory" in out


# items 9 and 22: every count and size flag is bounded, and the error names it
@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        ([*ALLOC, "--sensitivity-images", "-5"], "--sensitivity-images"),
        ([*ALLOC, "--sensitivity-images", "0"], "--sensitivity-images"),
        ([*ALLOC, "--pareto-points", "-5"], "--pareto-points"),
        ([*ALLOC, "--pareto-points", "1000001"], "--pareto-points"),
        ([*ALLOC, "--draws", "0"], "--draws"),
        ([*ALLOC, "--quadratic-draws", "-1"], "--quadratic-draws"),
        ([*ALLOC, "--seed", "-1"], "--seed"),
        ([*ALLOC, "--seed", "99999999999999999999"], "--seed"),
        ([*ALLOC, "--latency-ms", "-1"], "--latency-ms"),
        ([*ALLOC, "--latency-ms", "0"], "--latency-ms"),
        ([*ALLOC, "--size-mb", "nan"], "--size-mb"),
        ([*ALLOC, "--bops", "inf"], "--bops"),
        ([*ALLOC, "--act-kind", "wat"], "--act-kind"),
        (["verify", "--model", "m", "--bits", "p.json", "--images", "-1"], "--images"),
        (["verify", "--model", "m", "--bits", "p.json", "--calibration", "0"], "--calibration"),
        (["verify", "--model", "m", "--bits", "p.json", "--seed", "-3"], "--seed"),
        (["train", "--epochs", "0"], "--epochs"),
        (["train", "--epochs", "-5"], "--epochs"),
        (["train", "--seed", "x"], "--seed"),
        (["sweep", "s.toml", "--workers", "0"], "--workers"),
        (["sweep", "s.toml", "--workers", "100000"], "--workers"),
        ([*SIM, "--gemm", "1,1,1", "--rows", "0"], "--rows"),
        ([*SIM, "--gemm", "1,1,1", "--cols", "5000"], "--cols"),
        ([*SIM, "--gemm", "1,1,1", "--wbits", "-8"], "--wbits"),
        ([*SIM, "--gemm", "1,1,1", "--abits", "٣"], "--abits"),  # an Arabic-Indic three: int() would take it
        # every count and size flag of every command (issue 15 audit: these were unbounded or untested)
        ([*ALLOC, "--eval-images", "-1"], "--eval-images"),
        ([*ALLOC, "--eval-images", "1000000001"], "--eval-images"),
        ([*ALLOC, "--synthetic-images", "0"], "--synthetic-images"),
        ([*ALLOC, "--synthetic-images", "10001"], "--synthetic-images"),
        ([*ALLOC, "--synthetic-steps", "-1"], "--synthetic-steps"),
        ([*ALLOC, "--synthetic-steps", "99999999999999999999"], "--synthetic-steps"),
        ([*ALLOC, "--crop-pct", "0"], "--crop-pct"),
        ([*ALLOC, "--crop-pct", "1.5"], "--crop-pct"),
        ([*ALLOC, "--crop-pct", "nan"], "--crop-pct"),
        ([*ALLOC, "--mean", "nan,0,0"], "--mean"),
        ([*ALLOC, "--std", "0.2,0,0.2"], "--std"),
        ([*ALLOC, "--std", "inf"], "--std"),
        ([*VERIFY, "--images", "1000000001"], "--images"),
        ([*VERIFY, "--eval-images", "0"], "--eval-images"),
        ([*VERIFY, "--seed", "4294967296"], "--seed"),
        (["train", "--batch-size", "0"], "--batch-size"),
        (["train", "--batch-size", "1000001"], "--batch-size"),
        (["train", "--seed", "-1"], "--seed"),
        (["train", "--seed", "99999999999999999999"], "--seed"),
        (["train", "--lr", "nan"], "--lr"),
        (["train", "--lr", "inf"], "--lr"),
        (["train", "--lr", "-0.001"], "--lr"),
        (["train", "--lr", "0"], "--lr"),
        (["train", "--lr", "11"], "--lr"),
        (["train", "--eval-images", "-3"], "--eval-images"),
        (["train", "--channels", "2"], "--channels"),
        ([*EXPORT, "--seed", "99999999999999999999"], "--seed"),  # was a ValueError traceback, exit 1
        ([*EXPORT, "--seed", "-1"], "--seed"),
        ([*EXPORT, "--images", "0"], "--images"),
        ([*EXPORT, "--images", "-5"], "--images"),
        ([*EXPORT, "--images", "1000000001"], "--images"),
        ([*EXPORT, "--calibration", "0"], "--calibration"),
        ([*EXPORT, "--calibration", "99999999999999999999"], "--calibration"),
    ],
)
def test_count_and_size_flags_are_bounded(argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    one_error(capsys, f"argument {flag}:")


@pytest.mark.parametrize(("size", "needle"), [("0", "positive"), ("-5", "positive"), ("2", "patch size"),
                                             ("5000", "larger than 4096")])  # fmt: skip
def test_train_img_size_is_bounded_before_training(
    tmp_path: Path, size: str, needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Item 15 for train (allocate's cases are in test_cli_data.py): refused before any training, no --out."""
    out = tmp_path / "model.pt"
    assert main(["train", "--img-size", size, "--epochs", "1", "--out", str(out)]) == 2
    one_error(capsys, "--img-size", needle)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("size", ["0", "-5", "2", "5000"])
def test_verify_img_size_is_bounded_before_work(tmp_path: Path, size: str, capsys: pytest.CaptureFixture[str]) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"model": "mixbit_vit_test", "default": {"wbits": 8, "abits": 8}}))
    assert main(["verify", "--model", "mixbit_vit_test", "--bits", str(plan), "--img-size", size, "--json"]) == 2
    one_error(capsys, "--img-size")


@pytest.mark.parametrize("command", ["verify", "train"])
@pytest.mark.parametrize("content", [b"not a checkpoint\n", bytes(range(256)) * 8], ids=["text", "random"])
def test_corrupt_checkpoint_in_verify_and_train(
    tmp_path: Path, command: str, content: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    """Item 16 for the commands other than allocate (they share the loader)."""
    bad = tmp_path / "bad.pt"
    bad.write_bytes(content)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"model": "mixbit_vit_test", "default": {"wbits": 8, "abits": 8}}))
    argv = {
        "verify": ["verify", "--model", "mixbit_vit_test", "--bits", str(plan)],
        "train": ["train", "--model", "mixbit_vit_test", "--epochs", "1", "--out", str(tmp_path / "m.pt")],
    }[command]
    assert main([*argv, "--checkpoint", str(bad)]) == 2
    one_error(capsys, str(bad), "checkpoint")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt", "plan.json"]


def test_act_kind_error_lists_every_kind_with_auto(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*ALLOC, "--act-kind", "wat"]) == 2
    one_error(capsys, "--act-kind", "'wat'", "uniform", "log2", "auto")


# item 13: odd numerals
@pytest.mark.parametrize(
    ("gemm", "needle"),
    [
        ("²,1,1", "expected three integers"),
        ("1.5,1,1", "expected three integers"),
        ("0x10,1,1", "expected three integers"),
        ("12345678901234567890,1,1", "64-bit"),
        ("1,1,99999999999999999999999999", "64-bit"),
    ],
)
def test_odd_numerals_in_gemm(gemm: str, needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*SIM, "--gemm", gemm]) == 2
    one_error(capsys, needle)


def test_huge_number_in_a_topology_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    topology = tmp_path / "topo.csv"
    topology.write_text("Layer, M, N, K,\nbig, 99999999999999999999999, 64, 64,\n")
    assert main([*SIM, "--topology", str(topology)]) == 2
    one_error(capsys)


# item 14: never half a JSON object on stdout
def test_targets_json_with_an_unrepresentable_bandwidth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (REPO / "targets" / "zcu102.toml").read_text()
    lines = [("bandwidth_gbps = 1e308" if line.startswith("bandwidth_gbps") else line) for line in text.splitlines()]
    board = tmp_path / "fast.toml"
    board.write_text("\n".join(lines) + "\n")
    assert main(["targets", str(board), "--json"]) == 2
    one_error(capsys)  # and stdout stays empty: not half an object


# items 11 and 23: unusable output paths are found before any work
@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "a_file"
    path.write_text("x")
    return path


def bad_outputs(a_file: Path) -> list[tuple[str, str]]:
    return [
        (str(a_file / "out"), "is a file, not a folder"),
        ("", "empty path"),
        ("/proc/mixbit_out", "cannot write in /proc"),
    ]


@pytest.mark.parametrize("case", range(3))
def test_allocate_out_checked_before_work(
    case: int, a_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, needle = bad_outputs(a_file)[case]
    # text mode: a progress line before the error would show that work had started
    assert main([*ALLOC, "--out", out]) == 2
    one_error(capsys, "--out", needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_allocate_out_into_a_folder_of_other_files_is_refused(tmp_path: Path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    assert main([*ALLOC, "--out", str(tmp_path)]) == 2
    one_error(capsys, "--out", "notes.txt", "did not write")
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("case", range(3))
def test_train_out_checked_before_work(case: int, a_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, needle = bad_outputs(a_file)[case]
    assert main(["train", "--epochs", "1", "--out", out]) == 2
    one_error(capsys, "--out", needle)


def test_train_out_is_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--epochs", "1", "--out", str(tmp_path)]) == 2
    one_error(capsys, "--out", "is a folder")


@pytest.mark.parametrize("case", range(3))
def test_sweep_out_checked_before_work(
    case: int, a_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = tmp_path / "s.toml"
    sweep.write_text('models = ["mixbit_vit_test"]\n[grid]\ntarget = ["zcu102"]\n')
    out, needle = bad_outputs(a_file)[case]
    assert main(["sweep", str(sweep), "--out", out]) == 2
    one_error(capsys, "--out", needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "s.toml"]


def test_outputs_on_full_and_readonly_filesystems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep = tmp_path / "s.toml"
    sweep.write_text('models = ["mixbit_vit_test"]\n[grid]\ntarget = ["zcu102"]\n')
    for mount, reason in ((full_tmpfs, "No space left on device"), (readonly_tmpfs, "Read-only file system")):
        with mount(tmp_path / "mnt") as where:
            before = sorted(p.name for p in where.iterdir())
            for argv in (
                [*ALLOC, "--out", str(where / "res")],
                ["train", "--epochs", "1", "--out", str(where / "model.pt")],
                ["sweep", str(sweep), "--out", str(where / "s.parquet")],
            ):
                assert main(argv) == 2
                one_error(capsys, "--out", reason)
            assert sorted(p.name for p in where.iterdir()) == before


def test_allocate_out_an_existing_file_is_refused_before_work(
    a_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Item 11: ``--out FILE`` was checked only after the whole pipeline; now before (one line, no progress)."""
    assert main([*ALLOC, "--out", str(a_file)]) == 2
    one_error(capsys, "--out", str(a_file), "exists and is not a folder")
    assert a_file.read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def simulated_filesystem(monkeypatch: pytest.MonkeyPatch, where: Path, code: int) -> None:
    """Make ``where`` behave as a read-only filesystem (EROFS: opening for writing fails) or a full one (ENOSPC:
    files open, every write fails, as on /dev/full), for tests that run where a tmpfs cannot be mounted."""
    real_open = os.open
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT

    def faulty_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        named = isinstance(path, str | bytes | os.PathLike)  # (not a descriptor-relative open)
        inside = named and Path(os.fsdecode(path)).resolve().is_relative_to(where)
        if inside and flags & writing:
            if code == errno.EROFS:
                raise OSError(code, os.strerror(code), os.fsdecode(path))
            return real_open("/dev/full", os.O_WRONLY)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", faulty_open)


@pytest.mark.parametrize(("code", "reason"), [(errno.EROFS, "Read-only file system"),
                                              (errno.ENOSPC, "No space left on device")])  # fmt: skip
def test_outputs_on_simulated_full_and_readonly_filesystems(
    code: int, reason: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cases of test_outputs_on_full_and_readonly_filesystems where mounting is not allowed."""
    sweep = tmp_path / "s.toml"
    sweep.write_text('models = ["mixbit_vit_test"]\n[grid]\ntarget = ["zcu102"]\n')
    where = (tmp_path / "fs").resolve()
    where.mkdir()
    (where / "old").mkdir()
    simulated_filesystem(monkeypatch, where, code)
    for argv in (
        [*ALLOC, "--out", str(where / "res")],
        [*ALLOC, "--out", str(where / "old")],  # an existing (empty) result folder
        ["train", "--epochs", "1", "--out", str(where / "model.pt")],
        ["sweep", str(sweep), "--out", str(where / "s.parquet")],
        ["sweep", str(sweep), "--out", str(where / "old")],
    ):
        assert main(argv) == 2
        one_error(capsys, "--out", reason)
        assert sorted(p.name for p in where.iterdir()) == ["old"] and not list((where / "old").iterdir())


@pytest.mark.parametrize("command", ["allocate", "sweep", "train"])
@pytest.mark.parametrize("stdout", ["/dev/full", "closed"])
def test_unusable_stdout_is_refused_before_work(command: str, stdout: str, tmp_path: Path) -> None:
    """Items 11 and 23 for the commands that work: refused at once, nothing written to --out."""
    sweep = tmp_path / "s.toml"
    sweep.write_text('models = ["mixbit_vit_test"]\n[grid]\ntarget = ["zcu102"]\n')
    out = tmp_path / "out"
    argv = {
        "allocate": [*ALLOC, "--out", str(out), "--json"],
        "sweep": ["sweep", str(sweep), "--out", str(out), "--json"],
        "train": ["train", "--epochs", "1", "--out", str(out / "model.pt"), "--json"],
    }[command]
    code = "import sys; from allocator.cli.main import main; raise SystemExit(main(sys.argv[1:]))"
    redirect = ">/dev/full" if stdout == "/dev/full" else ">&-"
    started = time.perf_counter()
    done = subprocess.run(
        f"exec {shlex.join([sys.executable, '-c', code, *argv])} {redirect}",
        shell=True,
        text=True,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
        timeout=60,
    )
    expected = {"/dev/full": "error: cannot write to stdout: No space left on device",
                "closed": "error: stdout is closed; nothing could be printed"}[stdout]  # fmt: skip
    assert (done.returncode, done.stderr.splitlines()) == (2, [expected])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.toml"]  # no --out: refused before any work
    assert time.perf_counter() - started < 20  # an import, not a training run or a sweep


def test_stdout_on_dev_full_is_an_error() -> None:
    with open("/dev/full", "w") as full:
        done = run_cli("targets", "--json", stdout=full, stderr=subprocess.PIPE, capture_output=False)
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["error: cannot write to stdout: No space left on device"]


def test_closed_stdout_is_an_error_before_work() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    code = "import sys; from allocator.cli.main import main; raise SystemExit(main(sys.argv[1:]))"
    done = subprocess.run(
        f'exec {sys.executable} -c "{code}" targets --json >&-',
        shell=True,
        text=True,
        stderr=subprocess.PIPE,
        env=env,
        cwd=REPO,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["error: stdout is closed; nothing could be printed"]


def test_stdout_text_is_whole_or_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["targets", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert {t["name"] for t in obj["targets"]} >= {"zcu102", "kv260"}


# item 24: text mode validates before printing progress
def test_allocate_text_mode_prints_no_progress_before_a_late_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*ALLOC, "--latency-ms", "0.000001", "--pareto-points", "0"]) == 2
    one_error(capsys, "latency", "cannot be met")
    assert main([*ALLOC, "--energy-mj", "0.000001", "--pareto-points", "0"]) == 2
    one_error(capsys, "energy 1e-06 mJ cannot be met; the least-energy plan takes")
    assert main([*ALLOC, "--latency-of", "W7A7"]) == 2
    one_error(capsys, "--latency-of W7A7")


def _option(command: str, flag: str) -> argparse.Action:
    from allocator.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return next(a for a in sub.choices[command]._actions if flag in a.option_strings)


# the shared flag helpers of allocator.cli.args keep what each command's own copy said
@pytest.mark.parametrize(
    ("command", "flag", "default", "help_has"),
    [
        ("allocate", "--dataflow", None, "the allocator picks each layer's dataflow with its bits"),
        ("simulate", "--dataflow", None, "each layer runs in its fastest (or the one a --bits plan names)"),
        ("allocate", "--seed", 0, None),
        ("train", "--seed", 0, "seed for initial weights, batch order and split"),
        ("verify", "--seed", 0, "data split and random-weight seed"),
        ("export", "--images", 50, "test images the check runs on (default 50)"),
        ("verify", "--images", 200, "test images compared (default 200)"),
        ("export", "--calibration", 256, "training images to calibrate on (default 256)"),
        ("verify", "--calibration", 256, "training images to calibrate on"),
    ],
)
def test_shared_flags_keep_each_commands_help_and_default(
    command: str, flag: str, default: object, help_has: str | None
) -> None:
    action = _option(command, flag)
    assert action.default == default
    if help_has is None:
        assert action.help is None
    else:
        assert action.help is not None and help_has in action.help
    if flag == "--dataflow":
        assert action.choices == ("os", "ws", "is", "per-layer")
        assert action.help.startswith("override the array's dataflow; per-layer: ")


@pytest.mark.parametrize(
    "argv",
    [
        [*ALLOC, "--dataflow", "rs"],
        ["simulate", "--target", "zcu102", "--gemm", "4,4,4", "--dataflow", "rs"],
    ],
)
def test_dataflow_is_refused_alike_in_allocate_and_simulate(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    one_error(capsys, "argument --dataflow", "invalid choice: 'rs'")
