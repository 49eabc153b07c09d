"""Wall seconds and peak resident memory of each pipeline stage.

The memory figure is the process's resident-set high-water mark (``getrusage(RUSAGE_SELF).ru_maxrss``): it only
grows, so a stage's ``peak_rss_mb`` is the highest resident memory the process reached from its start to the end
of that stage. The first stage whose figure jumps is the one that set the peak. On a GPU the stage also records
``peak_device_mb``, torch's peak allocated CUDA memory during that stage alone (reset at the stage's start).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

__all__ = ["StageMeter", "StageRecord", "peak_rss_mb"]


def peak_rss_mb() -> float | None:
    """This process's resident-set high-water mark in MiB (None where ``resource`` is missing, e.g. Windows)."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)


@dataclass(frozen=True)
class StageRecord:
    """One stage: ``seconds`` (wall), ``peak_rss_mb`` (MiB, the process's high-water mark at the stage's end) and,
    on a CUDA device, ``peak_device_mb`` (MiB allocated by torch at most during the stage)."""

    name: str
    seconds: float
    peak_rss_mb: float | None
    peak_device_mb: float | None = None

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"name": self.name, "seconds": self.seconds, "peak_rss_mb": self.peak_rss_mb}
        if self.peak_device_mb is not None:
            obj["peak_device_mb"] = self.peak_device_mb
        return obj


class StageMeter:
    """Times named stages: ``with meter.stage("scores"): ...`` appends a ``StageRecord`` when the block ends
    (also when it raises, so a failed run's partial records stay readable). ``device``: a torch device name;
    ``cuda`` ones also get ``peak_device_mb``."""

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self.records: list[StageRecord] = []
        self._open: tuple[str, float] | None = None

    def start(self, name: str) -> None:
        """Open stage ``name`` (closing an open one first)."""
        self.stop()
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
        self._open = (name, time.perf_counter())

    def stop(self) -> None:
        """Close the open stage and record it; nothing when none is open."""
        if self._open is None:
            return
        name, start = self._open
        self._open = None
        device_mb = None
        if self.device.startswith("cuda"):
            import torch

            device_mb = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
        self.records.append(StageRecord(name, round(time.perf_counter() - start, 3), peak_rss_mb(), device_mb))

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.start(name)
        try:
            yield
        finally:
            self.stop()

    def seconds(self) -> dict[str, float]:
        """{stage name: seconds}, in stage order."""
        return {record.name: record.seconds for record in self.records}

    def peak_rss_mb(self) -> float | None:
        """The highest resident memory of the process so far (MiB)."""
        return peak_rss_mb()
