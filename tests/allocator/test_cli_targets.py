"""`mixbit targets`: the table, the --json object, one target in detail, and the error contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from allocator.cli.main import main
from sim import estimate_resources, list_targets, load_target


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_table_lists_every_shipped_target(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "targets")
    assert status == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split()[:6] == ["target", "part", "MHz", "array", "df", "pe"]
    body = {line.split()[0]: line for line in lines[2:] if line and not line.startswith(("LUT", "resource"))}
    assert sorted(body) == list_targets()
    assert "XCZU9EG-2FFVB1156E" in body["zcu102"] and "28x48" in body["zcu102"] and "274,080" in body["zcu102"]
    assert "112 KiB" in body["bitfusion_16x32"]
    assert all(line.rstrip().endswith("yes") for line in body.values())


def test_json_is_one_object_with_every_target(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "targets", "--json")
    assert status == 0 and err == ""
    payload = json.loads(out)
    assert list(payload) == ["targets"]
    rows = {row["name"]: row for row in payload["targets"]}
    assert sorted(rows) == list_targets()
    zcu102 = rows["zcu102"]
    assert (zcu102["rows"], zcu102["cols"], zcu102["dataflow"], zcu102["pe"]) == (28, 48, "os", "dsp_packed")
    assert zcu102["device"] == {"dsp": 2520, "lut": 274080, "ff": 548160, "bram36": 912, "uram": 0}
    assert zcu102["resources"] == estimate_resources(load_target("zcu102")).to_dict()
    assert zcu102["memory"]["bandwidth_gbps"] == 19.2 and zcu102["fits"] is True
    assert set(zcu102["utilisation"]) == {"dsp", "lut", "ff", "bram36", "uram"}
    assert rows["scalesim_32x32"]["utilisation"] == {"sram": 1.0}
    for row in rows.values():
        assert set(row["resources"]) == {"dsp", "lut", "ff", "bram36", "uram"}
        assert all(isinstance(v, int) for v in row["resources"].values())


def test_one_target_in_detail(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "targets", "u250")
    assert status == 0
    assert "memory_interface" in out and "accumulators" in out
    assert "memory.bandwidth_gbps: DS962" in out


def test_one_target_json_carries_breakdown_and_sources(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "targets", "kv260", "--json")
    assert status == 0
    (row,) = json.loads(out)["targets"]
    assert [part["component"] for part in row["breakdown"]] == [
        "array",
        "accumulators",
        "buffers",
        "vector_unit",
        "nonlinear_units",
        "memory_interface",
        "control",
    ]
    assert sum(part["lut"] for part in row["breakdown"]) == row["resources"]["lut"]
    assert row["sources"]["device.dsp"].startswith("DS987")


def test_target_file_by_path(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(load_target("ultra96v2").path.read_text())
    status, out, _ = run(capsys, "targets", str(path), "--json")
    assert status == 0
    assert json.loads(out)["targets"][0]["name"] == "mine"


def test_unknown_target_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "targets", "zcu999")
    assert status == 2 and out == ""
    assert err.startswith("error: unknown target 'zcu999'; known targets: bitfusion_16x32")
    assert len(err.strip().splitlines()) == 1


def test_bad_target_file_exits_2_naming_file_key_and_reason(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(load_target("zcu104").path.read_text().replace("rows = 24", "rows = 96"))
    status, out, err = run(capsys, "targets", str(path), "--json")
    assert status == 2 and out == ""
    assert err.strip() == (
        f"error: {path}: accelerator.rows: the 96x48 dsp_packed accelerator needs 4,696 DSP (array: 4,608), "
        "the device XCZU7EV-2FFVC1156E has 1,728"
    )


def test_malformed_target_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("clock_mhz = = 3\n")
    status, _, err = run(capsys, "targets", str(path))
    assert status == 2
    assert err.startswith(f"error: {path}: clock_mhz: malformed TOML") and len(err.strip().splitlines()) == 1


def test_unknown_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["targets", "--no-such-flag"]) == 2
    err = capsys.readouterr().err
    assert err == "error: unrecognized arguments: --no-such-flag\n"  # one line, no usage block


# Issue 3's bad-file cases through the CLI: each exits 2 with one line naming the file, the key and the reason.
BAD_FILES = [
    ("malformed TOML", "rows = 16\n", "rows = 16 16\n", "accelerator.rows: malformed TOML"),
    ("duplicate key", "cols = 16\n", "cols = 16\ncols = 8\n", "accelerator.cols: duplicate key"),
    ("unknown key", "cols = 16\n", "cols = 16\ncolumns = 8\n", "accelerator.columns: unknown key"),
    ("missing key", "dsp = 360\n", "", "device.dsp: missing key"),
    ("wrong type", "dsp = 360\n", 'dsp = "lots"\n', "device.dsp: expected an integer, got a string"),
    ("zero budget", "bram36 = 216\n", "bram36 = 0\n", "device.bram36: must be positive, got 0"),
    (
        "negative budget",
        "bandwidth_gbps = 8.5\n",
        "bandwidth_gbps = -8.5\n",
        "memory.bandwidth_gbps: must be at least 0.01",
    ),
    ("unsupported bits", "act_bits = [2, 3, 4, 5, 6, 8]", "act_bits = [2, 7]", "accelerator.act_bits: unsupported"),
    ("missing source", "source_clock_mhz =", "# source_clock_mhz =", "clock_mhz: missing source"),
    ("too many DSPs", "rows = 16\n", "rows = 64\n", "accelerator.rows: the 64x16 dsp_packed accelerator needs"),
    ("too many BRAM36", "share = 0.25 }", "share = 0.9 }", "accelerator.buffers: the 16x16 dsp_packed accelerator"),
]


@pytest.mark.parametrize(("case", "old", "new", "expected"), BAD_FILES, ids=[case[0] for case in BAD_FILES])
def test_bad_target_files_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, case: str, old: str, new: str, expected: str
) -> None:
    text = load_target("ultra96v2").path.read_text()
    assert text.count(old) == 1, case
    path = tmp_path / "bad.toml"
    path.write_text(text.replace(old, new))
    status, out, err = run(capsys, "targets", str(path), "--json")
    assert status == 2 and out == ""
    assert err.startswith(f"error: {path}: {expected}"), err
    assert len(err.splitlines()) == 1
