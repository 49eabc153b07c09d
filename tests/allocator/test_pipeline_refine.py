"""`run_pipeline(refine=N, solver=..., sensitivity="pmq")` and `mixbit allocate --refine N --solver pareto`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import sim
from allocator.cli.main import main
from allocator.ilp.model import allocate
from allocator.pipeline.run import PipelineConfig, PipelineResult, run_pipeline, score_options
from sim.errors import InputError

SMALL = {
    "sensitivity_images": 32,
    "calib_images": 64,
    "baselines": ((8, 8),),
    "pareto_points": 0,
}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models: one thread took 7 s for the run below, two threads on a loaded machine 75 s."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> PipelineResult:
    out = tmp_path_factory.mktemp("refine") / "out"
    return run_pipeline(
        "mixbit_vit_test",
        "zcu102",
        latency_of=(4, 4),
        sensitivity="pmq",
        solver="pareto",
        refine=3,
        out=out,
        **SMALL,
    )


def test_every_round_is_recorded_and_the_last_is_the_plan(result: PipelineResult) -> None:
    rounds = result.refine_rounds
    assert [r.round for r in rounds] == list(range(len(rounds)))
    assert 2 <= len(rounds) <= 4  # round 0 and 1..3, fewer when a round leaves the plan unchanged
    limit = result.allocation.limits.latency_ms
    for r in rounds:
        assert math.isfinite(r.objective) and r.objective >= 0
        assert r.latency_ms <= limit * (1 + 1e-9)
        assert r.accuracy is not None and 0.0 <= r.accuracy <= 1.0
        assert r.seconds > 0
    # only the last round may have left the plan as it was (that is what stops the loop)
    assert all(r.changed_layers > 0 for r in rounds[1:-1])
    assert len(rounds) == 4 or rounds[-1].changed_layers == 0
    last = rounds[-1]
    assert result.allocation.refinements == last.round
    assert result.allocation.objective == pytest.approx(last.objective)
    assert result.allocation.predicted.latency_ms == pytest.approx(last.latency_ms)
    assert result.accuracy == pytest.approx(last.accuracy)  # the same plan, seed and images
    assert [s.name for s in result.stages].index("refine") == [s.name for s in result.stages].index("solve") + 1


def test_json_and_report_carry_the_rounds(result: PipelineResult) -> None:
    obj = json.loads(Path(result.outputs["result"]).read_text())
    assert obj["solver"] == "pareto"
    assert obj["refinements"] == result.refine_rounds[-1].round
    rounds = obj["refine"]["rounds"]
    assert len(rounds) == len(result.refine_rounds)
    assert set(rounds[0]) == {
        "round", "objective", "latency_ms", "size_mb", "accuracy", "test_loss", "changed_layers", "seconds"
    }  # fmt: skip
    assert obj["sensitivity"]["form"] == "pmq"
    report = Path(result.outputs["report"]).read_text()
    assert "## Refinement rounds" in report
    table = [line for line in report.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(table) == len(rounds)


def test_pareto_plan_has_the_ilps_omega_under_one_limit(result: PipelineResult) -> None:
    problem, limits = result.allocation.problem, result.allocation.limits
    ilp = allocate(problem, limits)
    assert result.allocation.objective == pytest.approx(ilp.objective, rel=1e-6)


@pytest.mark.parametrize("refine", [0, -2])
def test_config_refuses_a_refine_below_one(refine: int) -> None:
    with pytest.raises(InputError, match=f"refine must be at least 1 round .*got {refine}"):
        PipelineConfig(target=sim.load_target("zcu102"), refine=refine)


def test_config_refuses_unknown_solver_and_sensitivity() -> None:
    target = sim.load_target("zcu102")
    with pytest.raises(InputError, match="unknown solver 'greedy'"):
        PipelineConfig(target=target, solver="greedy")
    with pytest.raises(InputError, match="unknown sensitivity method 'snip'"):
        PipelineConfig(target=target, sensitivity="snip")


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--refine", "0"], "argument --refine: must be at least 1, got 0"),
        (["--refine", "-1"], "argument --refine: must be at least 1, got -1"),
        (["--refine", "two"], "argument --refine: expected an integer"),
        (["--solver", "greedy"], "argument --solver: invalid choice"),
        (["--sensitivity", "snip"], "argument --sensitivity: invalid choice"),
    ],
)
def test_cli_bad_input_exits_2_in_one_line(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["allocate", "--target", "zcu102", "--model", "mixbit_vit_test", "--json", *argv])
    captured = capsys.readouterr()
    assert status == 2 and captured.out == ""
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and needle in err[0]


def test_score_options_reaches_the_seed_scorers_and_scores_at_a_plan() -> None:
    """``--sensitivity fisher-type`` and ``pmq`` reach their scorers; ``plan=`` scores on the model quantized with
    that plan (what each refine round does), which moves the scores."""
    from quant.models import create_model, default_input
    from quant.plan import BitPlan

    torch.manual_seed(0)
    net = create_model("mixbit_vit_test").eval()
    batch = (default_input(net, batch=8), torch.randint(0, 10, (8,)))
    pairs = [(2, 2), (4, 4), (8, 8)]
    typed = score_options(net, batch, pairs, method="fisher-type")
    pmq = score_options(net, batch, pairs, method="pmq")
    assert typed.attrs["estimator"]["estimator"] == "type-aware fisher traces (LampQ)"
    assert pmq.attrs["estimator"]["form"] == "pmq"
    for frame in (typed, pmq):
        assert list(frame.columns) == ["layer", "wbits", "abits", "sensitivity", "sensitivity_se"]
        assert frame["sensitivity"].notna().all() and (frame["sensitivity"] >= 0).all()
    low = BitPlan.uniform("mixbit_vit_test", 2, 2, "uniform")
    at_plan = score_options(net, batch, pairs, method="pmq", plan=low)
    assert at_plan.shape == pmq.shape and not at_plan["sensitivity"].equals(pmq["sensitivity"])
