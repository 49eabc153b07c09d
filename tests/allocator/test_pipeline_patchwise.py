"""The pipeline with --patchwise: token-split options reach the ILP, its plan quantizes, verifies and is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import sim
from allocator.pipeline.run import PipelineConfig, run_pipeline
from quant.plan import BitPlan
from sim.errors import InputError

SMALL = {
    "sensitivity_images": 16,
    "calib_images": 32,
    "verify_images": 4,
    "baselines": ((4, 4),),
    "pareto_points": 0,
}


def test_patchwise_options_reach_the_ilp_and_the_plan_verifies(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_pipeline(
        "mixbit_vit_test", "bitfusion_16x32", latency_of=(4, 4), verify=True, out=out, patchwise=0.25, **SMALL
    )
    problem = result.allocation.problem
    frame = problem.to_frame()
    split = frame[frame["abits_low"] > 0]
    assert set(split["token_fraction"]) == {0.25}
    linear = {
        n for n in problem.layers if n.startswith("blocks.") and n.rsplit(".", 1)[-1] in ("qkv", "proj", "fc1", "fc2")
    }
    assert set(split["layer"]) == linear and len(linear) == 8
    plan = json.loads((out / "plan.json").read_text())
    chosen = {c.layer: c for c in result.allocation.chosen}
    for name, bits in plan["layers"].items():
        assert ("abits_low" in bits) == bool(chosen[name].abits_low)
    BitPlan.from_dict(plan)  # quant reads what the pipeline wrote
    assert result.verify is not None and result.verify.mismatches == 0
    options = result.to_json()["options"] if "options" in result.to_json() else result.allocation.to_json()["options"]
    assert sum(1 for row in options if row.get("abits_low")) == len(split)


def test_patchwise_config_is_checked_before_any_work() -> None:
    with pytest.raises(InputError, match="outside \\(0, 1\\)"):
        PipelineConfig(target=sim.load_target("zcu102"), patchwise=1.0)
    with pytest.raises(InputError, match="no patch-wise support"):
        PipelineConfig(target=sim.load_target("kv260"), patchwise=0.5)
