"""Target files: every shipped target loads and cites a source for each number; bad files give one-line errors
naming the file, the key and the reason."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

import sim.target_file
from sim import InputError, Target, estimate_resources, list_targets, load_target
from sim.target import BRAM36_BYTES, SUPPORTED_BITS, URAM_BYTES

SHIPPED = [
    "bitfusion_16x32",
    "kv260",
    "pynq_z2",
    "scalesim_32x32",
    "u250",
    "u280",
    "ultra96v2",
    "vck190",
    "zcu102",
    "zcu104",
]

# A small valid FPGA target: each bad-file test changes one thing in it.
GOOD = """\
description = "test board"
clock_mhz = 200
source_clock_mhz = "assumption: test"

[device]
part = "XCZU3EG"
lut = 70560
ff = 141120
dsp = 360
bram36 = 216
uram = 0
source = "DS891"

[caps]
lut = 0.7
ff = 0.5
dsp = 0.8
bram36 = 0.8
uram = 0.8
source = "FINN DEFAULT_RES_LIMITS"

[memory]
kind = "ddr4"
bandwidth_gbps = 19.2
source = "assumption: test"

[accelerator]
rows = 8
cols = 16
dataflow = "os"
pe = "dsp_packed"
weight_bits = [4, 8]
act_bits = [8]
vector_lanes = 4
source = "assumption: test"

[accelerator.buffers]
ifmap = { memory = "bram36", kib = 64 }
filter = { memory = "bram36", share = 0.25 }
ofmap = { memory = "bram36", kib = 32 }
source = "assumption: test"
"""


def write(tmp_path: Path, text: str, name: str = "board.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load_error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(InputError) as exc:
        load_target(path)
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith(str(path)), message
    return message


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


# --- shipped targets ---------------------------------------------------------------------------------------


def test_list_targets_names_every_shipped_file() -> None:
    assert list_targets() == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_target_loads_into_frozen_objects(name: str) -> None:
    target = load_target(name)
    assert isinstance(target, Target)
    assert target.name == name
    assert target.clock_mhz > 0 and target.memory.bandwidth_gbps > 0
    assert set(target.accelerator.weight_bits) <= set(SUPPORTED_BITS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        target.clock_mhz = 1.0  # type: ignore[misc]
    assert load_target(name) is target  # shipped targets are parsed once


@pytest.mark.parametrize("name", SHIPPED)
def test_every_number_in_a_shipped_file_has_a_source(name: str) -> None:
    target = load_target(name)
    raw = tomllib.loads(target.path.read_text())
    numbers: list[str] = []

    def walk(table: dict, prefix: str) -> None:
        for key, value in table.items():
            if isinstance(value, dict):
                if any(isinstance(v, int | float) for v in value.values()) and prefix == "accelerator.buffers.":
                    numbers.append(prefix + key)
                else:
                    walk(value, f"{prefix}{key}.")
            elif isinstance(value, int | float | list) and not isinstance(value, bool):
                numbers.append(prefix + key)

    walk(raw, "")
    sources = dict(target.sources)
    missing = [key for key in numbers if not sources.get(key, "").strip()]
    assert numbers and not missing


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_accelerator_fits_under_its_caps(name: str) -> None:
    assert estimate_resources(load_target(name)).fits


def test_load_by_path_equals_load_by_name() -> None:
    by_name = load_target("zcu102")
    by_path = load_target(str(by_name.path))
    assert by_path == by_name


def test_buffer_shares_resolve_to_whole_blocks() -> None:
    zcu104 = load_target("zcu104")  # ifmap 0.3 of 96 URAM, ofmap 0.25 of 312 BRAM36
    assert zcu104.accelerator.buffers.ifmap_bytes == 28 * URAM_BYTES
    assert zcu104.accelerator.buffers.ofmap_bytes == 78 * BRAM36_BYTES
    assert zcu104.accelerator.buffers.ifmap_memory == "uram"


def test_scalesim_reference_matches_its_default_config() -> None:
    target = load_target("scalesim_32x32")
    acc = target.accelerator
    assert (acc.rows, acc.cols, acc.dataflow, acc.pe) == (32, 32, "os", "int8")
    assert acc.buffers.ifmap_bytes == acc.buffers.filter_bytes == acc.buffers.ofmap_bytes == 64 * 1024
    assert target.bytes_per_cycle == pytest.approx(10.0)  # Bandwidth = 10 one-byte words per cycle


def test_bitfusion_reference_matches_the_paper() -> None:
    target = load_target("bitfusion_16x32")
    acc = target.accelerator
    assert (acc.rows, acc.cols, acc.pe, target.clock_mhz) == (16, 32, "bitfusion", 500.0)
    assert acc.buffers.total_bytes == 112 * 1024 == target.device.sram_bytes


def test_bandwidth_in_bytes_per_cycle_converts_at_the_clock(tmp_path: Path) -> None:
    text = replace_once(GOOD, "bandwidth_gbps = 19.2", "bandwidth_bytes_per_cycle = 16")
    target = load_target(write(tmp_path, text))
    assert target.memory.bandwidth_gbps == pytest.approx(16 * 200e6 / 1e9)
    assert target.bytes_per_cycle == pytest.approx(16.0)
    assert target.source("memory.bandwidth_gbps") == "assumption: test"


# --- overrides ---------------------------------------------------------------------------------------------


def test_with_array_replaces_shape_and_keeps_the_rest() -> None:
    zcu102 = load_target("zcu102")
    other = zcu102.with_array(rows=8, dataflow="ws")
    assert (other.accelerator.rows, other.accelerator.cols, other.accelerator.dataflow) == (8, 48, "ws")
    assert other.accelerator.buffers == zcu102.accelerator.buffers
    assert zcu102.accelerator.rows == 28  # the original is untouched
    assert zcu102.with_array() == zcu102


def test_with_array_too_large_reports_not_fitting_instead_of_raising() -> None:
    huge = load_target("ultra96v2").with_array(rows=128, cols=128)
    resources = estimate_resources(huge)
    assert not resources.fits
    assert "dsp" in resources.over_limits()


@pytest.mark.parametrize(
    ("kwargs", "flag"), [({"rows": 0}, "--rows"), ({"cols": -3}, "--cols"), ({"dataflow": "rs"}, "--dataflow")]
)
def test_with_array_rejects_bad_values(kwargs: dict, flag: str) -> None:
    with pytest.raises(InputError, match=flag):
        load_target("zcu102").with_array(**kwargs)


# --- bad target files: one test per case -------------------------------------------------------------------


def test_good_fixture_loads(tmp_path: Path) -> None:
    target = load_target(write(tmp_path, GOOD))
    assert target.name == "board"
    assert target.accelerator.buffers.filter_bytes == 54 * BRAM36_BYTES


def test_unknown_target_name_lists_known_ones() -> None:
    with pytest.raises(InputError, match="unknown target 'zcu999'; known targets: bitfusion_16x32, kv260"):
        load_target("zcu999")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such target file"):
        load_target(tmp_path / "absent.toml")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(GOOD.replace("test board", "t\xe9st board").encode("latin-1"))
    with pytest.raises(InputError, match=r"latin1.toml: byte \d+: not UTF-8 text"):
        load_target(path)


# one edit of the good target file per case, and the message naming what and where
@pytest.mark.parametrize(
    ("old", "new", "needle"),
    [
        pytest.param(
            "rows = 8", "rows = 8 8", ": accelerator.rows: malformed TOML (Expected newline", id="malformed_toml"
        ),
        pytest.param("cols = 16\n", "cols = 16\ncols = 32\n", ": accelerator.cols: duplicate key", id="duplicate_key"),
        pytest.param(
            "rows = 8\n", "rows = 8\nrow_count = 8\n", ": accelerator.row_count: unknown key", id="unknown_key"
        ),
        pytest.param("vector_lanes = 4\n", "", ": accelerator.vector_lanes: missing key", id="missing_key"),
        pytest.param("dsp = 360", 'dsp = "360"', ": device.dsp: expected an integer, got a string", id="wrong_type"),
        pytest.param(
            "clock_mhz = 200",
            "clock_mhz = true",
            ": clock_mhz: expected a number, got a boolean",
            id="boolean_is_not_a_number",
        ),
        pytest.param("lut = 70560", "lut = 0", ": device.lut: must be positive, got 0", id="zero_budget"),
        pytest.param(
            "bandwidth_gbps = 19.2",
            "bandwidth_gbps = -1.5",
            ": memory.bandwidth_gbps: must be at least 0.01, got -1.5",
            id="negative_budget",
        ),
        pytest.param(
            'part = "XCZU3EG"',
            'kind = "gpu"\npart = "XCZU3EG"',
            ": device: unknown value 'gpu'; expected one of fpga, asic",
            id="unknown_device_kind",
        ),
        pytest.param(
            'source = "DS891"',
            'source = "DS891"\nsource_luts = "x"',
            ": device.source_luts: unknown key; expected one of",
            id="source_for_an_unknown_key",
        ),
        pytest.param(
            "kib = 32", "kib = 0", ": accelerator.buffers.ofmap.kib: must be at least 1.0, got 0", id="zero_buffer_size"
        ),
        pytest.param("ff = 0.5", "ff = 1.5", ": caps.ff: must be at most 1.0", id="cap_above_one"),
        pytest.param(
            "weight_bits = [4, 8]",
            "weight_bits = [1, 8]",
            ": accelerator.weight_bits: unsupported bit width 1",
            id="bits_outside_two_to_eight",
        ),
        pytest.param(
            "act_bits = [8]",
            "act_bits = [7, 8]",
            ": accelerator.act_bits: unsupported bit width 7; supported: 2, 3, 4, 5, 6, 8",
            id="unsupported_bits_seven",
        ),
        pytest.param('source = "DS891"\n', "", ": device.lut: missing source", id="missing_source"),
        pytest.param(
            'ofmap = { memory = "bram36"',
            'ofmap = { memory = "uram"',
            ": accelerator.buffers.ofmap.memory: the device (XCZU3EG) has no URAM",
            id="uram_buffer_on_a_device_without_uram",
        ),
        pytest.param(
            "kib = 32 }",
            "kib = 32, share = 0.1 }",
            ": accelerator.buffers.ofmap.kib: give exactly one of kib",
            id="buffer_with_both_size_and_share",
        ),
        pytest.param(
            'dataflow = "os"', 'dataflow = "rs"', ": accelerator.dataflow: unknown value 'rs'", id="unknown_dataflow"
        ),
        pytest.param(
            'part = "XCZU3EG"',
            'part = "XCZU3EG"\ndsp_kind = "dsp48e1"',
            ": accelerator.pe: dsp_packed PEs need DSP48E2 or DSP58",
            id="dsp_packing_needs_dsp48e2",
        ),
    ],
)
def test_bad_target_file_is_named(tmp_path: Path, old: str, new: str, needle: str) -> None:
    assert needle in load_error(tmp_path, replace_once(GOOD, old, new))


def test_duplicate_table(tmp_path: Path) -> None:
    message = load_error(tmp_path, GOOD + '\n[memory]\nkind = "ddr4"\n')
    assert ": memory: duplicate key" in message


def test_duplicate_key_inside_an_inline_table(tmp_path: Path) -> None:
    text = replace_once(GOOD, "kib = 32 }", "kib = 32, kib = 16 }  # a comment")
    assert ": accelerator.buffers.ofmap.kib: duplicate key" in load_error(tmp_path, text)


def test_missing_table(tmp_path: Path) -> None:
    text = GOOD[: GOOD.index("[caps]")] + GOOD[GOOD.index("[memory]") :]
    assert ": caps: missing table" in load_error(tmp_path, text)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        # issue #15 item 5: a near-zero bandwidth gave zero stalls; item 14: 1e308 broke `targets --json`
        ("bandwidth_gbps = 19.2", "bandwidth_gbps = 1e-300", "memory.bandwidth_gbps: must be at least 0.01"),
        ("bandwidth_gbps = 19.2", "bandwidth_gbps = 1e308", "memory.bandwidth_gbps: must be at most 100000.0"),
        ("bandwidth_gbps = 19.2", "bandwidth_gbps = nan", "memory.bandwidth_gbps: must be a finite number"),
        ("bandwidth_gbps = 19.2", "bandwidth_gbps = inf", "memory.bandwidth_gbps: must be a finite number"),
        # issue #15 item 23: kib = 0.0001 was a 0-byte buffer
        ("kib = 32", "kib = 0.0001", "accelerator.buffers.ofmap.kib: must be at least 1.0, got 0.0001"),
        ("clock_mhz = 200", "clock_mhz = 1e9", "clock_mhz: must be at most 10000.0"),
        ("rows = 8", "rows = 100000", "accelerator.rows: must be at most 4096"),
        ("lut = 70560", "lut = 10000000000000000000", "device.lut: must be at most 200000000"),
        ("vector_lanes = 4", "vector_lanes = -4", "accelerator.vector_lanes: must be positive, got -4"),
    ],
)
def test_values_outside_physical_ranges(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert f": {expected}" in load_error(tmp_path, replace_once(GOOD, old, new))


def test_byte_order_mark_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    with pytest.raises(InputError, match=r"bom.toml: starts with a UTF-8 byte-order mark \(BOM\)"):
        load_target(path)


def test_per_key_source_overrides_table_source(tmp_path: Path) -> None:
    text = replace_once(GOOD, 'source = "DS891"\n', 'source = "DS891"\nsource_dsp = "UG579"\n')
    target = load_target(write(tmp_path, text))
    assert target.source("device.dsp") == "UG579"
    assert target.source("device.lut") == "DS891"


def test_empty_source(tmp_path: Path) -> None:
    message = load_error(
        tmp_path, replace_once(GOOD, 'source_clock_mhz = "assumption: test"', 'source_clock_mhz = " "')
    )
    assert ": source_clock_mhz: empty source" in message


def test_accelerator_needing_more_dsp_than_the_board(tmp_path: Path) -> None:
    message = load_error(tmp_path, replace_once(GOOD, "rows = 8", "rows = 32"))  # 32x16 = 512 DSP > 360
    assert ": accelerator.rows: the 32x16 dsp_packed accelerator needs 528 DSP" in message
    assert "has 360" in message


def test_accelerator_needing_more_bram_than_the_board(tmp_path: Path) -> None:
    message = load_error(tmp_path, replace_once(GOOD, "kib = 64", "kib = 1024"))  # 228 + 54 + 8 BRAM36 > 216
    assert ": accelerator.buffers: " in message and "BRAM36" in message and "has 216" in message


def test_accelerator_needing_more_uram_than_the_board(tmp_path: Path) -> None:
    text = replace_once(GOOD, "uram = 0\n", "uram = 4\n")
    text = replace_once(text, 'ofmap = { memory = "bram36", kib = 32 }', 'ofmap = { memory = "uram", kib = 512 }')
    message = load_error(tmp_path, text)  # 512 KiB = 15 URAM blocks > 4
    assert ": accelerator.buffers: " in message and "URAM" in message and "has 4" in message


def test_asic_buffers_larger_than_its_sram(tmp_path: Path) -> None:
    text = (load_target("scalesim_32x32").path).read_text().replace("sram_kib = 192", "sram_kib = 100")
    message = load_error(tmp_path, text)
    assert ": accelerator.buffers: buffers take 192 KiB, more than the chip's 100 KiB" in message


def test_asic_has_no_caps_table(tmp_path: Path) -> None:
    text = load_target("scalesim_32x32").path.read_text() + '\n[caps]\nlut = 0.7\nsource = "x"\n'
    assert ": caps: an asic device has no FPGA caps" in load_error(tmp_path, text)


def test_nonlinear_units_and_fold_pipelining_from_a_file(tmp_path: Path) -> None:
    text = (Path(sim.target_file.__file__).parents[1] / "targets" / "zcu102.toml").read_text(encoding="utf-8")
    # zcu102 ships with units and fold pipelining (issue #16): start from its array without them
    text = text[: text.index("fold_pipelining = true")] + text[text.index("[accelerator.buffers]") :]
    extra = """fold_pipelining = true

[accelerator.nonlinear]
lanes_pipeline_depth = 4
source = "assumption: test"
softmax = { placement = "own", elements_per_cycle = 8, pipeline_depth = 30, fused = true, lut = 900, ff = 700, \
dsp = 4, row_buffer_elements = 256, source = "assumption: test" }
gelu = { placement = "lanes", fused = true, source = "assumption: test" }
"""
    path = tmp_path / "t.toml"
    path.write_text(text.replace("[accelerator.buffers]", extra + "\n[accelerator.buffers]"), encoding="utf-8")
    target = load_target(path)
    assert target.accelerator.fold_pipelining
    unit = target.accelerator.nonlinear.unit("softmax")
    assert (unit.placement, unit.elements_per_cycle, unit.pipeline_depth) == ("own", 8, 30)
    assert unit.row_buffer_elements == 256
    assert target.accelerator.nonlinear.unit("gelu").fused
    bad = path.read_text(encoding="utf-8").replace("elements_per_cycle = 8, ", "")
    path.write_text(bad, encoding="utf-8")
    with pytest.raises(InputError, match=r"t\.toml: accelerator\.nonlinear\.softmax\.elements_per_cycle"):
        load_target(path)
