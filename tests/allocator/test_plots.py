"""Plots: each writes a non-empty PNG and draws exactly the data it is given (checked on the artists, not pixels)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from boards import zcu102_like_16x16
from matplotlib.colors import to_rgba

from allocator.pipeline.plots import bits_heatmap, pareto_plot, resource_plot, roofline_plot, sweep_scatter
from sim.errors import InputError
from sim.pe import macs_per_pe
from sim.target import Target


@pytest.fixture
def board() -> Target:
    return zcu102_like_16x16()


def offsets(ax: plt.Axes) -> int:
    return sum(len(c.get_offsets()) for c in ax.collections)


def test_pareto_front_joins_only_non_dominated_points(tmp_path: Path) -> None:
    front = pd.DataFrame({"latency_ms": [1.0, 2.0, 3.0, 4.0, 2.5, 3.5], "score": [0.5, 0.7, 0.9, 0.95, 0.6, 0.8]})
    baselines = pd.DataFrame({"latency_ms": [1.2, 4.2], "score": [0.4, 0.96], "label": ["W4A4", "W8A8"]})
    path = tmp_path / "pareto.png"
    fig = pareto_plot(front, path, baselines=baselines, chosen={"latency_ms": 3.0, "score": 0.9})
    assert path.stat().st_size > 1000
    ax = fig.axes[0]
    line = ax.lines[0]
    assert list(line.get_xdata()) == [1.0, 2.0, 3.0, 4.0]  # (2.5, 0.6) and (3.5, 0.8) are dominated
    assert offsets(ax) == 2 + 2 + 1  # dominated, baselines, chosen
    assert [t.get_text() for t in ax.texts] == ["W4A4", "W8A8"]


def test_pareto_front_of_an_objective_skips_infeasible_budgets(tmp_path: Path) -> None:
    """The shape of ``allocator.pareto_front(...).to_frame()``: Ω (lower is better), None where infeasible."""
    front = pd.DataFrame(
        {
            "latency_ms": [None, 1.0, 2.0, 3.0],
            "objective": [None, 9.0, 4.0, 5.0],
            "status": ["infeasible"] + ["optimal"] * 3,
        }
    )
    fig = pareto_plot(front, tmp_path / "p.png", y="objective", higher_is_better=False)
    assert list(fig.axes[0].lines[0].get_xdata()) == [1.0, 2.0]
    assert offsets(fig.axes[0]) == 1  # (3.0, 5.0) is dominated by (2.0, 4.0)


def test_bits_heatmap_from_a_plan(tmp_path: Path) -> None:
    layers = {f"blocks.{i}.mlp.fc1": {"wbits": 4 if i % 2 else 8, "abits": 8} for i in range(5)}
    path = tmp_path / "bits.png"
    fig = bits_heatmap({"model": "m", "layers": layers}, path)
    assert path.stat().st_size > 1000
    image = fig.axes[0].images[0].get_array()
    assert image.shape == (2, 5)
    assert list(image[0]) == [8, 4, 8, 4, 8] and list(image[1]) == [8] * 5
    assert len(fig.axes[0].texts) == 10


def test_bits_heatmap_reads_allocation_frames_and_rejects_empty_plans(tmp_path: Path) -> None:
    frame = pd.DataFrame({"name": ["a", "b"], "wbits": [2, 6], "abits": [4, 8], "cycles": [1, 2]})
    fig = bits_heatmap(frame, tmp_path / "b.png")
    assert fig.axes[0].images[0].get_array().shape == (2, 2)
    with pytest.raises(InputError, match="no layers"):
        bits_heatmap({"layers": {}})


def test_roofline_draws_one_roof_per_bit_pair_and_every_layer(tmp_path: Path, board: Target) -> None:
    layers = pd.DataFrame(
        {
            "name": ["qkv", "fc1", "head"],
            "m": [197, 197, 1],
            "n": [1152, 1536, 1000],
            "k": [384, 384, 384],
            "wbits": [8, 4, 8],
            "abits": [8, 8, 8],
            "cycles": [200_000, 150_000, 30_000],
        }
    )
    path = tmp_path / "roof.png"
    fig = roofline_plot(layers, board, path)
    assert path.stat().st_size > 1000
    ax = fig.axes[0]
    assert len(ax.lines) == 2 and offsets(ax) == 3
    roof_w8a8 = ax.lines[0].get_ydata()
    assert roof_w8a8.max() == pytest.approx(16 * 16 * macs_per_pe("dsp_packed", 8, 8))
    # the head (M=1) moves its whole weight for 1/197 of the MACs: far left, under the memory roof
    points = np.vstack([c.get_offsets() for c in ax.collections])
    head_intensity = 384 * 1000 / ((384 * 8 + 384 * 1000 * 8 + 1000 * 8) / 8)
    assert points[:, 0].min() == pytest.approx(head_intensity)


def test_roofline_of_a_sim_result_counts_heads_and_skips_vector_ops(tmp_path: Path, board: Target) -> None:
    from sim.simulate import simulate
    from sim.workload import Gemm, VectorOp, Workload

    ops = [Gemm("qk", "attn_qk", 64, 64, 32, b_is_weight=False, count=3), VectorOp("softmax", "softmax", 3 * 64 * 64)]
    result = simulate(Workload.from_ops("w", [*ops, Gemm("fc", "fc1", 64, 128, 96, weight_params=96 * 128)]), board)
    fig = roofline_plot(result, board, tmp_path / "roof.png")
    points = np.vstack([c.get_offsets() for c in fig.axes[0].collections])
    assert len(points) == 2
    qk_achieved = 64 * 64 * 32 * 3 / result.layers[0].cycles  # all three heads' MACs over the layer's cycles
    assert any(y == pytest.approx(qk_achieved) for y in points[:, 1])


def test_resource_bars_against_caps(tmp_path: Path, board: Target) -> None:
    used = {"dsp": 2_400, "lut": 100_000, "ff": 50_000, "bram36": 300, "uram": 0}
    path = tmp_path / "res.png"
    fig = resource_plot(used, board, path)
    assert path.stat().st_size > 1000
    bars = fig.axes[0].patches
    assert len(bars) == 4  # the board has no URAM
    heights = [bar.get_height() for bar in bars]
    assert heights[0] == pytest.approx(2_400 / 2_520)
    assert bars[0].get_facecolor() == to_rgba("C3")  # DSP over its 0.8 cap
    assert bars[1].get_facecolor() == to_rgba("C0")


def test_sweep_scatter_colours_by_board_and_skips_errors(tmp_path: Path) -> None:
    results = pd.DataFrame(
        {
            "target": ["zcu102"] * 5 + ["kv260"] * 5,
            "latency_ms": np.arange(1.0, 11.0),
            "dsp": np.arange(10.0) * 100,
            "fits": [True, True, False, True, True, True, False, False, True, True],
            "error": [""] * 9 + ["rows=0 rejected"],
        }
    )
    path = tmp_path / "sweep.png"
    fig = sweep_scatter(results, path)
    assert path.stat().st_size > 1000
    ax = fig.axes[0]
    assert offsets(ax) == 9
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["kv260", "zcu102"]


def test_plots_draw_into_a_given_axes(tmp_path: Path) -> None:
    fig, (left, right) = plt.subplots(1, 2)
    front = pd.DataFrame({"latency_ms": [1.0, 2.0], "score": [0.5, 0.7]})
    assert pareto_plot(front, ax=right) is fig
    assert len(right.lines) == 1 and not left.lines
    plt.close(fig)


def test_missing_columns_are_named() -> None:
    with pytest.raises(InputError, match=r"lacks column.*score"):
        pareto_plot(pd.DataFrame({"latency_ms": [1.0]}))
