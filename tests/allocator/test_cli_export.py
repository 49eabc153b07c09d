"""`mixbit export`: writes and checks each format; bad input exits 2 with one `error:` line and writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from allocator.cli.commands.export import predicted_cost
from allocator.cli.main import main

SMALL = ["--images", "8", "--calibration", "32"]


def write_plan(tmp_path: Path, plan: dict) -> str:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    return str(path)


@pytest.mark.slow  # quantize + calibrate + export + onnxruntime: 5-20 s on this shared machine
def test_export_onnx_int_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = write_plan(tmp_path, {"model": "mixbit_vit_test", "default": {"wbits": 4, "abits": 8}})
    out = tmp_path / "m.int.onnx"
    args = ["export", "--model", "mixbit_vit_test", "--bits", plan, "--format", "onnx-int", "--out", str(out)]
    status = main([*args, *SMALL, "--json"])
    result = json.loads(capsys.readouterr().out)  # one JSON object, nothing else on stdout
    assert status == 0 and result["ok"]
    assert result["check"]["mismatches"] == 0 and result["check"]["images"] == 8 and result["check"]["outputs"] == 24
    assert result["files"] == {str(out): out.stat().st_size} and result["bytes"] == out.stat().st_size
    assert result["widths"]["accumulator_bits"] == 32  # no --target: 32-bit accumulators


@pytest.mark.slow
def test_export_npz_for_a_target_uses_its_pe_accumulator_widths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sim.resources import pe_accumulator_bits

    layers = {"blocks.1.mlp.fc1": {"wbits": 2, "abits": 4}}
    plan = write_plan(tmp_path, {"model": "mixbit_vit_test", "default": {"wbits": 8, "abits": 8}, "layers": layers})
    out = tmp_path / "npz"
    args = ["export", "--model", "mixbit_vit_test", "--bits", plan, "--format", "npz", "--out", str(out)]
    assert main([*args, *SMALL, "--target", "zcu102", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] and result["check"]["mismatches"] == 0
    acc = result["widths"]["accumulator_bits"]
    assert acc["blocks.1.mlp.fc1"] == pe_accumulator_bits(2, 4) < acc["blocks.0.attn.qkv"] == pe_accumulator_bits(8, 8)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["widths"]["accumulator_bits"] == acc and manifest["widths"]["nonlinear_bits"] == 32
    # the text summary of an npz export (it ended in a KeyError traceback after writing the files)
    assert main([*args, *SMALL, "--target", "zcu102"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("mixbit_vit_test with ") and "0 mismatches" in lines[1] and "arrays of" in lines[1]


def test_datapath_widths_follow_the_pe_model_and_narrow_ones_are_caught() -> None:
    """The integer model checks accumulators against the target's widths: a PE model narrower than the values an
    accumulator reaches is an error naming the GEMM (here W8A8 accumulators forced to the width of W2A2)."""
    import torch

    from allocator.bridge.widths import datapath_widths
    from quant.calibrate import calibrate_
    from quant.integer import WidthError, Widths, to_integer
    from quant.models import create_model
    from quant.plan import BitPlan
    from quant.quantize import QuantConfig, gemm_names, quantize_
    from sim.resources import pe_accumulator_bits

    torch.manual_seed(0)
    model = create_model("mixbit_vit_test")
    plan = BitPlan.uniform("mixbit_vit_test", 8, 8)
    quantize_(model, QuantConfig(plan=plan))
    images = torch.randn(4, 1, 16, 16)
    calibrate_(model, images)
    widths = datapath_widths(model, plan)
    assert widths.accumulator_bits == {name: pe_accumulator_bits(8, 8) for name in gemm_names(model)}
    assert to_integer(model, widths).run(images).logits.shape == (4, 10)
    narrow = Widths(accumulator_bits=dict.fromkeys(gemm_names(model), pe_accumulator_bits(2, 2)))
    with pytest.raises(WidthError, match=r"^patch_embed\.proj: accumulator 'acc'"):
        to_integer(model, narrow).run(images)


@pytest.mark.slow  # the qonnx executor runs node by node: 10-40 s on this shared machine
def test_export_qonnx_checks_executor_and_inference_cost(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = write_plan(
        tmp_path,
        {
            "model": "mixbit_vit_test",
            "default": {"wbits": 8, "abits": 8},
            "layers": {"blocks.1.mlp.fc1": {"wbits": 2, "abits": 4}},
        },
    )
    out = tmp_path / "m.qonnx.onnx"
    args = ["export", "--model", "mixbit_vit_test", "--bits", plan, "--format", "qonnx", "--out", str(out)]
    status = main([*args, *SMALL])
    text = capsys.readouterr().out
    assert status == 0, text
    assert "within tolerance: True" in text and ": equal" in text


def test_predicted_cost_counts_macs_bops_and_weight_bits() -> None:
    from quant.models import create_model
    from quant.plan import BitPlan, LayerBits

    model = create_model("mixbit_vit_test")
    plan = BitPlan("mixbit_vit_test", {"head": LayerBits(2, 4)}, default=LayerBits(8, 8))
    cost = predicted_cost(model, plan)
    head = cost["layers"]["head"]  # 48 -> 10 classes on the class token
    assert head == {"macs": 480, "bops": 480 * 2 * 4, "weight_bits": 480 * 2}
    qkv = cost["layers"]["blocks.0.attn.qkv"]  # 17 tokens, 48 -> 144
    assert qkv == {"macs": 17 * 48 * 144, "bops": 17 * 48 * 144 * 64, "weight_bits": 48 * 144 * 8}
    assert cost["macs"] == sum(layer["macs"] for layer in cost["layers"].values())


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("format", "error: unknown export format 'tflite'; choose from qonnx, onnx-int, npz"),
        ("model", "is for model 'deit_small_patch16_224', not 'mixbit_vit_test'"),
        ("out", "does not exist"),
        ("kind", "qonnx cannot express the 'log2' quantizer"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    case: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = {"model": "mixbit_vit_test", "default": {"wbits": 8, "abits": 8}}
    fmt, out = "qonnx", tmp_path / "exports" / "m.onnx"
    (tmp_path / "exports").mkdir()
    if case == "format":
        fmt = "tflite"
    elif case == "model":
        plan["model"] = "deit_small_patch16_224"
    elif case == "out":
        out = tmp_path / "missing" / "m.onnx"
    else:
        plan["layers"] = {"blocks.0.attn.matmul_av": {"wbits": 8, "abits": 4, "act_kind": "log2"}}
    path = write_plan(tmp_path, plan)
    args = ["export", "--model", "mixbit_vit_test", "--bits", path, "--format", fmt, "--out", str(out), *SMALL]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert list((tmp_path / "exports").iterdir()) == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--export", "qonnx,tflite"], "error: unknown export format 'tflite'"),
        (["--export", "onnx-int", "--no-out"], "error: --export needs --out"),
    ],
)
def test_allocate_export_bad_input_exits_2_before_any_work(
    extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = ["--out", str(tmp_path / "out")] if "--no-out" not in extra else []
    extra = [arg for arg in extra if arg != "--no-out"]
    args = ["allocate", "--target", "zcu102", "--model", "mixbit_vit_test", "--latency-of", "W8A8", *out, *extra]
    assert main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # the whole pipeline on the 2-block test ViT, then three exports: 30-120 s here
def test_allocate_writes_exports_beside_the_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    args = ["allocate", "--target", "zcu102", "--model", "mixbit_vit_test", "--latency-of", "W8A8"]
    args += ["--pareto-points", "0", "--sensitivity-images", "16", "--out", str(out), "--export", "qonnx,onnx-int,npz"]
    assert main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    names = sorted(p.name for p in out.iterdir())
    assert {"plan.json", "model.qonnx.onnx", "model.int.onnx", "npz"} <= set(names)
    assert sorted(p.name for p in (out / "npz").iterdir()) == ["manifest.json", "model.npz"]
    assert set(result["exports"]) == {"qonnx", "onnx-int", "npz"}
    assert result["exports"]["onnx-int"]["path"] == str(out / "model.int.onnx")
    assert result["outputs"]["export_npz"] == str(out / "npz")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind
    # the integer formats use the accumulators zcu102's PE model builds for each GEMM's chosen bits
    from sim.resources import pe_accumulator_bits

    manifest = json.loads((out / "npz" / "manifest.json").read_text())
    chosen = {layer["name"]: (layer["wbits"], layer["abits"]) for layer in result["layers"]}
    assert manifest["widths"]["accumulator_bits"] == {n: pe_accumulator_bits(*bits) for n, bits in chosen.items()}
