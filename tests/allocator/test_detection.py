"""allocator/bridge/detection.py: detection backbones with an FPN neck, `simulate --detection`, `allocate --detection`,
and the whole pipeline (integer check included) on a Swin."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import sim
from allocator.bridge.detection import (
    STAGES,
    DetectionNetwork,
    detection_costs,
    detection_stage,
    detection_workload,
    padded_size,
    parse_img_size,
    resized_backbone,
    stage_totals,
)
from allocator.bridge.workload import workload_from_model
from allocator.cli.main import main
from allocator.pipeline.run import PipelineConfig, detection_costs_stage, run_pipeline
from quant.models import create_model
from sim.errors import InputError

SWIN = "swin_tiny_patch4_window7_224"
# a 4-stage Swin for digits (1 channel, 16 px): 8×8 tokens, windows of 4, shifted blocks in stages 1-2
TINY_SWIN = {
    "img_size": 16,
    "in_chans": 1,
    "num_classes": 10,
    "patch_size": 2,
    "window_size": 4,
    "embed_dim": 16,
    "depths": (2, 2, 1, 1),
    "num_heads": (1, 2, 2, 4),
}


def tiny_swin() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(SWIN, **TINY_SWIN)


@pytest.mark.parametrize(
    ("text", "size"), [("800x1333", (800, 1333)), ("640", (640, 640)), (" 512 X 768 ", (512, 768)), ("32×64", (32, 64))]
)
def test_img_size_parses(text: str, size: tuple[int, int]) -> None:
    assert parse_img_size(text) == size


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("800x", "expected HxW"),
        ("axb", "expected HxW"),
        ("16x800", "height 16 px is outside 32..8192"),
        ("0", "outside"),
    ],
)
def test_bad_img_size_names_the_option(text: str, needle: str) -> None:
    with pytest.raises(InputError, match=f"^--img-size {text!r}: .*{needle}"):
        parse_img_size(text)


def test_padding_follows_mmdetection() -> None:
    assert padded_size((800, 1333)) == (800, 1344)
    assert padded_size((512, 512)) == (512, 512)


def test_tiny_swin_detector_has_four_levels_and_an_fpn() -> None:
    backbone = resized_backbone(tiny_swin(), (64, 96))
    workload = detection_workload(backbone, (64, 96), name="tiny")
    assert workload.name == "tiny_fpn_64x96"
    gemms = {g.name: g for g in workload.gemms}
    # strides 4, 8, 16, 32 of a 64×96 image with patch 2 then three merges: 32×48, 16×24, 8×12, 4×6 tokens
    lateral = [(gemms[f"neck.lateral_convs.{i}"].m, gemms[f"neck.lateral_convs.{i}"].k) for i in range(4)]
    assert lateral == [(32 * 48, 16), (16 * 24, 32), (8 * 12, 64), (4 * 6, 128)]
    assert all(gemms[f"neck.fpn_convs.{i}"].k == 256 * 9 and gemms[f"neck.fpn_convs.{i}"].n == 256 for i in range(4))
    assert "head.fc" not in gemms  # a detector has no classification head
    assert [g.name for g in workload.gemms if g.name.startswith("neck.")][-1] == "neck.fpn_convs.3"
    adds = [op.name for op in workload.vector_ops if op.name.startswith("neck.")]
    assert len(adds) == 3  # the top-down pathway's adds


def test_stage_totals_split_every_cycle() -> None:
    workload = detection_workload(resized_backbone(tiny_swin(), (64, 96)), (64, 96))
    result = sim.simulate(workload, sim.load_target("zcu102"), (8, 8))
    totals = stage_totals(workload, result)
    assert [t.stage for t in totals] == list(STAGES)
    assert sum(t.cycles for t in totals) == result.cycles
    assert sum(t.macs for t in totals) == workload.macs
    assert all(t.cycles > 0 for t in totals)


def test_stage_of_each_operator() -> None:
    assert detection_stage("patch_embed.proj") == "stage1"
    assert detection_stage("layers.2.blocks.0.attn.qkv") == "stage3"
    assert detection_stage("layers.1.downsample.reduction") == "stage2"
    assert detection_stage("out_norms.3") == "stage4"
    assert detection_stage("neck.fpn_convs.0") == "neck"
    taps = (2, 5, 8, 11)
    assert [detection_stage(f"blocks.{b}.mlp.fc1", taps) for b in (0, 2, 3, 8, 11)] == [
        "stage1",
        "stage1",
        "stage2",
        "stage3",
        "stage4",
    ]


def test_vit_detector_taps_four_blocks_at_stride_16() -> None:
    vit = create_model("vit_tiny_patch16_224", depth=4, img_size=(64, 96))
    network = DetectionNetwork(vit)
    assert network.taps == (0, 1, 2, 3)
    workload = detection_workload(vit, (64, 96))
    lateral = [g for g in workload.gemms if g.name.startswith("neck.lateral_convs.")]
    assert [(g.m, g.k) for g in lateral] == [(4 * 6, 192)] * 4
    assert "head" not in {g.name for g in workload.gemms}


def test_non_backbones_are_refused() -> None:
    with pytest.raises(InputError, match="not a timm SwinTransformer or VisionTransformer"):
        DetectionNetwork(torch.nn.Linear(2, 2))
    with pytest.raises(InputError, match="is not a timm Swin or ViT"):
        resized_backbone(torch.nn.Linear(2, 2), (64, 64))


@pytest.mark.slow
def test_swin_t_at_800x1333_golden_shapes() -> None:
    """Swin-T at 800×1344: the FPN's MACs against the hand count of its convolutions."""
    workload = detection_workload(SWIN)
    assert workload.name == f"{SWIN}_fpn_800x1344"
    gemms = {g.name: g for g in workload.gemms}
    assert gemms["patch_embed.proj"].m == 200 * 336
    assert gemms["layers.0.blocks.0.attn.qkv"].m == 203 * 336  # padded to whole 7×7 windows: 29 × 48 windows
    assert gemms["layers.0.blocks.0.attn.matmul_qk"].count == 3 * 29 * 48
    pixels = [200 * 336, 100 * 168, 50 * 84, 25 * 42]
    lateral = sum(p * c for p, c in zip(pixels, (96, 192, 384, 768), strict=True)) * 256
    output = sum(pixels) * 256 * 9 * 256
    assert sum(g.macs for g in workload.gemms if g.name.startswith("neck.")) == lateral + output == 55_738_368_000
    assert workload.macs == 154_831_896_576  # backbone 99.09 G MACs + neck 55.74 G


def test_detection_costs_keep_the_scored_names_and_fix_the_neck() -> None:
    net = tiny_swin()
    target = sim.load_target("zcu102")
    plain, none = detection_costs_stage(net, PipelineConfig(target=target, model_name="tiny"))
    costed, detection = detection_costs_stage(net, PipelineConfig(target=target, model_name="tiny", detection=(64, 96)))
    assert none == {}
    assert costed.layers == plain.layers  # the same GEMMs, head.fc included, so every scored layer has a cost
    direct = detection_costs(net, workload_from_model(net), (64, 96), target, "tiny")
    neck_alone = sim.simulate(direct.neck, target, (8, 8)).cycles
    assert detection["neck_cycles"] == neck_alone > 0
    assert costed.fixed_cycles == sim.vector_cycles(direct.backbone, target) + neck_alone
    assert "COCO" in detection["note"] and detection["padded_size"] == [64, 96]


@pytest.mark.slow
def test_whole_pipeline_on_a_swin_with_detection_costs_and_the_integer_check(tmp_path: Path) -> None:
    result = run_pipeline(
        tiny_swin(),
        "zcu102",
        model_name="tiny_swin",
        latency_of=(6, 6),
        verify=True,
        out=tmp_path / "out",
        sensitivity_images=16,
        calib_images=32,
        verify_images=4,
        max_draws=2,
        baselines=((8, 8),),
        pareto_points=0,
        detection=(64, 96),
    )
    obj = result.to_json()
    assert obj["status"] == "optimal"
    assert obj["verify"]["mismatches"] == 0 and obj["verify"]["checked"] > 0
    assert obj["detection"]["neck_gemms"] == 8 and "COCO" in obj["detection"]["note"]
    written = json.loads((tmp_path / "out" / "result.json").read_text())
    assert written["detection"] == obj["detection"]


def test_cli_simulate_detection_json(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["simulate", "--target", "zcu102", "--model", SWIN, "--detection", "--img-size", "224x320", "--json"])
    assert status == 0
    obj = json.loads(capsys.readouterr().out)
    stages = obj["detection"]["stages"]
    assert [s["stage"] for s in stages] == list(STAGES)
    assert sum(s["cycles"] for s in stages) == obj["cycles"]
    assert obj["model"] == f"{SWIN}_fpn_224x320"
    assert "COCO" in obj["detection"]["note"]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["simulate", "--target", "zcu102", "--model", "resnet18", "--detection"], "is a timm resnet model"),
        (["simulate", "--target", "zcu102", "--model", "mixbit_vit_test", "--detection"], "classification testbed"),
        (["simulate", "--target", "zcu102", "--model", SWIN, "--detection", "--img-size", "800x"], "expected HxW"),
        (["simulate", "--target", "zcu102", "--gemm", "1,2,3", "--detection"], "take a --model"),
        (["simulate", "--target", "zcu102", "--model", SWIN, "--img-size", "224x320"], "HxW needs --detection"),
        (
            ["allocate", "--target", "zcu102", "--model", "mixbit_vit_test", "--detection-size", "64x64"],
            "needs --detection",
        ),
        (["allocate", "--target", "zcu102", "--model", "resnet18", "--detection"], "is a timm resnet model"),
        (
            ["allocate", "--target", "zcu102", "--model", SWIN, "--detection", "--detection-size", "10x10"],
            "--detection-size '10x10': height 10 px",
        ),
    ],
)
def test_cli_bad_detection_input_exits_2(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err and err.count("\n") == 1


def test_pipeline_refuses_to_export_a_swin_before_any_work(tmp_path: Path) -> None:
    from allocator.pipeline.run import run_stages

    config = PipelineConfig(target=sim.load_target("zcu102"), exports=("npz",), out=tmp_path / "out")
    with pytest.raises(InputError, match=r"^--export: SwinTransformer cannot be exported yet"):
        run_stages(tiny_swin(), None, config)  # type: ignore[arg-type]  # fails before the data is touched


def test_a_backbone_plan_bits_the_detector(tmp_path: Path) -> None:
    from allocator.bridge.detection import detector_bits

    workload = detection_workload(resized_backbone(tiny_swin(), (64, 96)), (64, 96))
    target = sim.load_target("zcu102")
    backbone = [g.name for g in workload.gemms if not g.name.startswith("neck.")]
    layers = {name: {"wbits": 4, "abits": 6} for name in backbone} | {"head.fc": {"wbits": 8, "abits": 8}}
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"model": "tiny", "layers": layers}))
    bits = detector_bits(str(plan), workload, target)
    assert "head.fc" not in bits and all(bits[name] == (4, 6) for name in backbone)
    assert bits["neck.fpn_convs.0"] == (8, 8)  # zcu102's widest weight and activation bits
    (tmp_path / "bad.json").write_text(
        json.dumps({"model": "tiny", "layers": {**layers, "blocks.9.qkv": layers["head.fc"]}})
    )
    with pytest.raises(InputError, match=r"layers\.blocks\.9\.qkv: not a GEMM of the detection workload"):
        detector_bits(str(tmp_path / "bad.json"), workload, target)
    del layers[backbone[0]]
    (tmp_path / "short.json").write_text(json.dumps({"model": "tiny", "layers": layers}))
    with pytest.raises(InputError, match=rf"layers\.{backbone[0]}: missing"):
        detector_bits(str(tmp_path / "short.json"), workload, target)
