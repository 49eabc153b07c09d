"""The end-to-end pipeline and `mixbit allocate`: contract fields, files written, budgets that cannot be met."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import sim
from allocator.cli.main import main
from allocator.ilp.model import Limits, allocate, problem_from_json
from allocator.pipeline.run import PipelineConfig, PipelineResult, predicted_uniform, run_pipeline, score_options
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


STAGES = ["load", "costs", "budget", "scores", "solve", "evaluate", "verify", "write"]


def test_each_stage_is_timed_and_metered(result: PipelineResult) -> None:
    obj = result.to_json()
    assert [stage["name"] for stage in obj["stages"]] == STAGES
    assert list(obj["seconds"]) == STAGES
    assert all(stage["seconds"] >= 0 for stage in obj["stages"])
    assert obj["seconds"]["scores"] > 0 and obj["seconds"]["evaluate"] > 0
    peaks = [stage["peak_rss_mb"] for stage in obj["stages"]]
    # a high-water mark: never falls from one stage to the next, and the run's peak is at least the last stage's
    assert all(p > 50 for p in peaks) and peaks == sorted(peaks) and obj["peak_rss_mb"] >= peaks[-1]
    written = json.loads(Path(result.outputs["result"]).read_text())
    assert [stage["name"] for stage in written["stages"]] == STAGES  # the write stage is in the file too
    report = Path(result.outputs["report"]).read_text()
    assert "## Stages" in report and "| scores |" in report and "| write |" in report


def test_the_json_alone_re_solves_to_the_same_plan(result: PipelineResult) -> None:
    obj = json.loads(json.dumps(result.to_json()))  # what a reader of result.json / --json has
    assert obj["clock_mhz"] == sim.load_target("zcu102").clock_mhz
    assert obj["fixed_cycles"] == result.allocation.problem.fixed_cycles  # 0 when the vector units are fused
    problem, limits = problem_from_json(obj)
    again = allocate(problem, limits).check()
    assert again.plan()["layers"] == result.allocation.plan()["layers"]
    assert again.predicted.latency_ms == pytest.approx(obj["predicted"]["latency_ms"], rel=1e-12)
    assert again.objective == pytest.approx(obj["objective"], rel=1e-9)
    assert limits.latency_ms == obj["constraints"]["latency_ms"]
    assert again.predicted.energy_mj == pytest.approx(result.allocation.predicted.energy_mj, rel=1e-12)
    assert problem.fixed_energy_mj == result.allocation.problem.fixed_energy_mj


@pytest.mark.parametrize(("drop", "needle"), [("fixed_cycles", "no 'fixed_cycles'"), ("options", "no 'options'")])
def test_problem_from_json_names_what_is_missing(result: PipelineResult, drop: str, needle: str) -> None:
    obj = result.to_json()
    del obj[drop]
    with pytest.raises(InputError, match=needle):
        problem_from_json(obj, where="result.json")


def test_config_checks_its_values_once() -> None:
    target = sim.load_target("zcu102")
    with pytest.raises(InputError, match="unknown sensitivity method"):
        PipelineConfig(target=target, sensitivity="magic")
    with pytest.raises(InputError, match="verify_images must be at least 1"):
        PipelineConfig(target=target, verify_images=0)
    with pytest.raises(InputError, match="--export needs --out"):
        PipelineConfig(target=target, exports=("npz",))
    config = PipelineConfig(target=target, out="somewhere")  # type: ignore[arg-type]
    assert config.out == Path("somewhere") and len(config.bit_pairs) == 36


def test_cli_json_stays_pure_with_progress_bars(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["allocate", "--target", "zcu102", "--model", "mixbit_vit_test", "--latency-of", "W4A4"]
    small = ["--sensitivity-images", "16", "--pareto-points", "0", "--verify", "--threads", "1"]
    status = main([*argv, *small, "--json", "--progress"])
    captured = capsys.readouterr()
    assert status == 0
    obj = json.loads(captured.out)  # nothing but the JSON object on stdout
    assert captured.out.count("\n") == 1
    for bar in ("fitting quantizers", "hessian scores", "evaluating plans", "calibrating", "verifying"):
        assert bar in captured.err  # tqdm bars went to stderr
    assert obj["threads"] == 1 and obj["device"] == "cpu"
    assert [stage["name"] for stage in obj["stages"]] == STAGES[:-1]  # no --out: no write stage


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
        (["--threads", "0", "--json"], "argument --threads: must be at least 1"),
        (["--device", "tpu", "--json"], "--device tpu: unknown device"),
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


def test_cli_cuda_without_a_gpu_exits_2_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible here")
    out = tmp_path / "out"
    argv = ["allocate", "--target", "zcu102", "--model", "mixbit_vit_test", "--device", "cuda", "--out", str(out)]
    status = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1
    assert err[0] == "error: --device cuda: no CUDA GPU is visible to torch here (torch.cuda.is_available() is False)"
    assert not out.exists()


def test_counts_left_out_follow_the_model_size() -> None:
    import torch

    from allocator.pipeline.run import BIG_CPU_DEFAULTS, SMALL_DEFAULTS, sized_config

    target = sim.load_target("zcu102")
    small_net = torch.nn.Linear(10, 10)
    big_net = torch.nn.Linear(2300, 2300)  # 5.3 M parameters
    config, settings = sized_config(PipelineConfig(target=target), small_net)
    assert (config.sensitivity_images, config.calib_images, config.verify_images) == (128, 256, 200)
    assert config.quadratic_draws is None and settings["size_rule"].startswith("small")
    config, settings = sized_config(PipelineConfig(target=target, calib_images=64), big_net)
    assert settings["model_parameters"] == 2300 * 2300 + 2300 and settings["size_rule"].startswith("big")
    assert config.calib_images == 64  # the user's value stays
    assert config.sensitivity_images == BIG_CPU_DEFAULTS["sensitivity_images"] != SMALL_DEFAULTS["sensitivity_images"]
    assert config.quadratic_draws == BIG_CPU_DEFAULTS["quadratic_draws"] and config.verify_images == 32
    assert settings["chosen_by_size"] == ["quadratic_draws", "sensitivity_images", "verify_images"]
    exact, _ = sized_config(PipelineConfig(target=target, quadratic_estimator="exact"), big_net)
    assert exact.quadratic_draws is None  # draws belong to the random-sign form only


def test_verify_on_a_model_the_integer_path_cannot_take_fails_first() -> None:
    import timm
    import torch

    from allocator.pipeline.run import run_stages

    swin = timm.create_model(
        "swin_tiny_patch4_window7_224",
        pretrained=False,
        depths=(1, 1, 1, 1),
        embed_dim=24,
        num_heads=(1, 1, 1, 1),
        global_pool="max",
    )
    config = PipelineConfig(target=sim.load_target("zcu102"), verify=True)
    with pytest.raises(InputError, match=r"^--verify: SwinTransformer: head pooling 'max' is not supported"):
        run_stages(swin, None, config)  # type: ignore[arg-type]  # fails before the data is touched
    with pytest.raises(InputError, match=r"^--verify: Linear is not a timm VisionTransformer"):
        run_stages(torch.nn.Linear(4, 4), None, config)  # type: ignore[arg-type]
