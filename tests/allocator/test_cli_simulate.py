"""`mixbit simulate` through allocator.cli.main: JSON contract, table output, sources of workloads, errors."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from allocator.cli.main import main

LAYER_FIELDS = ["name", "kind", "m", "n", "k", "wbits", "abits", "compute_cycles", "stall_cycles", "cycles"]
# JSON additions of issue #16 (DRAM traffic, energy, fusion, fold pipelining), after the contract's fields
# and the per-layer dataflow (issue #18)
LAYER_ADDED = [
    "fused_cycles", "bytes_read", "bytes_written", "energy_mj", "unit", "fused_into", "busy_cycles", "dataflow",
]  # fmt: skip
TOP_FIELDS = ["target", "model", "clock_mhz", "cycles", "latency_ms", "fits", "resources"]
TOP_ADDED = ["bytes_read", "bytes_written", "energy_mj", "fold_pipelining"]


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main(["simulate", *argv, "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # one JSON object, nothing else on stdout
    return json.loads(out)


def test_gemm_json_ideal_memory_is_scalesim_closed_form(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "--target", "scalesim_32x32", "--gemm", "197,384,1152", "--ideal-memory")
    assert list(data) == [*TOP_FIELDS, *TOP_ADDED, "layers"]
    assert data["target"] == "scalesim_32x32"
    (layer,) = data["layers"]
    assert list(layer) == LAYER_FIELDS + LAYER_ADDED
    assert layer["compute_cycles"] == math.ceil(197 / 32) * math.ceil(384 / 32) * (1152 + 32 + 32 - 2)
    assert layer["stall_cycles"] == 0
    assert data["cycles"] == layer["cycles"] == layer["compute_cycles"]
    assert data["latency_ms"] == pytest.approx(data["cycles"] / 1e6)  # 1000 MHz
    assert set(data["resources"]) == {"dsp", "lut", "ff", "bram36", "uram"}
    assert isinstance(data["fits"], bool)


def test_overrides_and_stalls(capsys: pytest.CaptureFixture[str]) -> None:
    # SCALE-Sim's WS closed form: the scalesim reference keeps its timing (zcu102 pipelines folds since #16)
    args = ["--target", "scalesim_32x32", "--gemm", "64,96,200", "--rows", "8", "--cols", "16", "--dataflow", "ws"]
    ideal = run_json(capsys, *args, "--ideal-memory")
    real = run_json(capsys, *args)
    expected = math.ceil(200 / 8) * math.ceil(96 / 16) * (2 * 8 + 16 + 64 - 2)  # int8 PEs: p = 1
    assert ideal["layers"][0]["compute_cycles"] == expected
    assert real["cycles"] >= ideal["cycles"]
    assert real["layers"][0]["cycles"] == real["layers"][0]["compute_cycles"] + real["layers"][0]["stall_cycles"]


def test_bits_lower_cycles_on_packed_pes(capsys: pytest.CaptureFixture[str]) -> None:
    eight = run_json(capsys, "--target", "zcu102", "--gemm", "197,384,384", "--ideal-memory")
    four = run_json(capsys, "--target", "zcu102", "--gemm", "197,384,384", "--wbits", "4", "--abits", "4",
                    "--ideal-memory")  # fmt: skip
    assert four["layers"][0]["compute_cycles"] * 2 == pytest.approx(eight["layers"][0]["compute_cycles"], rel=0.1)
    assert (four["layers"][0]["wbits"], four["layers"][0]["abits"]) == (4, 4)


def test_topology_and_bit_plan(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    topo = tmp_path / "topo.csv"
    topo.write_text("Layer, M, N, K,\nqkv, 197, 1152, 384,\nproj, 197, 384, 384,\n")
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"model": "topo", "default": {"wbits": 8, "abits": 8},
                                "layers": {"qkv": {"wbits": 4, "abits": 4, "weight_kind": "uniform"}}}))  # fmt: skip
    data = run_json(capsys, "--target", "zcu104", "--topology", str(topo), "--bits", str(plan))
    assert [(row["name"], row["wbits"], row["abits"]) for row in data["layers"]] == [("qkv", 4, 4), ("proj", 8, 8)]
    assert data["cycles"] == sum(row["cycles"] for row in data["layers"])


def test_table_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--target", "ultra96v2", "--gemm", "50,64,64"]) == 0
    out = capsys.readouterr().out
    assert "gemm_50x64x64" in out and "16x16 OS array" in out
    for label in ("cycles", "latency", "utilisation", "resources", "fits"):
        assert f"\n{label}" in out


@pytest.mark.slow
def test_model_has_contract_layer_names(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "--target", "zcu102", "--model", "mixbit_vit_test", "--wbits", "4", "--abits", "8")
    names = [row["name"] for row in data["layers"]]
    for name in ("blocks.0.attn.qkv", "blocks.0.attn.matmul_qk", "blocks.0.attn.matmul_av", "blocks.1.mlp.fc2", "head"):
        assert name in names
    vector = [row for row in data["layers"] if row["m"] == 0]
    assert vector and all(row["wbits"] == 0 and row["stall_cycles"] == 0 for row in vector)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--target", "zcu102", "--gemm", "0,4,4"], "M=0"),
        (["--target", "zcu102", "--gemm", "4,4"], "three integers"),
        (["--target", "scalesim_32x32", "--gemm", "4,4,4", "--wbits", "4"], "wbits=4, abits=8 not supported"),
        (["--target", "zcu102", "--gemm", "4,4,4", "--rows", "0"], "rows"),
        (["--target", "no_such_board", "--gemm", "4,4,4"], "no_such_board"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    assert main(["simulate", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert message in captured.err


def test_bad_bit_plans(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    topo = tmp_path / "topo.csv"
    topo.write_text("Layer, M, N, K,\nfc1, 8, 8, 8,\nfc2, 8, 8, 8,\n")
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"layers": {"fc1": {"wbits": 4, "abits": 4}, "fc9": {"wbits": 4, "abits": 4}}}))
    missing = tmp_path / "missing.json"
    missing.write_text(json.dumps({"layers": {"fc1": {"wbits": 4, "abits": 4}}}))
    cases = ((unknown, ": layers.fc9: not a GEMM of the model"), (missing, ": layers.fc2: missing, and the plan"))
    for plan, message in cases:
        assert main(["simulate", "--target", "zcu102", "--topology", str(topo), "--bits", str(plan)]) == 2
        assert message in capsys.readouterr().err
    args = ["simulate", "--target", "zcu102", "--topology", str(topo), "--bits", str(missing), "--wbits", "4"]
    assert main(args) == 2
    assert "cannot be combined" in capsys.readouterr().err


# issue 15 items 4, 5, 7, 12, 17, 23 through the CLI (the library tests only assert the InputError)
TARGET_TEXT = (Path(__file__).parents[2] / "targets" / "zcu102.toml").read_text()
BINARY = bytes(range(256)) * 4
TOPOLOGY = "Layer, M, N, K,\nfc1, 8, 8, 8,\n"
PLAN = '{"model": "m", "default": {"wbits": 8, "abits": 8}, "layers": {}}'
HOSTILE_FILES: dict[str, tuple[dict[str, bytes], list[str], list[str]]] = {
    # id: (files to write, argv after `simulate` ({name} = the file's path), needles in the one error line)
    "int64 cycles 1e9": ({}, ["--gemm", "1000000000,1000000000,1000000000", "--ideal-memory"], ["64-bit cycle"]),
    "int64 cycles 3e9": ({}, ["--gemm", "3000000000,3000000000,3000000000", "--ideal-memory"], ["64-bit cycle"]),
    "huge gemm": ({}, ["--gemm", "100000000,100000000,1"], ["folds", "--ideal-memory"]),
    "near-zero bandwidth": (
        {"t.toml": TARGET_TEXT.replace("bandwidth_gbps = 19.2", "bandwidth_gbps = 1e-300").encode()},
        ["--target", "{t.toml}", "--gemm", "64,64,64"],
        ["memory.bandwidth_gbps", "at least 0.01"],
    ),
    "kib 0.0001": (
        {
            "t.toml": TARGET_TEXT.replace(
                'ofmap = { memory = "bram36", share = 0.1 }', 'ofmap = { memory = "bram36", kib = 0.0001 }'
            ).encode()
        },
        ["--target", "{t.toml}", "--gemm", "64,64,64"],
        ["accelerator.buffers.ofmap.kib: must be at least 1.0"],
    ),
    "target BOM": (
        {"t.toml": b"\xef\xbb\xbf" + TARGET_TEXT.encode()},
        ["--target", "{t.toml}", "--gemm", "8,8,8"],
        ["byte-order mark"],
    ),
    "binary target": ({"t.toml": BINARY}, ["--target", "{t.toml}", "--gemm", "8,8,8"], ["not UTF-8"]),
    "binary topology": ({"t.csv": BINARY}, ["--topology", "{t.csv}"], ["{t.csv}", "not UTF-8"]),
    "binary plan": (
        {"t.csv": TOPOLOGY.encode(), "p.json": BINARY},
        ["--topology", "{t.csv}", "--bits", "{p.json}"],
        ["{p.json}", "not UTF-8"],
    ),
    "deep plan": (
        {"t.csv": TOPOLOGY.encode(), "p.json": b"[" * 100_000},
        ["--topology", "{t.csv}", "--bits", "{p.json}"],
        ["{p.json}", "nested too deeply"],
    ),
    "duplicate plan key": (
        {"t.csv": TOPOLOGY.encode(), "p.json": PLAN.replace('"wbits": 8,', '"wbits": 8, "wbits": 4,').encode()},
        ["--topology", "{t.csv}", "--bits", "{p.json}"],
        ["{p.json}", "duplicate key"],
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_FILES))
def test_hostile_input_through_the_cli(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files, argv, needles = HOSTILE_FILES[case]
    paths = {f"{{{name}}}": str(tmp_path / name) for name in files}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)

    def filled(text: str) -> str:
        for key, path in paths.items():
            text = text.replace(key, path)
        return text

    argv = [filled(a) for a in argv]
    if "--target" not in argv:
        argv = ["--target", "zcu102", *argv]
    started = time.perf_counter()
    assert main(["simulate", *argv, "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith("error: ") and all(filled(n) in line for n in needles), line
    assert time.perf_counter() - started < 10
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files)  # nothing written


def test_table_and_json_say_where_each_gemm_runs_on_a_multi_engine_target(capsys: pytest.CaptureFixture[str]) -> None:
    target = str(Path(__file__).resolve().parents[2] / "targets" / "published" / "ubimoe_u280.toml")
    data = run_json(capsys, "--target", target, "--model", "deit_tiny_patch16_224")
    units = {layer["kind"]: layer["unit"] for layer in data["layers"] if layer["m"]}
    assert units == {
        "patch_embed": "", "qkv": "msa_linear", "attn_qk": "attention", "attn_av": "attention", "proj": "msa_linear",
        "fc1": "", "fc2": "", "head": "",
    }  # fmt: skip
    assert main(["simulate", "--target", target, "--model", "deit_tiny_patch16_224"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].endswith(" on")
    rows = {line.split()[0]: line.split()[-1] for line in lines if line.startswith("blocks.0.")}
    assert rows["blocks.0.attn.qkv"] == "msa_linear" and rows["blocks.0.attn.matmul_qk"] == "attention"
    assert rows["blocks.0.mlp.fc1"] == "array"
    assert main(["simulate", "--target", "zcu102", "--gemm", "8,8,8"]) == 0
    assert not capsys.readouterr().out.splitlines()[2].endswith(" on")  # one array: no column
