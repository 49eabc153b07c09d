"""Published FPGA ViT accelerators as targets (targets/published/) and the comparison the bench prints."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import sim
from sim.errors import InputError
from sim.published import GOALS, compare_design, relative_error
from sim.target_file import list_published_targets
from sim.workload import MixtureOfExperts


def published() -> dict[str, sim.Target]:
    return {path.stem: sim.load_target(path) for path in list_published_targets()}


def test_every_published_target_loads_with_its_papers_figures() -> None:
    targets = published()
    assert len(targets) >= 4
    assert len({t.device.part for t in targets.values()}) >= 2  # at least two boards
    for name, target in targets.items():
        assert target.published is not None, name
        assert target.published.results, name
        assert all(r.source for r in target.published.results), name
        assert sim.estimate_resources(target).fits, name
        # what the paper does not give is said to be ours
        assert any(text.startswith("assumption:") for _, text in target.sources), name
    # published designs are not shipped board targets (mixbit targets lists boards only)
    assert not set(targets) & set(sim.list_targets())


def test_compare_design_on_heatvit() -> None:
    target = published()["heatvit_zcu102"]
    rows = compare_design(target, lambda t, result: 9.15 * 1.2)
    assert [(r.quantity, r.model) for r in rows] == [("latency_ms", "deit_small_patch16_224")]
    (row,) = rows
    assert (row.published, row.goal) == (9.15, GOALS["latency_ms"])
    assert row.error == pytest.approx(0.2)
    assert row.met is True
    too_fast = compare_design(target, lambda t, result: 9.15 * 0.7)[0]
    assert too_fast.error == pytest.approx(-0.3) and too_fast.met is False


def test_compare_design_on_ubimoe_resources_and_an_unsimulated_model() -> None:
    target = published()["ubimoe_u280"]
    rows = {r.quantity: r for r in compare_design(target, lambda t, result: None)}
    assert rows["latency_ms"].predicted is None and rows["latency_ms"].met is None
    assert rows["latency_ms"].published == 10.33
    # the paper's resources against sim.estimate_resources of the 16x48 linear kernel from the authors' HLS (pinned):
    # 768 multipliers of 16x32 bits, 2 DSP48E2 each, + 16 vector-lane DSPs + 112 on the nonlinear units + the
    # attention kernel's two blocks of 4 x 8 multipliers of 32x32 bits, 4 DSP48E2 each + the 16x16 Q/K/V engine
    assert (rows["dsp"].predicted, rows["dsp"].published) == (1664.0 + 2 * 32 * 4 + 256 * 2, 3413.0)
    assert rows["dsp"].error == pytest.approx(2432 / 3413 - 1)
    assert rows["dsp"].met is False
    assert {name: rows[name].published for name in ("lut", "ff", "bram36")} == {
        "lut": 316_100,
        "ff": 385_900,
        "bram36": 974,
    }


def test_comparison_errors() -> None:
    assert relative_error(12.0, 10.0) == pytest.approx(0.2)
    with pytest.raises(InputError, match="must be positive"):
        relative_error(1.0, 0.0)
    with pytest.raises(InputError, match=r"no \[published\] table"):
        compare_design(sim.load_target("zcu102"), lambda t, result: 1.0)


def test_a_published_result_needs_a_latency_or_fps(tmp_path: Path) -> None:
    text = (list_published_targets()[0]).read_text(encoding="utf-8")
    bad = tmp_path / "p.toml"
    start = text.index("latency_ms = ", text.index("[[published.results]]"))
    bad.write_text(text[:start] + text[text.index("\n", start) + 1 :], encoding="utf-8")
    with pytest.raises(InputError, match=r"p\.toml: published\.results\[0\]\.latency_ms: give latency_ms or fps"):
        sim.load_target(bad)


def _array_dsps(target: sim.Target) -> int:
    return next(part.dsp for part in sim.estimate_resources(target).breakdown if part.component == "array")


def test_multiplier_bits_count_the_dsps_a_wide_fixed_point_pe_takes(tmp_path: Path) -> None:
    targets = published()
    # Edge-MoE: 16x16 multipliers of ap_fixed<16> x ap_fixed<32>: 2 DSP48E2 (27x18) each
    assert targets["edgemoe_zcu102"].accelerator.multiplier_bits == (16, 32)
    assert _array_dsps(targets["edgemoe_zcu102"]) == 512
    # UbiMoE's ViT_Fixed16: 16x16-bit multipliers fit one DSP48E2: 16x32 PEs, 512 DSPs
    assert _array_dsps(targets["ubimoe_vit_u50"]) == 512
    # 16 x 64 bits: 64 over the 27-bit port and 16 over the 18-bit one is 3 slices, the other way round 4
    text = list_published_targets()[0].read_text(encoding="utf-8")
    assert "multiplier_bits = [16, 32]" in text
    wide = tmp_path / "wide.toml"
    wide.write_text(text.replace("multiplier_bits = [16, 32]", "multiplier_bits = [16, 64]"), encoding="utf-8")
    assert _array_dsps(sim.load_target(wide)) == 16 * 16 * 3
    # without it, an int8 PE is one DSP
    plain = tmp_path / "plain.toml"
    plain.write_text(text.replace("multiplier_bits = [16, 32]\n", ""), encoding="utf-8")
    assert _array_dsps(sim.load_target(plain)) == 256
    # the multiplier's 16 + 32 bits also set the PE's adder and registers (FINN: 300 + 1.1 * 256 PEs * 48 LUT;
    # 48 FF per PE) and its 32-bit accumulator, where the plain W8A8 PE has 16 and
    # ceil(alpha + log2(1 + 2**-alpha) + 1) = 28 with alpha = 12 + 8 + 8 - 1 - 1 = 26 (arXiv 2301.13376)
    parts = {p.component: p for p in sim.estimate_resources(targets["edgemoe_zcu102"]).breakdown}
    assert (parts["array"].lut, parts["array"].ff) == (13_817, 256 * 48)
    assert parts["accumulators"].ff == 256 * 32
    plain_parts = {p.component: p for p in sim.estimate_resources(sim.load_target(plain)).breakdown}
    assert (plain_parts["array"].lut, plain_parts["array"].ff) == (math.ceil(300 + 1.1 * 256 * 16), 256 * 16)
    assert plain_parts["accumulators"].ff == 256 * 28


def test_multiplier_bits_only_on_int8_pes(tmp_path: Path) -> None:
    text = list_published_targets()[0].read_text(encoding="utf-8")
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace('pe = "int8"', 'pe = "dsp_packed"'), encoding="utf-8")
    with pytest.raises(InputError, match=r"bad\.toml: accelerator\.multiplier_bits: only an int8 PE"):
        sim.load_target(bad)
    three = tmp_path / "three.toml"
    three.write_text(text.replace("multiplier_bits = [16, 32]", "multiplier_bits = [16, 32, 8]"), encoding="utf-8")
    with pytest.raises(InputError, match=r"three\.toml: accelerator\.multiplier_bits"):
        sim.load_target(three)


def test_a_published_result_may_give_its_input_size(tmp_path: Path) -> None:
    targets = published()
    (edge,) = targets["edgemoe_zcu102"].published.results  # type: ignore[union-attr]
    assert (edge.model, edge.img_size) == ("vit_tiny_patch16_224", (128, 256))
    assert targets["heatvit_zcu102"].published.results[0].img_size is None  # type: ignore[union-attr]
    text = list_published_targets()[0].read_text(encoding="utf-8")
    bad = tmp_path / "tiny.toml"
    bad.write_text(text.replace("img_size = [128, 256]", "img_size = [8, 256]"), encoding="utf-8")
    with pytest.raises(InputError, match=r"tiny\.toml: published\.results\[0\]\.img_size"):
        sim.load_target(bad)


def test_a_published_result_may_turn_the_mlps_into_experts(tmp_path: Path) -> None:
    targets = published()
    (edge,) = targets["edgemoe_zcu102"].published.results  # type: ignore[union-attr]
    assert edge.moe == MixtureOfExperts(experts=16, experts_per_token=2, hidden=384, every=2, first=1)
    assert targets["heatvit_zcu102"].published.results[0].moe is None  # type: ignore[union-attr]
    text = list_published_targets()[0].read_text(encoding="utf-8")
    bad = tmp_path / "topk.toml"
    bad.write_text(text.replace("experts_per_token = 2", "experts_per_token = 17"), encoding="utf-8")
    with pytest.raises(InputError, match=r"topk\.toml: published\.results\[0\]\.moe\.experts_per_token: at most"):
        sim.load_target(bad)
