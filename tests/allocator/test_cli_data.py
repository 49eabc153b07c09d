"""Weights and data on the command line (allocate, verify, train): every bad input exits 2 with one `error:` line
naming the file and the reason, before any expensive stage, and writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from images import bomb_png, colour_folder

import allocator.pipeline.run
from allocator.cli.main import main
from quant.checkpoint import save_checkpoint
from quant.models import create_model

RGB_TEST = {"in_chans": 3, "num_classes": 3}


@pytest.fixture
def no_expensive_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pipeline (workload, costs, sensitivity, ...) must not start."""

    def refuse(*_args, **_kwargs):
        raise AssertionError("the pipeline started before the bad input was refused")

    monkeypatch.setattr(allocator.pipeline.run, "run_pipeline", refuse)


def _rgb_checkpoint(path: Path, classes: tuple[str, ...] = ("c0", "c1", "c2")) -> str:
    torch.manual_seed(0)
    model = create_model("mixbit_vit_test", **RGB_TEST)
    save_checkpoint(path, "mixbit_vit_test", model, model_kwargs=RGB_TEST, classes=classes)
    return str(path)


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str], *needles: str, out: Path) -> None:
    status = main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert status == 2, captured.err
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert captured.out == ""
    assert not out.exists()


def _allocate(model: str, out: Path, *extra: str) -> list[str]:
    return ["allocate", "--target", "zcu102", "--model", model, "--latency-of", "W4A4", "--out", str(out), *extra]


def test_checkpoint_of_another_architecture(tmp_path: Path, capsys, no_expensive_stage) -> None:
    torch.save(create_model("mixbit_vit_digits").state_dict(), tmp_path / "digits.pt")
    argv = _allocate("mixbit_vit_test", tmp_path / "out", "--checkpoint", str(tmp_path / "digits.pt"))
    _refused(
        argv, capsys, str(tmp_path / "digits.pt"), "not weights for mixbit_vit_test", "unexpected", out=tmp_path / "out"
    )


@pytest.mark.parametrize("damage", ["truncated", "text", "random"])
def test_corrupted_checkpoint(tmp_path: Path, capsys, no_expensive_stage, damage: str) -> None:
    good = Path(_rgb_checkpoint(tmp_path / "good.pt")).read_bytes()
    content = {"truncated": good[: len(good) // 3], "text": b"weights go here\n", "random": bytes(range(256)) * 4}
    (tmp_path / "bad.pt").write_bytes(content[damage])
    argv = _allocate("mixbit_vit_test", tmp_path / "out", "--checkpoint", str(tmp_path / "bad.pt"))
    _refused(argv, capsys, str(tmp_path / "bad.pt"), "checkpoint", out=tmp_path / "out")


def test_folder_without_class_sub_folders(tmp_path: Path, capsys, no_expensive_stage) -> None:
    colour_folder(tmp_path / "flat", {"": 3}, classes=1)
    for png in (tmp_path / "flat" / "c0").iterdir():
        png.rename(tmp_path / "flat" / png.name)
    (tmp_path / "flat" / "c0").rmdir()
    argv = _allocate("mixbit_vit_test", tmp_path / "out", "--data", str(tmp_path / "flat"))
    _refused(argv, capsys, str(tmp_path / "flat"), "class sub-folder", out=tmp_path / "out")


def test_classes_not_those_of_the_shipped_checkpoint(tmp_path: Path, capsys, no_expensive_stage) -> None:
    colour_folder(tmp_path / "data", mode="L")  # grey like digits, but classes c0, c1, c2
    argv = _allocate("mixbit_vit_digits", tmp_path / "out", "--data", str(tmp_path / "data"))
    _refused(argv, capsys, str(tmp_path / "data"), "not the 10 classes", "mixbit_vit_digits.pt", out=tmp_path / "out")


def test_classes_not_matching_the_head(tmp_path: Path, capsys, no_expensive_stage) -> None:
    torch.manual_seed(0)
    model = create_model("mixbit_vit_test", in_chans=3, num_classes=5)
    torch.save({"model": model.state_dict()}, tmp_path / "five.pth")  # a plain state dict: no class names
    colour_folder(tmp_path / "data")
    argv = _allocate(
        "mixbit_vit_test",
        tmp_path / "out",
        "--checkpoint",
        str(tmp_path / "five.pth"),
        "--data",
        str(tmp_path / "data"),
    )
    _refused(argv, capsys, str(tmp_path / "data"), "3 classes", "has 5 outputs", out=tmp_path / "out")


def test_grey_images_for_an_rgb_model(tmp_path: Path, capsys, no_expensive_stage) -> None:
    checkpoint = _rgb_checkpoint(tmp_path / "rgb.pt")
    colour_folder(tmp_path / "grey", mode="L")
    argv = _allocate("mixbit_vit_test", tmp_path / "out", "--checkpoint", checkpoint, "--data", str(tmp_path / "grey"))
    _refused(argv, capsys, str(tmp_path / "grey"), "000.png is a grey (1-channel) image", out=tmp_path / "out")
    argv = _allocate("mixbit_vit_test", tmp_path / "out", "--checkpoint", checkpoint, "--data", "digits")
    _refused(argv, capsys, "--data digits", "grey", "3-channel", out=tmp_path / "out")


def test_unreadable_image(tmp_path: Path, capsys, no_expensive_stage) -> None:
    checkpoint = _rgb_checkpoint(tmp_path / "rgb.pt")
    colour_folder(tmp_path / "data")
    broken = tmp_path / "data" / "val" / "c2" / "002.png"
    broken.write_bytes(broken.read_bytes()[:60])  # cut inside the image data
    argv = _allocate("mixbit_vit_test", tmp_path / "out", "--checkpoint", checkpoint, "--data", str(tmp_path / "data"))
    _refused(argv, capsys, str(broken), "cannot read image", out=tmp_path / "out")


def test_a_real_decompression_bomb(tmp_path: Path, capsys, no_expensive_stage) -> None:
    """Item 15 with a real bomb (a 12 kB PNG of 10⁸ pixels) at Pillow's real limit, through allocate and train."""
    import struct

    checkpoint = _rgb_checkpoint(tmp_path / "rgb.pt")
    colour_folder(tmp_path / "data")
    bomb = bomb_png(tmp_path / "data" / "val" / "c1" / "001.png")
    header = bomb.read_bytes()[16:24]  # IHDR's width and height
    assert bomb.stat().st_size < 50_000 and struct.unpack(">II", header) == (10_000, 10_000)
    argv = _allocate("mixbit_vit_test", tmp_path / "out", "--checkpoint", checkpoint, "--data", str(tmp_path / "data"))
    _refused(argv, capsys, str(bomb), "decompression bomb", out=tmp_path / "out")
    argv = ["train", "--model", "mixbit_vit_test", "--epochs", "1", "--data", str(tmp_path / "data"),
            "--out", str(tmp_path / "out" / "model.pt")]  # fmt: skip
    _refused(argv, capsys, str(bomb), "decompression bomb", out=tmp_path / "out")


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--eval-images", "0"], "argument --eval-images: must be at least 1, got 0"),
        (["--img-size", "0"], "--img-size must be a positive"),
        (["--img-size", "-5"], "--img-size must be a positive"),
        (["--img-size", "2"], "--img-size 2"),
        (["--synthetic-steps", "0", "--data", "synthetic"], "argument --synthetic-steps: must be at least 1"),
        (["--data", "digits", "--eval-data", "somewhere"], "--calib-data/--eval-data take image folders"),
    ],
)
def test_bad_numbers(tmp_path: Path, capsys, no_expensive_stage, flags: list[str], needle: str) -> None:
    _refused(_allocate("mixbit_vit_test", tmp_path / "out", *flags), capsys, needle, out=tmp_path / "out")


def test_verify_and_train_share_the_checks(tmp_path: Path, capsys) -> None:
    torch.save(create_model("mixbit_vit_digits").state_dict(), tmp_path / "digits.pt")
    (tmp_path / "plan.json").write_text(json.dumps({"model": "mixbit_vit_test", "default": {"wbits": 8, "abits": 8}}))
    argv = [
        "verify",
        "--model",
        "mixbit_vit_test",
        "--bits",
        str(tmp_path / "plan.json"),
        "--checkpoint",
        str(tmp_path / "digits.pt"),
    ]
    _refused(argv, capsys, str(tmp_path / "digits.pt"), "not weights for", out=tmp_path / "out")
    colour_folder(tmp_path / "flat", {"": 2}, classes=1)
    argv = ["train", "--model", "mixbit_vit_test", "--data", str(tmp_path / "flat"), "--out", str(tmp_path / "out")]
    _refused(argv, capsys, str(tmp_path / "flat"), "class sub-folder", out=tmp_path / "out")


@pytest.mark.slow  # two trainings and a pipeline run: about a minute on the shared machine
def test_round_trip_train_checkpoint_allocate_verify(tmp_path: Path, capsys) -> None:
    """A timm ViT trained by `mixbit train` on an image folder and loaded back with --checkpoint: the same FP32
    accuracy on the same val images, and the pipeline's plan is bit-exact in integers."""
    colour_folder(tmp_path / "data", {"train": 10, "val": 5}, size=24)
    checkpoint = tmp_path / "vit.pt"
    assert (
        main(
            [
                "train",
                "--model",
                "mixbit_vit_test",
                "--data",
                str(tmp_path / "data"),
                "--img-size",
                "16",
                "--epochs",
                "15",
                "--out",
                str(checkpoint),
                "--json",
            ]
        )
        == 0
    )
    trained = json.loads(capsys.readouterr().out)
    assert trained["accuracy"] >= 0.8 and trained["model_kwargs"] == {"num_classes": 3, "in_chans": 3, "img_size": 16}
    status = main(
        _allocate(
            "mixbit_vit_test",
            tmp_path / "out",
            "--checkpoint",
            str(checkpoint),
            "--data",
            str(tmp_path / "data"),
            "--verify",
            "--json",
            "--pareto-points",
            "0",
            "--sensitivity-images",
            "12",
        )
    )
    result = json.loads(capsys.readouterr().out)
    assert status == 0
    assert result["accuracy"]["fp32"] == trained["accuracy"]
    assert result["test_loss"]["fp32"] == pytest.approx(trained["test_loss"], rel=1e-5)
    assert result["verify"]["mismatches"] == 0 and result["verify"]["checked"] > 0
    assert result["data"]["sources"] == {
        "calib": str(tmp_path / "data" / "train"),
        "eval": str(tmp_path / "data" / "val"),
    }
    plan = tmp_path / "out" / "plan.json"
    status = main(
        [
            "verify",
            "--model",
            "mixbit_vit_test",
            "--bits",
            str(plan),
            "--checkpoint",
            str(checkpoint),
            "--data",
            str(tmp_path / "data"),
            "--images",
            "15",
            "--calibration",
            "30",
            "--json",
        ]
    )
    verified = json.loads(capsys.readouterr().out)
    assert status == 0 and verified["mismatches"] == 0 and verified["images"] == 15
    assert verified["weights"] == str(checkpoint)
