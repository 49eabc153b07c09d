"""The end-to-end pipeline and `mixbit allocate`: contract fields, files written, budgets that cannot be met."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from allocator.cli.main import main
from allocator.ilp.model import Limits
from allocator.pipeline.run import PipelineResult, predicted_uniform, run_pipeline, score_options
from sim.errors import InputError

SMALL = {
    "sensitivity_images": 32,
    "max_draws": 4,
    "calib_images": 64,
    "verify_images": 8,
    "baselines": ((8, 8), (4, 4)),
    "pareto_points": 3,
}


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> PipelineResult:
    out = tmp_path_factory.mktemp("run") / "out"
    return run_pipeline("mixbit_vit_test", "zcu102", latency_of=(4, 4), verify=True, out=out, **SMALL)


def test_plan_meets_the_latency_of_uniform_w4a4(result: PipelineResult) -> None:
    problem = result.allocation.problem
    w4a4 = predicted_uniform(problem, 4, 4)
    assert result.allocation.status == "optimal"
    assert result.allocation.predicted.latency_ms <= w4a4["latency_ms"] * (1 + 1e-9)
    # the ILP minimises Ω: no worse than the uniform plan that also meets the budget
    assert result.allocation.objective <= w4a4["score"] + 1e-9 * abs(w4a4["score"])
    assert {b.label for b in result.baselines} == {"W8A8", "W4A4"}
    assert set(result.allocation.problem.layers) == {c.layer for c in result.allocation.chosen}


def test_contract_json_and_files(result: PipelineResult) -> None:
    obj = result.to_json()
    for key in ("status", "objective", "constraints", "layers", "options", "predicted", "verify"):
        assert key in obj
    assert set(obj["predicted"]) >= {"latency_ms", "size_mb", "bops"}
    assert set(obj["options"][0]) >= {"layer", "wbits", "abits", "sensitivity", "latency_cycles", "size_bits", "bops"}
    assert obj["verify"]["mismatches"] == 0 and obj["verify"]["checked"] > 0
    assert obj["test_loss"]["fp32"] > 0 and obj["test_loss"]["quantized"] > 0
    assert all(b["test_loss"] > 0 for b in obj["baselines"])
    json.dumps(obj, allow_nan=False)
    files = {key: Path(path) for key, path in result.outputs.items()}
    assert all(path.is_file() and path.stat().st_size > 0 for path in files.values())
    plan = json.loads(files["plan"].read_text())
    assert set(plan["layers"]) == set(result.allocation.problem.layers)
    assert "mixed (ILP)" in files["report"].read_text() and "test loss" in files["report"].read_text()


def files_line(report: str) -> set[str]:
    """The file names report.md's closing "Files:" line lists."""
    [line] = [line for line in report.splitlines() if line.startswith("Files: ")]
    return {item.strip().split(" (")[0] for item in line.removeprefix("Files: ").rstrip(".").split(", ")}


def test_a_rerun_without_a_front_drops_pareto_png_from_the_folder_and_the_report(
    result: PipelineResult, tmp_path: Path
) -> None:
    """Item 3: a rerun into an old folder removed the stale pareto.png, but report.md must not list it either."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(Path(result.outputs["plan"]).parent, out)
    before = {p.name for p in out.iterdir()}
    assert "pareto.png" in before and files_line((out / "report.md").read_text()) == before - {
        "report.md",
        "result.json",
    }
    rerun = run_pipeline("mixbit_vit_test", "zcu102", latency_of=(4, 4), out=out, **{**SMALL, "pareto_points": 0})
    after = {p.name for p in out.iterdir()}
    assert after == before - {"pareto.png"} and set(map(lambda p: Path(p).name, rerun.outputs.values())) == after
    assert files_line((out / "report.md").read_text()) == after - {"report.md", "result.json"}


def test_impossible_latency_fails_before_any_work(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"latency .* cannot be met; the fastest plan takes"):
        run_pipeline("mixbit_vit_test", "zcu102", limits=Limits(latency_ms=1e-6), out=out, **SMALL)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_cli_impossible_budget_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    status = main(
        [
            "allocate",
            "--target",
            "zcu102",
            "--model",
            "mixbit_vit_test",
            "--size-mb",
            "1e-6",
            "--out",
            str(out),
            "--json",
        ]
    )
    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: size") and "the smallest plan is" in lines[0]
    assert not out.exists()


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--model", "no_such_model"], "unknown model 'no_such_model'"),
        (["--target", "no_such_board"], "no_such_board"),
        (["--latency-ms", "1", "--latency-of", "W4A4"], "not both"),
        (["--draws", "0", "--pareto-points", "0", "--json"], "argument --draws: must be at least 1"),
        (["--hessian-form", "trace", "--draws", "0", "--json"], "argument --draws: must be at least 1"),
        (["--quadratic-draws", "0", "--json"], "argument --quadratic-draws: must be at least 1"),
    ],
)
def test_cli_bad_input(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    # argparse keeps the last of a repeated option, so argv may override the defaults given first
    status = main(["allocate", "--target", "zcu102", "--model", "mixbit_vit_test", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(err) == 1 and err[0].startswith("error:") and needle in err[0]


def test_scores_take_the_form_and_the_calibration_method_asked_for() -> None:
    """The ILP's Ω: the Hessian quadratic form by default, HAWQ-V2's trace form on request; activation errors
    from quantizers fitted as the plan will be calibrated (MSE search by default, not min-max) and of the
    plan's activation kind."""
    import torch

    from quant.models import create_model, default_input

    torch.manual_seed(0)
    net = create_model("mixbit_vit_test").eval()
    batch = (default_input(net, batch=8), torch.randint(0, 10, (8,)))
    pairs = [(4, 4), (8, 8)]
    quadratic = score_options(net, batch, pairs)
    trace = score_options(net, batch, pairs, form="trace", max_draws=2)
    minmax = score_options(net, batch, pairs, act_method="minmax")
    signs = score_options(net, batch, pairs, quadratic_draws=2)
    log2 = score_options(net, batch, pairs, act_kind="log2")
    auto = score_options(net, batch, pairs, act_kind="auto")
    assert list(quadratic.columns) == ["layer", "wbits", "abits", "sensitivity", "sensitivity_se"]
    # the size-chosen default is exact on a model this small; random signs carry a standard error
    assert quadratic.attrs["estimator"]["estimator"] == "exact" and (quadratic.sensitivity_se == 0).all()
    assert signs.attrs["estimator"]["estimator"] == "random_sign" and (signs.sensitivity_se > 0).any()
    assert trace.attrs["estimator"]["form"] == "trace" and (trace.sensitivity_se > 0).any()
    assert quadratic.shape == trace.shape == minmax.shape == signs.shape
    assert not quadratic.sensitivity.equals(trace.sensitivity)
    assert not quadratic.sensitivity.equals(minmax.sensitivity)
    assert not quadratic.sensitivity.equals(signs.sensitivity)
    # the activation quantizer's kind changes the activation errors; "auto" is priced as uniform
    assert not quadratic.sensitivity.equals(log2.sensitivity) and quadratic.sensitivity.equals(auto.sensitivity)
    assert (quadratic.sensitivity > 0).all()
