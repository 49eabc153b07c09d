"""Every file reader (target, bit plan, sweep, topology) fed random bytes and random TOML/JSON/CSV structures:
each returns a valid result or raises one clean ``InputError`` (one line, naming the file), never another
exception (issue #15, "Measured when done"). Also the shared reader's own cases (sim/schema.py)."""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allocator.bridge import read_bit_plan
from allocator.sweep import load_sweep
from sim.errors import InputError
from sim.plan import read_plan
from sim.schema import MAX_DEPTH, read_json, read_toml
from sim.target_file import load_target
from sim.workload import Workload

TARGET = (Path(__file__).parents[2] / "targets" / "zcu102.toml").read_text()
SWEEP = 'models = ["tiny"]\npoints_per_part = 3\n[grid]\ntarget = ["zcu102"]\nrows = [16, 32]\nbits = [[8, 8]]\n'
PLAN = json.dumps({"model": "m", "default": {"wbits": 8, "abits": 8}, "layers": {"head": {"wbits": 4, "abits": 6}}})
TOPOLOGY = "Layer, M, N, K,\nfc1, 197, 384, 1152,\nfc2, 197, 1152, 384,\n"

READERS: dict[str, tuple[str, Callable[[Path], Any]]] = {
    "target": (".toml", load_target),
    "sweep": (".toml", load_sweep),
    "plan": (".json", read_bit_plan),
    "plan_sim": (".json", read_plan),
    "topology": (".csv", Workload.from_topology_csv),
}
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_reader(kind: str, data: bytes) -> None:
    """The reader of ``kind`` on ``data`` returns, or raises one clean InputError naming the file."""
    suffix, reader = READERS[kind]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzz{suffix}"
        path.write_bytes(data)
        try:
            reader(path)
        except InputError as exc:
            message = str(exc)
            assert "\n" not in message and message.startswith(str(path)), message
            assert "Traceback" not in message


# --- random TOML and JSON structures ------------------------------------------------------------------------

KEYS = st.sampled_from(
    ["models", "grid", "point", "target", "rows", "cols", "dataflow", "bits", "description", "clock_mhz",
     "device", "memory", "accelerator", "caps", "kind", "source", "source_rows", "layers", "default", "wbits",
     "abits", "model", "note", "kib", "share", "buffers", "ifmap", "lut", "bandwidth_gbps", "x"]
)  # fmt: skip
SCALARS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.booleans(),
    st.sampled_from(["zcu102", "os", "ws", "fpga", "asic", "ddr4", "bram36", "dsp_packed", "uniform", "log2"]),
)
STRUCTURES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=5),
    max_leaves=20,
)
TOP = st.dictionaries(KEYS, STRUCTURES, max_size=8)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"


def to_toml(table: dict[str, Any]) -> str:
    """TOML of a random structure: scalars and lists at the top, sub-tables as [headers] (one level)."""
    lines = [f"{k} = {toml_value(v)}" for k, v in table.items() if not isinstance(v, dict)]
    for key, value in table.items():
        if isinstance(value, dict):
            lines.append(f"[{key}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in value.items()]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("kind", sorted(READERS))
@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes(kind: str, data: bytes) -> None:
    check_reader(kind, data)


@pytest.mark.parametrize("kind", ["target", "sweep"])
@FUZZ
@given(table=TOP)
def test_random_toml_structures(kind: str, table: dict[str, Any]) -> None:
    check_reader(kind, to_toml(table).encode())


@pytest.mark.parametrize("kind", ["plan", "plan_sim"])
@FUZZ
@given(value=STRUCTURES)
def test_random_json_structures(kind: str, value: Any) -> None:
    check_reader(kind, json.dumps(value).encode())


@FUZZ
@given(
    rows=st.lists(
        st.lists(st.one_of(st.text(max_size=6), st.integers(-5, 10**15).map(str)), min_size=0, max_size=6),
        max_size=6,
    )
)
def test_random_csv_structures(rows: list[list[str]]) -> None:
    text = "\n".join(", ".join(row) + "," for row in rows)
    check_reader("topology", text.encode("utf-8", "replace"))


GOOD = {"target": TARGET, "sweep": SWEEP, "plan": PLAN, "plan_sim": PLAN, "topology": TOPOLOGY}
TOKENS = st.sampled_from(
    ["0", "-1", "1e308", "1e-300", "nan", "inf", '""', '"x"', "[]", "{}", "true", "9" * 30, "[[[[1]]]]", "=", "\ufeff",
     "0.0001", "{ kib = 1 }", '"ws"', "7", "[7, 8]", "\\", "#", "\n[x]\n", ","]
)  # fmt: skip


@pytest.mark.parametrize("kind", sorted(READERS))
@FUZZ
@given(data=st.data())
def test_a_valid_file_with_one_token_replaced(kind: str, data: st.DataObject) -> None:
    good = GOOD[kind]
    start = data.draw(st.integers(0, len(good)))
    end = data.draw(st.integers(start, min(len(good), start + 12)))
    text = good[:start] + data.draw(TOKENS) + good[end:]
    check_reader(kind, text.encode())


@pytest.mark.parametrize("kind", sorted(READERS))
def test_every_good_file_reads(kind: str) -> None:
    suffix, reader = READERS[kind]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"good{suffix}"
        path.write_text(GOOD[kind])
        assert reader(path) is not None


# --- the shared reader ----------------------------------------------------------------------------------------


def test_deep_toml_is_one_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.toml"
    path.write_text("a = " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(InputError, match=r"deep\.toml: "):
        read_toml(path, "target")


def test_json_at_the_depth_limit_reads(tmp_path: Path) -> None:
    path = tmp_path / "ok.json"
    path.write_text("[" * MAX_DEPTH + "]" * MAX_DEPTH)
    assert read_json(path, "bit plan") is not None


def test_a_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such bit plan file"):
        read_json(tmp_path, "bit plan")
