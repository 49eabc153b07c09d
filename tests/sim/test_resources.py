"""Resource model: golden figures per shipped target, hand-derived FINN formulas, and properties."""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest

import sim
from sim import InputError, estimate_resources, load_target
from sim.resources import (
    DATAMOVER,
    DDR_CONTROLLER,
    HBM_INTERFACE,
    RESOURCE_NAMES,
    Resources,
    bit_pairs,
    pe_accumulator_bits,
)

# Golden figures at each target's widest bits. A change that moves one must say why in its commit.
#   name, dsp, lut, ff, bram36, uram
GOLDEN = [
    ("bitfusion_16x32", 64, 466444, 145300, 38, 0),
    ("kv260", 628, 81612, 68932, 63, 41),
    ("pynq_z2", 30, 32959, 25212, 103, 0),
    ("scalesim_32x32", 1152, 59507, 52628, 47, 0),
    ("u250", 8444, 1197647, 1041988, 1244, 704),
    ("u280", 6384, 879027, 757617, 702, 528),
    ("ultra96v2", 286, 38908, 33436, 144, 0),
    ("vck190", 1456, 191589, 164116, 308, 253),
    ("zcu102", 1456, 191589, 164116, 564, 0),
    ("zcu104", 1240, 158655, 132980, 88, 56),
]


@pytest.mark.parametrize(("name", "dsp", "lut", "ff", "bram36", "uram"), GOLDEN)
def test_golden_resources(name: str, dsp: int, lut: int, ff: int, bram36: int, uram: int) -> None:
    resources = estimate_resources(load_target(name))
    assert resources.to_dict() == {"dsp": dsp, "lut": lut, "ff": ff, "bram36": bram36, "uram": uram}
    assert resources.fits


def test_golden_list_covers_every_shipped_target() -> None:
    assert [row[0] for row in GOLDEN] == sim.list_targets()


def test_zcu102_breakdown_by_hand() -> None:
    """28x48 DSP-packed PEs, 2..8-bit, OS: every term recomputed from the cited formulas."""
    resources = estimate_resources(load_target("zcu102"))
    parts = {part.component: part for part in resources.breakdown}
    pes = 28 * 48
    # one DSP48E2 per PE; a vector lane's 32x32 multiply tiles the 27x18 multiplier 2x2 = 4 DSPs
    assert parts["array"].dsp == pes
    assert parts["vector_unit"].dsp == 4 * 4
    # own nonlinear units: the file's per-unit LUT/FF/DSP; softmax (256 x 32 bit) and LayerNorm (1024 x 32 bit)
    # double-buffered rows: 1 and 2 BRAM36 of capacity, but 16 elements x 32 bit = 512-bit ports need 8 blocks each
    assert parts["nonlinear_units"].dsp == 48 + 16 + 16 + 16 + 0
    assert parts["nonlinear_units"].lut == 2880 + 6720 + 5760 + 4800 + 1280
    assert parts["nonlinear_units"].bram36 == 8 + 8
    # FINN: c0 + c1 * P * adder, adder = p * (W + A); p * (W + A) = 4 * 8 at W4A4 = 2 * 16 at W8A8 = 32
    assert parts["array"].lut == math.ceil(300 + 1.1 * pes * 32)
    # p accumulators per PE; W4A4: 4 x 20 bits beats W8A8: 2 x 28 bits
    assert parts["accumulators"].ff == pes * 4 * 20
    assert parts["accumulators"].lut == round(1.1 * pes * 80)
    # BRAM36 shares 0.2 / 0.3 / 0.1 of 912 -> 182 + 273 + 91 blocks; the ports (28 x 8, 48 x 8, 48 x 28 bits)
    # need fewer than that
    assert parts["buffers"].bram36 == 182 + 273 + 91
    # PS DDR is hardened: one datamover only
    assert parts["memory_interface"].to_dict() == DATAMOVER
    assert resources.dsp == sum(part.dsp for part in resources.breakdown)


@pytest.mark.parametrize(
    ("weight_bits", "act_bits", "expected"), [(8, 8, 28), (4, 4, 20), (2, 2, 16), (8, 2, 22), (6, 5, 23)]
)
def test_accumulator_bits_follow_the_data_type_bound(weight_bits: int, act_bits: int, expected: int) -> None:
    # alpha = log2(4096) + W + A - 2 for signed activations; acc = ceil(alpha + log2(1 + 2^-alpha) + 1)
    assert pe_accumulator_bits(weight_bits, act_bits) == expected


def test_accumulator_bits_are_capped_at_int32() -> None:
    assert pe_accumulator_bits(8, 8, max_reduction=2**20) == 32


def test_lut_pe_single_precision_by_hand() -> None:
    """A W8A8-only LUT array: FINN's (2*ceil(16/6) - 1) * 16 = 80 LUT multiplier plus a 16-LUT adder per PE."""
    pynq = load_target("pynq_z2")
    only8 = dataclasses.replace(
        pynq, accelerator=dataclasses.replace(pynq.accelerator, weight_bits=(8,), act_bits=(8,))
    )
    parts = {part.component: part for part in estimate_resources(only8).breakdown}
    pes = 6 * 8
    assert parts["array"].lut == math.ceil(300 + 1.1 * pes * (80 + 16))
    assert parts["array"].dsp == 0
    # WS: one 28-bit accumulator per PE plus one per column bottom
    assert parts["accumulators"].ff == (pes + 8) * 28
    # the DSP48E1's 25x18 multiplier also needs 2x2 tiles for a 32x32 multiply
    assert parts["vector_unit"].dsp == 4 * 4


def test_mixed_precision_lut_pe_pays_for_its_parallel_accumulators() -> None:
    pynq = load_target("pynq_z2")
    full = {part.component: part for part in estimate_resources(pynq).breakdown}
    # W2A2: twenty 4-LUT multipliers fill one 80-LUT budget (sim.pe.macs_per_pe), each with a 16-bit accumulator
    assert full["accumulators"].ff == 6 * 8 * 20 * 16 + 8 * 28


def test_buffer_ports_bound_blocks_for_small_wide_buffers() -> None:
    target = load_target("scalesim_32x32").with_array(rows=64, cols=8)
    parts = {part.component: part for part in estimate_resources(target).breakdown}
    # ifmap 64 KiB = 15 blocks by capacity; filter 8 x 8 = 64 bits wide; ofmap 8 x 28 bits = 4 ports
    capacity = math.ceil(64 * 1024 * 8 / (36 * 1024))
    assert parts["buffers"].bram36 == max(capacity, math.ceil(64 * 8 / 72)) + capacity + max(capacity, 4)
    narrow = estimate_resources(target.with_array(rows=256))
    wide_ifmap = math.ceil(256 * 8 / 72)  # 29 ports > 15 blocks of capacity
    assert {p.component: p for p in narrow.breakdown}["buffers"].bram36 == wide_ifmap + capacity + capacity


def test_soft_ddr_controllers_cost_fabric_per_channel() -> None:
    parts = {part.component: part for part in estimate_resources(load_target("u250")).breakdown}
    memory = parts["memory_interface"]
    assert memory.lut == 4 * (DDR_CONTROLLER["lut"] + DATAMOVER["lut"])
    assert memory.bram36 == 4 * (math.ceil(199 / 2) + DATAMOVER["bram36"])
    assert memory.dsp == 4 * 3


def test_hbm_interface_is_charged_once() -> None:
    parts = {part.component: part for part in estimate_resources(load_target("u280")).breakdown}
    assert parts["memory_interface"].lut == HBM_INTERFACE["lut"] + 32 * DATAMOVER["lut"]


@pytest.mark.parametrize("name", sim.list_targets())
def test_fewer_bits_never_cost_more(name: str) -> None:
    target = load_target(name)
    acc = target.accelerator
    pairs = list(itertools.product(acc.weight_bits, acc.act_bits))
    cost = {pair: estimate_resources(target, *pair).to_dict() for pair in pairs}
    for (w, a), (w2, a2) in itertools.product(pairs, pairs):
        if w <= w2 and a <= a2:
            assert all(cost[(w, a)][k] <= cost[(w2, a2)][k] for k in RESOURCE_NAMES), ((w, a), (w2, a2))
    assert estimate_resources(target).to_dict() == cost[(max(acc.weight_bits), max(acc.act_bits))]


@pytest.mark.parametrize("name", ["zcu102", "pynq_z2", "bitfusion_16x32", "scalesim_32x32"])
def test_a_larger_array_never_costs_less(name: str) -> None:
    target = load_target(name)
    acc = target.accelerator
    base = estimate_resources(target).to_dict()
    for rows, cols in [(acc.rows + 1, acc.cols), (acc.rows, acc.cols * 2)]:
        bigger = estimate_resources(target.with_array(rows=rows, cols=cols)).to_dict()
        assert all(bigger[k] >= base[k] for k in RESOURCE_NAMES)
        assert bigger["lut"] > base["lut"]


def test_bit_pairs_are_the_supported_pairs_up_to_the_bound() -> None:
    target = load_target("zcu102")
    assert bit_pairs(target, 3, 2) == [(2, 2), (3, 2)]
    assert len(bit_pairs(target, 8, 8)) == 36


def test_override_beyond_caps_reports_not_fitting() -> None:
    target = load_target("kv260").with_array(rows=28, cols=28)  # 848 DSP fit, ~96k LUT > 0.7 x 117k
    resources = estimate_resources(target)
    assert not resources.fits
    assert resources.over_limits() == ["lut"]
    assert resources.utilisation()["lut"] > 0.7


def test_asic_fits_on_sram_and_reports_fpga_equivalents() -> None:
    target = load_target("bitfusion_16x32")
    resources = estimate_resources(target)
    assert resources.fits and resources.device_kind == "asic"
    assert resources.utilisation() == {"sram": 1.0}
    assert resources.lut > 0 and set(resources.to_dict()) == set(RESOURCE_NAMES)
    # more array never changes the SRAM verdict; more buffer than SRAM does
    assert estimate_resources(target.with_array(rows=64, cols=64)).fits
    acc = target.accelerator
    bigger = dataclasses.replace(acc.buffers, ofmap_bytes=acc.buffers.ofmap_bytes + 1)
    over = dataclasses.replace(target, accelerator=dataclasses.replace(acc, buffers=bigger))
    assert not estimate_resources(over).fits
    assert estimate_resources(over).over_limits() == ["sram"]


def test_result_object_shapes() -> None:
    resources = estimate_resources(load_target("zcu104"))
    assert isinstance(resources, Resources)
    as_dict = resources.to_dict()
    assert list(as_dict) == ["dsp", "lut", "ff", "bram36", "uram"]
    assert all(type(value) is int for value in as_dict.values())
    frame = resources.to_frame()
    assert list(frame.columns) == list(RESOURCE_NAMES)
    assert frame.drop(index="total").sum().to_dict() == frame.loc["total"].to_dict()
    assert set(frame.index) == {
        "array",
        "accumulators",
        "buffers",
        "vector_unit",
        "nonlinear_units",
        "memory_interface",
        "control",
        "total",
    }
    use = resources.utilisation()
    assert use["dsp"] == pytest.approx(resources.dsp / 1728)
    assert use["uram"] == pytest.approx(resources.uram / 96)
    with pytest.raises(dataclasses.FrozenInstanceError):
        resources.dsp = 0  # type: ignore[misc]


@pytest.mark.parametrize(("weight_bits", "act_bits"), [(9, 8), (8, 0), (True, 8)])
def test_bits_outside_the_model_are_rejected(weight_bits: int, act_bits: int) -> None:
    with pytest.raises(InputError, match="bits"):
        estimate_resources(load_target("zcu102"), weight_bits, act_bits)


def test_estimate_resources_is_the_package_entry_point() -> None:
    assert sim.estimate_resources is estimate_resources
