"""Golden simulated latencies per shipped target. A change that moves them must say why in its commit.

Workload: three GEMMs of a DeiT-S block at 197 tokens (qkv, the 6-head q·kᵀ, fc2). Numbers are total cycles
with DRAM stalls and with ideal memory, at W8A8 and (where the target supports it) W4A4.
"""

from __future__ import annotations

import math

import pytest

import sim
from sim import Gemm, Workload

# target -> {(wbits, abits): (cycles with stalls, cycles with ideal memory)}
GOLDEN: dict[str, dict[tuple[int, int], tuple[int, int]]] = {
    "bitfusion_16x32": {(8, 8): (891_843, 508_092), (4, 4): (366_384, 129_168)},
    "kv260": {(8, 8): (238_725, 236_484), (4, 4): (123_081, 121_212)},
    "pynq_z2": {(8, 8): (4_978_489, 4_978_110), (4, 4): (1_669_179, 1_668_830)},
    "scalesim_32x32": {(8, 8): (966_598, 283_668)},
    "u250": {(8, 8): (33_857, 31_384), (4, 4): (21_703, 19_888)},
    "u280": {(8, 8): (38_589, 38_190), (4, 4): (24_360, 24_060)},
    "ultra96v2": {(8, 8): (500_749, 489_372), (4, 4): (250_701, 248_352)},
    "vck190": {(8, 8): (118_726, 115_360), (4, 4): (63_697, 60_992)},
    "zcu102": {(8, 8): (123_093, 115_360), (4, 4): (65_859, 60_992)},
    "zcu104": {(8, 8): (136_161, 128_556), (4, 4): (72_713, 67_896)},
}


def deit_s_block() -> Workload:
    return Workload.from_ops(
        "deit_s_block",
        [
            Gemm("qkv", "qkv", 197, 1152, 384, weight_params=384 * 1152),
            Gemm("matmul_qk", "attn_qk", 197, 197, 64, b_is_weight=False, count=6),
            Gemm("fc2", "fc2", 197, 384, 1536, weight_params=1536 * 384),
        ],
    )


def test_every_shipped_target_has_golden_numbers() -> None:
    assert sorted(GOLDEN) == sim.list_targets()


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_cycles(name: str) -> None:
    target = sim.load_target(name)
    for bits, (cycles, ideal_cycles) in GOLDEN[name].items():
        result = sim.simulate(deit_s_block(), target, bits)
        ideal = sim.simulate(deit_s_block(), target, bits, ideal_memory=True)
        assert (result.cycles, ideal.cycles) == (cycles, ideal_cycles), (name, bits)
        assert result.latency_ms == pytest.approx(cycles / (target.clock_mhz * 1e3))
        assert result.fits


def test_scalesim_reference_is_the_closed_form() -> None:
    # SCALE-Sim's own default array: 32×32 OS, so ideal cycles are its closed form (without its minus 1)
    expected = sum(
        count * math.ceil(m / 32) * math.ceil(n / 32) * (k + 32 + 32 - 2)
        for m, n, k, count in ((197, 1152, 384, 1), (197, 197, 64, 6), (197, 384, 1536, 1))
    )
    assert GOLDEN["scalesim_32x32"][(8, 8)][1] == expected
