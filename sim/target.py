"""Hardware targets: one TOML file per board or accelerator, parsed and validated once into frozen objects.

Nothing downstream reads raw TOML dicts or re-checks values: a ``Target`` that exists is valid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = [
    "Accelerator",
    "Buffers",
    "Caps",
    "Device",
    "Memory",
    "Target",
    "list_targets",
    "load_target",
]

Dataflow = Literal["os", "ws", "is"]
PeKind = Literal["dsp_packed", "lut", "bitfusion", "int8"]


@dataclass(frozen=True)
class Device:
    """The programmable device's resources (vendor table counts)."""

    part: str
    lut: int
    ff: int
    dsp: int
    bram36: int
    uram: int


@dataclass(frozen=True)
class Caps:
    """Fraction of each device resource a design may use (0 < cap <= 1)."""

    lut: float
    ff: float
    dsp: float
    bram36: float
    uram: float


@dataclass(frozen=True)
class Memory:
    """Off-chip memory: peak bandwidth in GB/s (1e9 bytes per second)."""

    kind: str
    bandwidth_gbps: float


@dataclass(frozen=True)
class Buffers:
    """On-chip SRAM for each operand, in bytes (double-buffered halves included)."""

    ifmap_bytes: int
    filter_bytes: int
    ofmap_bytes: int


@dataclass(frozen=True)
class Accelerator:
    """The systolic array laid on the device."""

    rows: int
    cols: int
    dataflow: Dataflow
    pe: PeKind
    weight_bits: tuple[int, ...]
    act_bits: tuple[int, ...]
    buffers: Buffers
    vector_lanes: int


@dataclass(frozen=True)
class Target:
    """A board (or reference accelerator) with the accelerator on it.

    ``sources`` maps a dotted key (``device.dsp``) to where its number comes from, or to a string
    starting with ``assumption:`` for numbers that are ours.
    """

    name: str
    description: str
    path: Path
    clock_mhz: float
    device: Device
    caps: Caps
    memory: Memory
    accelerator: Accelerator
    sources: tuple[tuple[str, str], ...]

    @property
    def bytes_per_cycle(self) -> float:
        """Off-chip bytes one accelerator clock cycle can move at peak bandwidth."""
        return self.memory.bandwidth_gbps * 1e9 / (self.clock_mhz * 1e6)


def load_target(name_or_path: str | Path) -> Target:
    """Load and validate a shipped target by name (``zcu102``) or a TOML file by path."""
    raise NotImplementedError


def list_targets() -> list[str]:
    """Names of the shipped targets, sorted."""
    raise NotImplementedError
