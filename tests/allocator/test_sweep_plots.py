"""Sweep plots (allocator/sweep/plots.py): the Pareto PNG, the self-contained HTML, and the HTML in a real
headless Chromium (skipped where Chromium is not installed: `apt-get install chromium`)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from allocator.sweep.plots import pareto_html, pareto_png, plot_frame


def sweep_frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    bits = rng.choice([8, 4], size=n)
    return pd.DataFrame(
        {
            "point_id": [f"{i:016x}" for i in range(n)],
            "target": rng.choice(["zcu102", "kv260", "/boards/mine.toml"], size=n),
            "rows": rng.choice([8, 16, 32], size=n),
            "cols": rng.choice([8, 16, 32], size=n),
            "dataflow": rng.choice(["os", "ws"], size=n),
            "clock_mhz": 300.0,
            "bandwidth_gbps": 19.2,
            "wbits": bits,
            "abits": 8,
            "allocate": False,
            "latency_ms": rng.uniform(1, 100, size=n),
            "omega": np.where(bits == 8, 1.0, 4.0) * rng.uniform(1, 2, size=n),
            "dsp": rng.integers(64, 2048, size=n).astype(float),
            "fits": True,
            "error": np.where(np.arange(n) == 0, "rejected", ""),
        }
    )


def test_plot_frame_keeps_the_front_and_samples_the_rest() -> None:
    frame = sweep_frame()
    drawn, total = plot_frame(frame, max_points=50)
    assert total == len(frame) - 1  # the row with an error is not drawn
    assert drawn["pareto"].sum() == plot_frame(frame)[0]["pareto"].sum() > 0
    assert len(drawn) == 50 and set(drawn["board"]) == {"zcu102", "kv260", "mine"}
    assert set(drawn["bits"]) == {"W8A8", "W4A8"}


def test_png_and_self_contained_html(tmp_path: Path) -> None:
    frame = sweep_frame()
    png = pareto_png(frame, tmp_path / "pareto.png", name="t")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = pareto_html(frame, tmp_path / "pareto.html", name="t").read_text()
    assert '<script src="http' not in html and len(html) > 1_000_000  # plotly.js inlined: works offline
    assert "mixbit-board" in html and "mixbit-bits" in html and '"W4A8"' in html


BROWSERS = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)


@pytest.mark.slow
@pytest.mark.skipif(
    CHROMIUM is None and os.environ.get("CI") != "true",
    reason="Chromium not installed (Debian/Ubuntu: apt-get install chromium; scripts/test installs it as root)",
)
def test_html_loads_in_headless_chromium_without_console_errors(tmp_path: Path) -> None:
    assert CHROMIUM is not None, "CI=true: scripts/test installs chromium; without it this test cannot run"
    page = pareto_html(sweep_frame(), tmp_path / "pareto.html", name="t")
    command = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
        "--virtual-time-budget=10000", "--dump-dom", page.as_uri(),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    assert 'id="mixbit-filters"' in dom and 'data-errors="0"' in dom
    assert 'data-visible-traces="6"' in dom  # 3 boards × 2 bit pairs, all shown
    assert "main-svg" in dom  # plotly drew the figure
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not [line for line in console if "error" in line.lower() or "Uncaught" in line], console
