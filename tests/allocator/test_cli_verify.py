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


# Issue #15 item 25, end to end: the `mixbit verify` process itself exits 1 when one integer kernel is off.
# The test double perturbs one element of blocks.0.mlp.fc1's integer output (a wrong requantization or a bad
# accumulator would look the same); everything else is the real integer model.
PERTURBED_VERIFY = """
import sys
import quant.integer as integer

real_output = integer.IntGemm.output

def off_by_much(self, acc):
    out = real_output(self, acc)
    if self.name == "blocks.0.mlp.fc1":
        out = out.clone()
        out.view(-1)[0] += 1 << (integer.ACT_FRAC_BITS + 4)  # +16.0: the next quantization point must differ
    return out

integer.IntGemm.output = off_by_much
from allocator.cli.main import main
raise SystemExit(main(sys.argv[1:]))
"""


@pytest.mark.slow  # a verify run in a subprocess: 10-40 s on this shared machine
@pytest.mark.parametrize("as_json", [True, False], ids=["json", "text"])
def test_verify_process_exits_1_when_one_integer_kernel_is_perturbed(tmp_path: Path, as_json: bool) -> None:
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    plan = write_plan(tmp_path, {"model": "mixbit_vit_test", "default": {"wbits": 8, "abits": 8}})
    argv = ["verify", "--model", "mixbit_vit_test", "--bits", plan, *SMALL, *(["--json"] if as_json else [])]
    done = subprocess.run(
        [sys.executable, "-c", PERTURBED_VERIFY, *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 1, done.stderr
    assert "error:" not in done.stderr and "Traceback" not in done.stderr
    if as_json:
        result = json.loads(done.stdout)
        assert result["mismatches"] > 0
        assert result["first_mismatch"]["tensor"].startswith("blocks.0.mlp")  # found where the fault is
    else:
        assert "MISMATCHES" in done.stdout and "first mismatch: blocks.0.mlp" in done.stdout
