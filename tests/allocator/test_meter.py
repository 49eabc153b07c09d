"""Stage timing and the resident-memory high-water mark."""

from __future__ import annotations

import time

import numpy as np
import pytest

from allocator.pipeline.meter import StageMeter, peak_rss_mb


def test_stages_record_seconds_and_a_rising_high_water_mark() -> None:
    meter = StageMeter()
    with meter.stage("sleep"):
        time.sleep(0.05)
    with meter.stage("allocate"):
        block = np.ones(64 * 2**20 // 8)  # 64 MiB touched: the mark may rise, never fall
        del block
    meter.start("open")
    meter.stop()
    meter.stop()  # nothing open: no record
    names = [r.name for r in meter.records]
    assert names == ["sleep", "allocate", "open"]
    assert meter.records[0].seconds >= 0.05 and list(meter.seconds()) == names
    first, second = meter.records[0].peak_rss_mb, meter.records[1].peak_rss_mb
    assert first is not None and second is not None and second >= first
    assert meter.peak_rss_mb() == peak_rss_mb() >= second
    assert meter.records[0].to_json() == {"name": "sleep", "seconds": meter.records[0].seconds, "peak_rss_mb": first}


def test_a_failing_stage_is_still_recorded() -> None:
    meter = StageMeter()
    with pytest.raises(RuntimeError), meter.stage("broken"):
        raise RuntimeError("boom")
    assert [r.name for r in meter.records] == ["broken"]
