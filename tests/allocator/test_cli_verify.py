"""`mixbit verify`: exit 0 when bit-exact, 1 on mismatches, 2 with one `error:` line on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import quant.integer
from allocator.cli.main import main

SMALL = ["--images", "8", "--calibration", "32"]


def write_plan(tmp_path: Path, plan: dict) -> str:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    return str(path)


@pytest.mark.slow  # quantize + calibrate + verify: 7-28 s on this shared machine
def test_verify_json_reports_zero_mismatches(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = write_plan(
        tmp_path,
        {
            "model": "mixbit_vit_test",
            "default": {"wbits": 8, "abits": 8},
            "layers": {"blocks.0.attn.matmul_av": {"wbits": 8, "abits": 4, "act_kind": "log2"}},
        },
    )
    status = main(["verify", "--model", "mixbit_vit_test", "--bits", plan, *SMALL, "--json"])
    out = capsys.readouterr().out
    result = json.loads(out)  # one JSON object, nothing else on stdout
    assert status == 0
    assert result["mismatches"] == 0 and result["checked"] > 0 and result["images"] == 8
    assert result["points"] == 24 and result["first_mismatch"] is None
    assert result["accuracy"]["integer"] == result["accuracy"]["exact"]
    assert result["accumulators"]["blocks.0.attn.matmul_av"]["dtype"] == "int32"


@pytest.mark.slow  # quantize + calibrate + verify: 7-28 s on this shared machine
def test_verify_text_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = write_plan(tmp_path, {"model": "mixbit_vit_test", "default": {"wbits": 4, "abits": 4}})
    assert main(["verify", "--model", "mixbit_vit_test", "--bits", plan, *SMALL]) == 0
    assert "bit-exact" in capsys.readouterr().out


@pytest.mark.slow  # quantize + calibrate + verify: 7-28 s on this shared machine
def test_verify_exits_1_on_mismatches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = quant.integer.to_integer

    def off_by_one_logits(model: object) -> quant.integer.IntegerModel:
        integer = real(model)  # type: ignore[arg-type]
        head = integer.head
        object.__setattr__(integer, "head", type(head)(**{**head.__dict__, "bias": head.bias + 1}))
        return integer

    monkeypatch.setattr(quant.integer, "to_integer", off_by_one_logits)
    plan = write_plan(tmp_path, {"model": "mixbit_vit_test", "default": {"wbits": 8, "abits": 8}})
    status = main(["verify", "--model", "mixbit_vit_test", "--bits", plan, *SMALL, "--json"])
    result = json.loads(capsys.readouterr().out)
    assert status == 1
    assert result["mismatches"] == 8 * 10  # every logit, nothing before the head's bias
    assert result["first_mismatch"]["tensor"] == "logits"
    assert result["first_mismatch"]["integer"] == result["first_mismatch"]["exact"] + 1


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ({"model": "mixbit_vit_test", "layers": {"blocks.0.attn.qkv": {"wbits": 8, "abits": 8}}}, "missing"),
        (
            {
                "model": "mixbit_vit_test",
                "default": {"wbits": 8, "abits": 8},
                "layers": {"nope": {"wbits": 8, "abits": 8}},
            },
            "nope",
        ),
        ({"model": "mixbit_vit_test", "default": {"wbits": 9, "abits": 8}}, "default.wbits: must be at most 8"),
    ],
)
def test_verify_bad_plan_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], plan: dict, message: str) -> None:
    status = main(["verify", "--model", "mixbit_vit_test", "--bits", write_plan(tmp_path, plan), *SMALL])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1


def test_verify_bad_arguments_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = write_plan(tmp_path, {"model": "mixbit_vit_test", "default": {"wbits": 8, "abits": 8}})
    assert main(["verify", "--model", "no_such_model", "--bits", plan]) == 2
    assert "no_such_model" in capsys.readouterr().err
    assert main(["verify", "--model", "mixbit_vit_test", "--bits", str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err
    assert main(["verify", "--model", "mixbit_vit_test", "--bits", plan, "--images", "0"]) == 2
    assert "--images" in capsys.readouterr().err
