"""quant.data: layouts, the model's preprocessing, streaming, stratified subsets and every refusal."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from quant.data import (
    DataConfig,
    ImageFiles,
    check_img_size,
    evaluate_data,
    list_class_folder,
    model_data_config,
    open_data,
    open_image,
    stratified_subset,
)
from quant.errors import InputError
from quant.models import create_model

RGB8 = DataConfig(input_size=(3, 8, 8), interpolation="bilinear", crop_pct=1.0, mean=(0.5,) * 3, std=(0.5,) * 3)


def _images(root: Path, classes: dict[str, int], mode: str = "RGB", size: tuple[int, int] = (12, 10)) -> None:
    from PIL import Image

    for cls, count in classes.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            colour = (10 * i, 200, 30) if mode == "RGB" else 10 * i
            Image.new(mode, size, color=colour).save(root / cls / f"{i:03d}.png")


def test_imagenet_layout_uses_train_for_calibration_and_val_for_evaluation(tmp_path: Path) -> None:
    _images(tmp_path / "train", {"cat": 6, "dog": 6})
    _images(tmp_path / "val", {"cat": 2, "dog": 3})
    data = open_data(str(tmp_path), RGB8)
    assert data.classes == ("cat", "dog") and data.num_calib == 12 and data.num_eval == 5
    assert data.sources == {"calib": str(tmp_path / "train"), "eval": str(tmp_path / "val")}
    x, y = data.calib_batch(4, seed=1)
    assert x.shape == (4, 3, 8, 8) and set(y.tolist()) <= {0, 1}
    again, y_again = data.calib_batch(4, seed=1)
    assert torch.equal(x, again) and torch.equal(y, y_again)  # only the chosen images are decoded, the same ones
    (tmp_path / "val").rename(tmp_path / "test")
    assert open_data(str(tmp_path), RGB8).sources["eval"] == str(tmp_path / "test")


def test_flat_folder_is_split_by_file_seeded_and_stratified(tmp_path: Path) -> None:
    _images(tmp_path, {"a": 8, "b": 4})
    one, again, other = (open_data(str(tmp_path), RGB8, seed=s) for s in (0, 0, 1))
    assert one.num_calib + one.num_eval == 12 and one.num_eval == 3  # 2 of a, 1 of b
    assert one.evaluation.folder.files == again.evaluation.folder.files
    assert one.evaluation.folder.files != other.evaluation.folder.files
    assert sorted(one.evaluation.labels().tolist()) == [0, 0, 1]


def test_calib_and_eval_data_set_each_side(tmp_path: Path) -> None:
    _images(tmp_path / "mine", {"x": 3, "y": 3})
    _images(tmp_path / "imagenet" / "train", {"x": 2, "y": 2})
    _images(tmp_path / "imagenet" / "val", {"x": 5, "y": 5})
    data = open_data(None, RGB8, calib_data=str(tmp_path / "mine"), eval_data=str(tmp_path / "imagenet"))
    assert data.num_calib == 6 and data.num_eval == 10  # --eval-data of an ImageNet layout takes its val/
    assert data.sources["eval"] == str(tmp_path / "imagenet" / "val")
    only_calib = open_data(None, RGB8, calib_data=str(tmp_path / "imagenet"))
    assert only_calib.num_calib == 4 and only_calib.evaluation is None
    assert "give --eval-data" in only_calib.eval_skipped


def test_eval_images_is_a_stratified_seeded_subset(tmp_path: Path) -> None:
    _images(tmp_path / "train", {"a": 2, "b": 2, "c": 2})
    _images(tmp_path / "val", {"a": 10, "b": 10, "c": 10})
    data = open_data(str(tmp_path), RGB8, eval_images=6, seed=4)
    assert data.num_eval == 6 and np.bincount(data.evaluation.labels()).tolist() == [2, 2, 2]
    with pytest.raises(InputError, match="--eval-images must be at least 1, got 0"):
        open_data(str(tmp_path), RGB8, eval_images=0)


def test_stratified_subset_keeps_class_shares() -> None:
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    pick = stratified_subset(labels, 10, seed=0)
    assert np.bincount(labels[pick]).tolist() == [5, 3, 2]
    assert not np.array_equal(pick, stratified_subset(labels, 10, seed=1))
    assert len(stratified_subset(labels, 500, seed=0)) == 100


def test_model_data_config_follows_timm_and_overrides() -> None:
    deit = create_model("deit_tiny_patch16_224", depth=1)
    cfg = model_data_config(deit)
    assert cfg.input_size == (3, 224, 224) and cfg.interpolation == "bicubic" and cfg.crop_pct == 0.9
    assert cfg.mean == (0.485, 0.456, 0.406)
    tuned = model_data_config(deit, interpolation="bilinear", crop_pct=1.0, mean=(0.5, 0.5, 0.5))
    assert (tuned.interpolation, tuned.crop_pct, tuned.mean) == ("bilinear", 1.0, (0.5, 0.5, 0.5))
    grey = model_data_config(create_model("mixbit_vit_test"))
    assert grey.input_size == (1, 16, 16) and len(grey.mean) == 1
    with pytest.raises(InputError, match="--img-size 32: the model takes 224x224"):
        model_data_config(deit, img_size=32)


def test_preprocessing_resizes_crops_and_normalises(tmp_path: Path) -> None:
    from PIL import Image

    _images(tmp_path / "train", {"a": 1, "b": 1})
    _images(tmp_path / "val", {"a": 1, "b": 1})
    Image.new("RGB", (40, 20), color=(255, 0, 128)).save(tmp_path / "train" / "a" / "000.png")
    data = open_data(str(tmp_path), RGB8)
    x, _ = data.calib_batch(2)
    assert x.shape == (2, 3, 8, 8)
    red = x[0] if data.calib.folder.files[0][1] == 0 else x[1]
    assert torch.allclose(red[:, 4, 4], torch.tensor([1.0, -1.0, 128 / 255 * 2 - 1]), atol=0.02)


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.full((4, 4), 32768, dtype=np.uint16)).save(tmp_path / "deep.png")
    image = open_image(tmp_path / "deep.png", channels=1)
    assert image.mode == "L" and np.asarray(image)[0, 0] == 127  # convert("L") would clip it to 255
    assert np.asarray(open_image(tmp_path / "deep.png", channels=3))[0, 0].tolist() == [127, 127, 127]


def test_sixteen_bit_png_endpoints(tmp_path: Path) -> None:
    from PIL import Image

    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert np.asarray(open_image(tmp_path / "deep.png", channels=1)).tolist() == [[0, 1, 127, 255]]


def test_decompression_bomb_and_unreadable_images_name_the_file(tmp_path: Path, monkeypatch) -> None:
    import quant.data as qd

    _images(tmp_path, {"a": 8, "b": 8})
    monkeypatch.setattr(qd, "MAX_IMAGE_PIXELS", 50)
    with pytest.raises(InputError, match=r"000\.png is 12x10 pixels, over the 50-pixel limit"):
        open_image(tmp_path / "a" / "000.png", 3)
    monkeypatch.undo()
    (tmp_path / "b" / "zzz.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(InputError, match=r"--data: cannot read image .*zzz\.png"):
        open_data(str(tmp_path), RGB8)  # small folders: every image is checked before any expensive stage
    import quant.data as qd

    monkeypatch.setattr(qd, "SCAN_LIMIT", 0)  # big folders: a broken image is named when it is decoded
    data = open_data(str(tmp_path), RGB8)
    with pytest.raises(InputError, match=r"--data: cannot read image .*zzz\.png"):
        list(data.eval_batches())
        data.calib_batch(10)


def test_pillow_bomb_warning_is_an_error_not_a_warning(tmp_path: Path, monkeypatch) -> None:
    from PIL import Image

    _images(tmp_path, {"a": 1})
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 120 pixels: over the limit, under twice it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InputError, match="refused"):
            open_image(tmp_path / "a" / "000.png", 3)


def test_grey_images_for_an_rgb_model_and_digits_for_a_colour_model(tmp_path: Path) -> None:
    _images(tmp_path, {"a": 3, "b": 3}, mode="L")
    with pytest.raises(InputError, match=r"000\.png is a grey \(1-channel\) image; deit takes colour \(3-channel\)"):
        open_data(str(tmp_path), RGB8, model_label="deit")
    with pytest.raises(InputError, match="--data digits: digits are grey"):
        open_data("digits", RGB8)


def test_class_folder_refusals(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such folder"):
        open_data(str(tmp_path / "missing"), RGB8)
    _images(tmp_path / "flat", {"only": 2})
    for p in (tmp_path / "flat" / "only").iterdir():
        p.rename(tmp_path / "flat" / p.name)
    with pytest.raises(InputError, match=r"found 1 class sub-folder\(s\) \(images such as 000\.png lie directly"):
        open_data(str(tmp_path / "flat"), RGB8)
    _images(tmp_path / "gap", {"a": 2})
    (tmp_path / "gap" / "b").mkdir()
    with pytest.raises(InputError, match=r"class folder .*gap/b has no images"):
        list_class_folder(tmp_path / "gap")


def test_classes_must_match_the_weights(tmp_path: Path) -> None:
    _images(tmp_path, {"cat": 3, "dog": 3})
    with pytest.raises(InputError, match=r"its classes \(cat, dog\) are not the 10 classes checkpoint X was trained"):
        open_data(str(tmp_path), RGB8, classes=tuple("0123456789"), weights="checkpoint X")
    with pytest.raises(InputError, match=r"2 classes, but the model's head .* has 1000 outputs"):
        open_data(str(tmp_path), RGB8, num_outputs=1000)
    assert open_data(str(tmp_path), RGB8, classes=("cat", "dog"), num_outputs=2).classes == ("cat", "dog")


def test_digits_keep_the_testbed_split() -> None:
    from quant.testbed import load_digits_split

    grey = model_data_config(create_model("mixbit_vit_test"))
    data = open_data("digits", grey)
    split = load_digits_split()
    assert data.num_calib == 1347 and data.num_eval == 450
    x, y = data.eval_tensors()
    assert torch.equal(x, split.x_test) and torch.equal(y, split.y_test)


def test_evaluate_data_streams_accuracy_and_loss(tmp_path: Path) -> None:
    _images(tmp_path / "train", {"a": 2, "b": 2})
    _images(tmp_path / "val", {"a": 3, "b": 5})

    class Constant(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tensor([[0.0, 1.0]]).expand(len(x), 2)

    data = open_data(str(tmp_path), RGB8, batch_size=3)
    accuracy, loss = evaluate_data(Constant(), data)
    assert accuracy == pytest.approx(5 / 8)
    assert loss == pytest.approx((3 * 1.3132617 + 5 * 0.3132617) / 8, rel=1e-5)
    assert isinstance(data.evaluation, ImageFiles)


@pytest.mark.parametrize("size", [0, -5, 2, 18])
def test_img_size_bounds(size: int) -> None:
    with pytest.raises(InputError, match=f"--img-size {size}|--img-size must be a positive"):
        check_img_size(size, patch_size=4)
    assert check_img_size(16, patch_size=4) == 16
