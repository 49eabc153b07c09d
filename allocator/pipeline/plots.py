"""Figures for results (matplotlib, Agg backend, PNG): Pareto fronts, bit heat maps, rooflines, resources, sweeps.

Every function takes tables (pandas DataFrames or the results' ``to_frame()``), draws on ``ax`` when given
(for notebooks and multi-panel figures) or on a new figure, saves a PNG to ``path`` when given, and returns
the Figure. Nothing here computes costs: the numbers come from ``sim`` and ``allocator``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from sim.errors import InputError
from sim.target import RESOURCE_NAMES

if TYPE_CHECKING:
    from sim.target import Target

__all__ = [
    "bits_heatmap",
    "pareto_plot",
    "resource_plot",
    "roofline_plot",
    "sweep_scatter",
]

DPI = 120
MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def _axes(ax: Axes | None, size: tuple[float, float]) -> tuple[Figure, Axes, bool]:
    """The Axes to draw on, its Figure, and whether the figure is ours (made here, so closed after saving)."""
    if ax is not None:
        return ax.figure, ax, False
    fig, new_ax = plt.subplots(figsize=size, layout="constrained")
    return fig, new_ax, True


def _finish(fig: Figure, path: str | Path | None, own: bool) -> Figure:
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI, format="png")
    if own:
        plt.close(fig)  # the caller holds the Figure; pyplot need not keep it alive
    return fig


def _need(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"{what}: table lacks column(s) {', '.join(missing)}")


def _frame(table: Any) -> pd.DataFrame:
    return table if isinstance(table, pd.DataFrame) else table.to_frame()


def pareto_plot(
    front: Any,
    path: str | Path | None = None,
    *,
    ax: Axes | None = None,
    x: str = "latency_ms",
    y: str = "score",
    baselines: pd.DataFrame | None = None,
    chosen: Mapping[str, float] | None = None,
    higher_is_better: bool = True,
) -> Figure:
    """Pareto front of ``y`` (accuracy or score) against ``x`` (latency in ms), with uniform baselines.

    ``front`` is a table (or has ``to_frame()``, like ``allocator.pareto_front``'s result: pass
    ``y="objective", higher_is_better=False``) with columns ``x`` and ``y``; rows without values (infeasible
    budgets) are skipped, dominated rows are drawn faded
    and the non-dominated ones joined as the front. ``baselines`` has ``x``, ``y`` and ``label`` (e.g.
    "W8A8"); ``chosen`` is one point ({x: ..., y: ...}) marked with a star.
    """
    frame = _frame(front)
    _need(frame, (x, y), "pareto_plot")
    fig, ax, own = _axes(ax, (6.0, 4.0))
    frame = frame.dropna(subset=[x, y]).sort_values([x, y], ascending=[True, not higher_is_better])
    best = -math.inf if higher_is_better else math.inf
    on_front = []
    for value in frame[y]:
        better = value > best if higher_is_better else value < best
        on_front.append(better)
        if better:
            best = value
    mask = np.asarray(on_front, dtype=bool)
    if (~mask).any():
        ax.scatter(frame[x][~mask], frame[y][~mask], s=14, color="0.7", label="dominated", zorder=1)
    ax.plot(frame[x][mask], frame[y][mask], "o-", color="C0", ms=4, label="Pareto front", zorder=2)
    if baselines is not None and len(baselines):
        _need(baselines, (x, y, "label"), "pareto_plot baselines")
        ax.scatter(baselines[x], baselines[y], marker="s", s=36, color="C3", label="uniform", zorder=3)
        for _, row in baselines.iterrows():
            ax.annotate(str(row["label"]), (row[x], row[y]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if chosen is not None:
        ax.scatter([chosen[x]], [chosen[y]], marker="*", s=160, color="C2", label="chosen", zorder=4)
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel(y.replace("_", " "))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _finish(fig, path, own)


def _plan_frame(plan: Any) -> pd.DataFrame:
    """A table of layer, wbits, abits from a bit-plan JSON object, an Allocation or a frame."""
    if isinstance(plan, Mapping):
        layers = plan.get("layers")
        if not isinstance(layers, Mapping):
            raise InputError("bits_heatmap: bit plan has no 'layers' object")
        return pd.DataFrame([{"layer": name, "wbits": v["wbits"], "abits": v["abits"]} for name, v in layers.items()])
    frame = _frame(plan)
    if "layer" not in frame.columns and "name" in frame.columns:
        frame = frame.rename(columns={"name": "layer"})
    _need(frame, ("layer", "wbits", "abits"), "bits_heatmap")
    frame = frame[frame["wbits"] > 0]  # a SimResult frame's vector operators carry no bits
    return frame[["layer", "wbits", "abits"]].drop_duplicates("layer")


def bits_heatmap(plan: Any, path: str | Path | None = None, *, ax: Axes | None = None) -> Figure:
    """Per-layer bits as a 2×L heat map (weights over activations), layers in plan order, bits written in."""
    frame = _plan_frame(plan)
    if frame.empty:
        raise InputError("bits_heatmap: the plan has no layers")
    grid = np.vstack([frame["wbits"].to_numpy(dtype=float), frame["abits"].to_numpy(dtype=float)])
    width = min(24.0, max(5.0, 0.18 * len(frame)))
    fig, ax, own = _axes(ax, (width, 2.6))
    image = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=1, vmax=max(8, grid.max()))
    ax.set_yticks([0, 1], ["wbits", "abits"])
    ax.set_xticks(range(len(frame)), frame["layer"], rotation=90, fontsize=6 if len(frame) > 30 else 8)
    if len(frame) <= 60:
        for (i, j), bits in np.ndenumerate(grid):
            ax.text(j, i, f"{bits:g}", ha="center", va="center", fontsize=6, color="white" if bits < 5 else "black")
    fig.colorbar(image, ax=ax, label="bits")
    return _finish(fig, path, own)


def roofline_plot(
    layers: Any,
    target: Target,
    path: str | Path | None = None,
    *,
    ax: Axes | None = None,
) -> Figure:
    """Each GEMM's achieved MACs per cycle against its arithmetic intensity, under the target's roofs.

    ``layers`` is a ``SimResult`` or a table like its ``to_frame()`` (name, m, n, k, wbits, abits, cycles, and
    ``count`` when present); vector operators (k = 0) are left out.
    Intensity is MACs per off-chip byte, with each operand and the output moved once at its bits (the output
    at ``abits``). Roofs: compute R·C·macs_per_pe(w, a) per distinct bit pair, memory ``bytes_per_cycle``.
    """
    from sim.pe import macs_per_pe

    if hasattr(layers, "layers"):  # a SimResult: its LayerResults carry ``count`` (heads), its frame does not
        frame = pd.DataFrame([dataclasses.asdict(layer) for layer in layers.layers])
    else:
        frame = _frame(layers)
    _need(frame, ("name", "m", "n", "k", "wbits", "abits", "cycles"), "roofline_plot")
    frame = frame[(frame["k"] > 0) & (frame["wbits"] > 0)]  # GEMMs only: vector operators have no MACs
    if frame.empty:
        raise InputError("roofline_plot: no GEMM layers to draw")
    count = frame["count"] if "count" in frame.columns else 1
    macs = frame["m"] * frame["n"] * frame["k"] * count
    moved = (
        (
            frame["m"] * frame["k"] * frame["abits"]
            + frame["k"] * frame["n"] * frame["wbits"]
            + frame["m"] * frame["n"] * frame["abits"]
        )
        * count
        / 8.0
    )
    intensity = (macs / moved).to_numpy(dtype=float)
    achieved = (macs / frame["cycles"].clip(lower=1)).to_numpy(dtype=float)
    fig, ax, own = _axes(ax, (6.0, 4.0))
    acc = target.accelerator
    bandwidth = target.bytes_per_cycle
    span = np.logspace(math.log10(intensity.min() / 4), math.log10(intensity.max() * 4), 200)
    pairs = sorted({(int(w), int(a)) for w, a in zip(frame["wbits"], frame["abits"], strict=True)})
    for index, (wbits, abits) in enumerate(pairs):
        peak = acc.rows * acc.cols * macs_per_pe(acc.pe, wbits, abits)
        ax.plot(span, np.minimum(peak, span * bandwidth), "--", color=f"C{index}", lw=1, label=f"roof W{wbits}A{abits}")
        chosen = ((frame["wbits"] == wbits) & (frame["abits"] == abits)).to_numpy()
        ax.scatter(intensity[chosen], achieved[chosen], s=16, color=f"C{index}", zorder=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (MACs / off-chip byte)")
    ax.set_ylabel("achieved MACs / cycle")
    ax.set_title(f"{target.name}: {acc.rows}×{acc.cols} {acc.dataflow}, {bandwidth:.1f} B/cycle", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return _finish(fig, path, own)


def resource_plot(
    resources: Any,
    target: Target,
    path: str | Path | None = None,
    *,
    ax: Axes | None = None,
) -> Figure:
    """Use of each device resource as a fraction of the device, with the target's cap drawn per bar.

    ``resources`` is a ``Resources`` object or a mapping with dsp, lut, ff, bram36, uram counts. Resources the
    device lacks (count 0) are left out; bars over their cap are red.
    """
    used = {
        name: float(resources[name] if isinstance(resources, Mapping) else getattr(resources, name))
        for name in RESOURCE_NAMES
    }
    names = [name for name in RESOURCE_NAMES if getattr(target.device, name) > 0]
    if not names:
        raise InputError(f"resource_plot: target {target.name!r} has no FPGA resources to compare against")
    share = [used[name] / getattr(target.device, name) for name in names]
    caps = [getattr(target.caps, name) for name in names]
    fig, ax, own = _axes(ax, (5.0, 3.2))
    colours = ["C3" if s > c else "C0" for s, c in zip(share, caps, strict=True)]
    ax.bar(names, share, color=colours)
    for index, cap in enumerate(caps):
        ax.hlines(cap, index - 0.4, index + 0.4, colors="k", linestyles="--", lw=1)
    ax.set_ylabel("fraction of device")
    ax.set_ylim(0, max(1.05, max(share) * 1.1))
    ax.set_title(f"{target.name} ({target.device.part}): used vs cap (dashed)", fontsize=9)
    return _finish(fig, path, own)


def sweep_scatter(
    results: pd.DataFrame,
    path: str | Path | None = None,
    *,
    ax: Axes | None = None,
    x: str = "latency_ms",
    y: str = "dsp",
    colour_by: str = "target",
) -> Figure:
    """Sweep results, one marker per design point, coloured by board; designs that do not fit are hollow.

    ``results`` is ``allocator.sweep.read_results(out)`` (rows with an ``error`` are left out).
    """
    _need(results, (x, y, colour_by), "sweep_scatter")
    frame = results
    if "error" in frame.columns:
        frame = frame[frame["error"].fillna("") == ""]
    frame = frame.dropna(subset=[x, y])
    fig, ax, own = _axes(ax, (6.0, 4.0))
    fits = frame["fits"].astype(bool) if "fits" in frame.columns else pd.Series(True, index=frame.index)
    for index, (group, rows) in enumerate(frame.groupby(colour_by, sort=True)):
        colour = f"C{index % 10}"
        marker = MARKERS[index % len(MARKERS)]  # boards with equal results still show through each other
        ok = fits.loc[rows.index]
        label = str(Path(str(group)).stem)
        ax.scatter(rows[x][ok], rows[y][ok], s=18, color=colour, marker=marker, alpha=0.7, label=label)
        if (~ok).any():
            ax.scatter(rows[x][~ok], rows[y][~ok], s=18, marker=marker, facecolors="none", edgecolors=colour)
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel(y.replace("_", " "))
    if frame[x].gt(0).all() and frame[x].max() / max(frame[x].min(), 1e-12) > 50:
        ax.set_xscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title=colour_by, title_fontsize=8)
    ax.set_title(f"{len(frame)} design points (hollow: does not fit)", fontsize=9)
    return _finish(fig, path, own)
