"""quant.testbed and `mixbit train`: digits split, image folders, training, evaluation, the shipped checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from quant.errors import InputError
from quant.models import CHECKPOINT_DIR, create_model
from quant.testbed import (
    evaluate,
    evaluate_loss,
    load_data,
    load_digits_split,
    load_image_folder,
    train,
    train_and_save,
)


def test_digits_split_is_fixed_stratified_and_normalised() -> None:
    a, b = load_digits_split(), load_digits_split()
    assert a.x_train.shape == (1347, 1, 16, 16) and a.x_test.shape == (450, 1, 16, 16)
    assert torch.equal(a.x_test, b.x_test) and torch.equal(a.y_train, b.y_train)
    assert abs(float(a.x_train.mean())) < 1e-4 and abs(float(a.x_train.std()) - 1) < 1e-4
    assert torch.bincount(a.y_test).min() >= 40  # every class in the test split
    assert not torch.equal(load_digits_split(seed=1).y_test, a.y_test)


def _write_folder(root: Path, per_class: int = 6) -> None:
    from PIL import Image

    for c, value in (("bright", 230), ("dark", 20)):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.new("L", (10, 12), color=value + i).save(root / c / f"{i}.png")
    (root / "dark" / "notes.txt").write_text("not an image")


def test_image_folder(tmp_path: Path) -> None:
    _write_folder(tmp_path)
    split = load_image_folder(tmp_path, img_size=8, channels=3)
    assert split.classes == ("bright", "dark")
    assert split.x_train.shape[1:] == (3, 8, 8) and len(split.x_train) + len(split.x_test) == 12
    assert set(split.y_test.tolist()) == {0, 1}
    assert load_data(str(tmp_path), img_size=8).x_train.shape[1] == 1


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a directory"):
        load_image_folder(tmp_path / "missing")
    (tmp_path / "only").mkdir()
    with pytest.raises(InputError, match="need at least 2"):
        load_image_folder(tmp_path)
    (tmp_path / "other").mkdir()
    with pytest.raises(InputError, match="no images"):
        load_image_folder(tmp_path)
    (tmp_path / "other" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="cannot read image"):
        load_image_folder(tmp_path)


def test_evaluate_counts_correct_predictions() -> None:
    class Oracle(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.one_hot(x[:, 0, 0, 0].long(), 3).float()

    x = torch.zeros(4, 1, 2, 2)
    x[:, 0, 0, 0] = torch.tensor([0, 1, 2, 1])
    assert evaluate(Oracle(), x, torch.tensor([0, 1, 2, 0])) == 0.75
    with pytest.raises(InputError, match="as many labels"):
        evaluate(Oracle(), x, torch.tensor([0]))


def test_evaluate_loss_is_the_mean_cross_entropy_over_batches() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    x, y = torch.randn(10, 1, 2, 2), torch.randint(0, 3, (10,))
    with torch.no_grad():
        expected = float(torch.nn.functional.cross_entropy(model(x), y))
    assert evaluate_loss(model, x, y, batch_size=3) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(InputError, match="as many labels"):
        evaluate_loss(model, x, y[:2])


@pytest.mark.slow
def test_train_small_folder_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from allocator.cli.main import main

    _write_folder(tmp_path / "data", per_class=10)
    out = tmp_path / "model.pt"
    status = main(["train", "--model", "mixbit_vit_test", "--data", str(tmp_path / "data"), "--epochs", "3",
                   "--img-size", "8", "--out", str(out), "--json"])  # fmt: skip
    assert status == 0
    result = json.loads(capsys.readouterr().out)
    assert result["classes"] == 2 and result["checkpoint"] == str(out) and 0 <= result["accuracy"] <= 1
    saved = torch.load(out, weights_only=True)
    # the image size is recorded so the checkpoint loads back at the size it was trained at (#15 item 10)
    assert saved["model_kwargs"] == {"num_classes": 2, "in_chans": 1, "img_size": 8}
    # ... and `verify` loads it (it could not: "size mismatch for pos_embed", cut off)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"model": "mixbit_vit_test", "default": {"wbits": 8, "abits": 8}}))
    status = main(["verify", "--model", "mixbit_vit_test", "--checkpoint", str(out), "--bits", str(plan),
                   "--data", str(tmp_path / "data"), "--json"])  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert status == 0 and report["mismatches"] == 0 and report["checked"] > 0


def _grey_folder(root: Path, bits: int) -> Path:
    """Two classes, dark and bright grey with noise, as ``bits``-bit PNGs (the same images at 8 and 16 bits);
    at 16 bits every pixel is above 255, so clipping to 8 bits (the old bug) would make both classes white."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("val", 6)):
        for name, level in (("dark", 0.2), ("bright", 0.8)):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = np.clip(level + rng.normal(0, 0.05, (12, 12)), 0.05, 1.0)
                image = (pixels * 65535).astype(np.uint16) if bits == 16 else (pixels * 255).astype(np.uint8)
                Image.fromarray(image).save(root / split / name / f"{i:03d}.png")
    return root


def test_training_on_sixteen_bit_pngs_reaches_the_eight_bit_accuracy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Item 6 end to end: 16-bit PNGs were clipped to white (50 % on two separable classes, 100 % at 8 bits)."""
    from PIL import Image

    from allocator.cli.main import main

    accuracy = {}
    for bits in (8, 16):
        data = _grey_folder(tmp_path / f"png{bits}", bits)
        assert Image.open(next((data / "val" / "dark").iterdir())).mode == ("I;16" if bits == 16 else "L")
        argv = ["train", "--model", "mixbit_vit_test", "--data", str(data), "--epochs", "4", "--img-size", "8",
                "--out", str(tmp_path / f"m{bits}.pt"), "--json"]  # fmt: skip
        assert main(argv) == 0
        accuracy[bits] = json.loads(capsys.readouterr().out)["accuracy"]
    assert accuracy == {8: 1.0, 16: 1.0}


def test_train_rejects_bad_epochs() -> None:
    with pytest.raises(InputError, match="--epochs"):
        train("mixbit_vit_test", load_digits_split(), epochs=0)
    with pytest.raises(InputError):
        train_and_save("mixbit_vit_test", load_digits_split(), 0, 0, None)


def test_cli_train_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from allocator.cli.main import main

    assert main(["train", "--data", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.startswith("error: --data")


@pytest.mark.skipif(not (CHECKPOINT_DIR / "mixbit_vit_digits.pt").is_file(), reason="checkpoint not shipped")
def test_shipped_checkpoint_accuracy_and_quantized_accuracy() -> None:
    from quant.calibrate import calibrate_
    from quant.quantize import QuantConfig, quantize_

    data = load_digits_split()
    model = create_model("mixbit_vit_digits", pretrained=True)
    saved = torch.load(CHECKPOINT_DIR / "mixbit_vit_digits.pt", weights_only=True)
    fp32 = evaluate(model, data.x_test, data.y_test)
    assert fp32 == pytest.approx(saved["test_accuracy"], abs=1e-9)  # reproduces the recorded accuracy
    assert fp32 > 0.9
    quantize_(model, QuantConfig(8, 8))
    calibrate_(model, data.x_train[:64])
    assert evaluate(model, data.x_test, data.y_test) > fp32 - 0.02  # W8A8 is near-lossless
    quantize_(model, QuantConfig(2, 8))
    calibrate_(model, data.x_train[:64])
    assert evaluate(model, data.x_test, data.y_test) < fp32  # and 2-bit weights cost accuracy


def test_pretrained_testbed_without_checkpoint_is_an_input_error() -> None:
    with pytest.raises(InputError, match="no shipped checkpoint"):
        create_model("mixbit_vit_deep_test", pretrained=True)
