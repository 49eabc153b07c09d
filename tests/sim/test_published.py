"""Published FPGA ViT accelerators as targets (targets/published/) and the comparison the bench prints."""

from __future__ import annotations

from pathlib import Path

import pytest

import sim
from sim.errors import InputError
from sim.published import GOALS, compare_design, relative_error
from sim.target_file import list_published_targets


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
    # the paper's resources against sim.estimate_resources of the 16x48 linear kernel from the authors' HLS (pinned)
    assert (rows["dsp"].predicted, rows["dsp"].published) == (896.0, 3413.0)
    assert rows["dsp"].error == pytest.approx(896 / 3413 - 1)
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
