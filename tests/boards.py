"""Targets built in code for tests that must not depend on the shipped TOML files."""

from __future__ import annotations

from pathlib import Path

from sim.target import Accelerator, Buffers, Caps, Device, Memory, Target

__all__ = ["zcu102_like_16x16"]


def zcu102_like_16x16() -> Target:
    """A ZCU102-sized board (no URAM) with a 16×16 DSP-packed OS array supporting 4 and 8 bits."""
    return Target(
        name="board",
        description="test board",
        path=Path("board.toml"),
        clock_mhz=200.0,
        device=Device("xczu9eg", lut=274_080, ff=548_160, dsp=2_520, bram36=912, uram=0),
        caps=Caps(lut=0.7, ff=0.5, dsp=0.8, bram36=0.8, uram=0.8),
        memory=Memory("ddr4", 19.2),
        accelerator=Accelerator(16, 16, "os", "dsp_packed", (4, 8), (4, 8), Buffers(1 << 18, 1 << 18, 1 << 17), 16),
        sources=(),
    )
