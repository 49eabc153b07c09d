"""Looking at a sweep: the Pareto plot across designs (PNG) and an interactive HTML file to filter it.

Both show latency (ms) against Ω (Σ sensitivity of the bit plan; lower is more accurate), coloured by board,
with marker area growing with the design's DSP count; Pareto-front points (``pareto.pareto_mask``) are
outlined. A sweep of a million points is drawn as its front plus a random sample of the rest
(``max_points``), so the files stay small; the title says how many were drawn.

The HTML file is self-contained (plotly.js inlined, no network) with two drop-downs, board and bits, that
filter the points shown; bits are ``W8A8``-style for uniform points and ``mixed`` for allocation points.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["pareto_html", "pareto_png", "plot_frame"]

_MAX_POINTS = 20_000


def plot_frame(frame: pd.DataFrame, max_points: int = _MAX_POINTS, seed: int = 0) -> tuple[pd.DataFrame, int]:
    """The rows to draw (valid ones: no error, finite latency and Ω) and how many valid rows there were.

    Keeps every Pareto point, then a random sample of the others up to ``max_points`` rows in all.
    """
    from allocator.sweep.pareto import pareto_mask

    frame = frame.copy()
    if "pareto" not in frame.columns:
        frame["pareto"] = pareto_mask(frame)
    valid = np.isfinite(pd.to_numeric(frame.get("latency_ms"), errors="coerce")) & np.isfinite(
        pd.to_numeric(frame.get("omega"), errors="coerce")
    )
    if "error" in frame.columns:
        valid &= frame["error"].fillna("").astype(str) == ""
    frame = frame[valid]
    total = len(frame)
    front = frame[frame["pareto"]]
    rest = frame[~frame["pareto"]]
    room = max(0, max_points - len(front))
    if len(rest) > room:
        rest = rest.sample(n=room, random_state=seed)
    drawn = pd.concat([rest, front]).copy()
    drawn["board"] = drawn["target"].map(lambda ref: Path(str(ref)).stem)
    drawn["bits"] = [
        "mixed" if bool(allocated) else f"W{int(w)}A{int(a)}"
        for allocated, w, a in zip(drawn.get("allocate", False), drawn["wbits"], drawn["abits"], strict=True)
    ]
    dsp = pd.to_numeric(drawn["dsp"], errors="coerce").fillna(0).to_numpy(dtype=float)
    drawn["marker_size"] = 4 + 16 * np.sqrt(dsp / dsp.max()) if len(dsp) and dsp.max() > 0 else 6.0
    return drawn, total


def _title(drawn: pd.DataFrame, total: int, name: str) -> str:
    shown = f"all {total:,}" if len(drawn) == total else f"{len(drawn):,} of {total:,} (every Pareto point)"
    return f"{name}: latency vs Ω, {shown} designs; colour board, size DSP, outlined: Pareto front"


def pareto_png(frame: pd.DataFrame, path: str | Path, *, name: str = "sweep", max_points: int = _MAX_POINTS) -> Path:
    """Latency (ms, log) against Ω (log), coloured by board, marker area by DSP; the front outlined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn, total = plot_frame(frame, max_points)
    fig, ax = plt.subplots(figsize=(9, 6), dpi=120)
    colours = plt.get_cmap("tab10")
    for i, (board, rows) in enumerate(drawn.groupby("board", sort=True)):
        front = rows["pareto"].to_numpy(dtype=bool)
        ax.scatter(rows["latency_ms"], rows["omega"], s=rows["marker_size"] ** 2 / 4, color=colours(i % 10),
                   alpha=0.35, linewidths=0, label=board)  # fmt: skip
        ax.scatter(rows["latency_ms"][front], rows["omega"][front], s=rows["marker_size"][front] ** 2 / 4,
                   facecolors=colours(i % 10), edgecolors="black", linewidths=0.8)  # fmt: skip
    ax.set_xscale("log")
    if (drawn["omega"] > 0).all():
        ax.set_yscale("log")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("Ω (Σ sensitivity of the bit plan; lower is more accurate)")
    ax.set_title(_title(drawn, total, name), fontsize=9)
    ax.legend(title="board", fontsize=8)
    ax.grid(True, which="both", alpha=0.2)
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def pareto_html(frame: pd.DataFrame, path: str | Path, *, name: str = "sweep", max_points: int = _MAX_POINTS) -> Path:
    """A self-contained interactive HTML file of the same plot, filterable by board and by bits."""
    import plotly.graph_objects as go

    drawn, total = plot_frame(frame, max_points)
    fig = go.Figure()
    boards = sorted(drawn["board"].unique())
    bits = sorted(drawn["bits"].unique())
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"]
    traces = []
    for b, board in enumerate(boards):
        for bit in bits:
            rows = drawn[(drawn["board"] == board) & (drawn["bits"] == bit)]
            if rows.empty:
                continue
            text = [
                f"{board} {r}×{c} {df}<br>{bit}, {clock:g} MHz, {bw:g} GB/s<br>DSP {dsp:.0f}, fits {fits}"
                for r, c, df, clock, bw, dsp, fits in zip(
                    rows["rows"], rows["cols"], rows["dataflow"], rows["clock_mhz"], rows["bandwidth_gbps"],
                    rows["dsp"], rows["fits"], strict=True,
                )
            ]  # fmt: skip
            fig.add_trace(
                go.Scattergl(
                    x=rows["latency_ms"], y=rows["omega"], mode="markers", name=f"{board} {bit}",
                    legendgroup=board, text=text, hovertemplate="%{text}<br>%{x:.4g} ms, Ω %{y:.4g}<extra></extra>",
                    marker={"size": rows["marker_size"], "color": palette[b % len(palette)], "opacity": 0.6,
                            "line": {"width": np.where(rows["pareto"], 1.5, 0), "color": "black"}},
                )
            )  # fmt: skip
            traces.append({"board": board, "bits": bit})
    fig.update_layout(
        title={"text": _title(drawn, total, name), "font": {"size": 13}},
        xaxis={"title": "latency (ms)", "type": "log"},
        yaxis={"title": "Ω (lower is more accurate)", "type": "log" if (drawn["omega"] > 0).all() else "linear"},
        template="plotly_white",
        margin={"t": 90},
    )
    controls = _filter_script(traces, boards, bits)
    path = Path(path)
    fig.write_html(path, include_plotlyjs=True, full_html=True, post_script=controls, div_id="mixbit-pareto")
    return path


def _filter_script(traces: list[dict[str, str]], boards: list[str], bits: list[str]) -> str:
    """JavaScript that adds the board and bits drop-downs above the plot and restyles trace visibility."""
    return f"""
(function () {{
  window.mixbitErrors = window.mixbitErrors || [];
  window.addEventListener('error', function (event) {{ window.mixbitErrors.push(String(event.message)); }});
  var traces = {json.dumps(traces)};
  var plot = document.getElementById('mixbit-pareto');
  var bar = document.createElement('div');
  bar.id = 'mixbit-filters';
  bar.style.cssText = 'font-family: sans-serif; font-size: 14px; margin: 8px;';
  function select(id, label, values) {{
    var wrap = document.createElement('label');
    wrap.textContent = label + ' ';
    var box = document.createElement('select');
    box.id = id;
    ['all'].concat(values).forEach(function (v) {{
      var option = document.createElement('option');
      option.value = v; option.textContent = v; box.appendChild(option);
    }});
    wrap.appendChild(box);
    bar.appendChild(wrap);
    bar.appendChild(document.createTextNode(' '));
    return box;
  }}
  var board = select('mixbit-board', 'board', {json.dumps(boards)});
  var bits = select('mixbit-bits', 'bits', {json.dumps(bits)});
  plot.parentNode.insertBefore(bar, plot);
  function apply() {{
    var visible = traces.map(function (t) {{
      return (board.value === 'all' || t.board === board.value) && (bits.value === 'all' || t.bits === bits.value);
    }});
    Plotly.restyle(plot, {{visible: visible}});
    plot.setAttribute('data-visible-traces', String(visible.filter(Boolean).length));
    plot.setAttribute('data-errors', String(window.mixbitErrors.length));
  }}
  board.addEventListener('change', apply);
  bits.addEventListener('change', apply);
  apply();
}})();
"""
