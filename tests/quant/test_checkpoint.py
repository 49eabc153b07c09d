"""quant.checkpoint: one loader for torch and safetensors weights, wrappers, recorded kwargs, refusals."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from quant.checkpoint import (
    fit_head_,
    load_checkpoint,
    load_model,
    read_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
)
from quant.errors import InputError
from quant.models import CHECKPOINT_DIR, create_model

TINY = {"img_size": 8, "patch_size": 4, "in_chans": 3, "num_classes": 5}


def _tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("mixbit_vit_test", **TINY)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_mixbit_checkpoint_round_trip_records_kwargs_classes_and_data_config(tmp_path: Path) -> None:
    model = _tiny()
    config = {"input_size": [3, 8, 8], "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    classes = ("a", "b", "c", "d", "e")
    for name in ("m.pt", "m.safetensors"):
        path = save_checkpoint(
            tmp_path / name, "mixbit_vit_test", model, model_kwargs=TINY, classes=classes, data_config=config
        )
        loaded, weights = load_model("mixbit_vit_test", path)
        assert _same_weights(model, loaded)
        assert weights.classes == classes and weights.num_outputs == 5
        assert weights.data_config is not None and weights.data_config["input_size"] == [3, 8, 8]
        assert loaded.patch_embed.img_size == (8, 8)  # recorded image size rebuilds the model (#15 item 10)


@pytest.mark.parametrize("wrapper", [None, "state_dict", "model", "model_state_dict"])
def test_plain_and_wrapped_state_dicts_infer_num_classes_and_channels(tmp_path: Path, wrapper: str | None) -> None:
    torch.manual_seed(0)
    model = create_model("mixbit_vit_test", num_classes=7, in_chans=3)  # the testbed's 16x16 default size
    state = model.state_dict()
    obj = state if wrapper is None else {wrapper: state, "epoch": 3, "optimizer": {"lr": torch.tensor(0.1)}}
    torch.save(obj, tmp_path / "w.pth")
    loaded, checkpoint = load_checkpoint("mixbit_vit_test", tmp_path / "w.pth")
    assert _same_weights(model, loaded)
    assert loaded.num_classes == 7 and loaded.patch_embed.proj.in_channels == 3
    assert checkpoint.meta.get("epoch", 3) == 3


def test_ddp_prefix_is_dropped(tmp_path: Path) -> None:
    model = _tiny()
    torch.save({"model": {f"module.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "ddp.pt")
    loaded, _ = load_checkpoint("mixbit_vit_test", tmp_path / "ddp.pt", img_size=8, patch_size=4)
    assert _same_weights(model, loaded)


def test_timm_model_num_classes_from_head(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("vit_tiny_patch16_224", num_classes=3, img_size=32, depth=1)
    from safetensors.torch import save_file

    save_file(model.state_dict(), tmp_path / "vit.safetensors")
    loaded, _ = load_checkpoint("vit_tiny_patch16_224", tmp_path / "vit.safetensors", img_size=32, depth=1)
    assert loaded.num_classes == 3 and _same_weights(model, loaded)


def test_another_architecture_names_first_missing_and_unexpected_keys(tmp_path: Path) -> None:
    torch.save(create_model("mixbit_vit_digits").state_dict(), tmp_path / "other.pt")
    with pytest.raises(InputError, match=r"other\.pt: not weights for mixbit_vit_test: unexpected 'blocks\.2\."):
        load_checkpoint("mixbit_vit_test", tmp_path / "other.pt")
    torch.save(create_model("mixbit_vit_test").state_dict(), tmp_path / "small.pt")
    with pytest.raises(InputError, match=r"missing 'blocks\.2\.norm1\.weight' \(\+\d+ more\)"):
        load_checkpoint("mixbit_vit_digits", tmp_path / "small.pt")


def test_other_image_size_names_pos_embed(tmp_path: Path) -> None:
    torch.save(create_model("mixbit_vit_test", img_size=28).state_dict(), tmp_path / "w28.pt")
    with pytest.raises(InputError, match=r"pos_embed has shape \(1, 50, 48\).*expects \(1, 17, 48\).*--img-size"):
        load_checkpoint("mixbit_vit_test", tmp_path / "w28.pt")
    loaded, _ = load_checkpoint("mixbit_vit_test", tmp_path / "w28.pt", img_size=28)
    assert loaded.patch_embed.img_size == (28, 28)


def test_checkpoint_saved_for_another_model_name(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "c.pt", "mixbit_vit_digits", create_model("mixbit_vit_digits"), model_kwargs={})
    with pytest.raises(InputError, match="saved for model 'mixbit_vit_digits', not 'mixbit_vit_test'"):
        load_checkpoint("mixbit_vit_test", tmp_path / "c.pt")


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("text.pt", b"these are my weights\n", "corrupted or not a torch checkpoint"),
        ("random.pth", bytes(range(256)) * 8, "not a torch checkpoint"),
        ("empty.pt", b"", "corrupted or not a torch checkpoint"),
        ("random.safetensors", os.urandom(512), "corrupted or not a safetensors file"),
    ],
)
def test_unreadable_files_give_one_line_naming_the_file(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(InputError, match=reason) as info:
        read_checkpoint(tmp_path / name)
    assert str(tmp_path / name) in str(info.value) and "\n" not in str(info.value)


def test_truncated_and_non_tensor_checkpoints(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "good.pt", "mixbit_vit_test", _tiny(), model_kwargs=TINY)
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut\.pt: corrupted"):
        read_checkpoint(tmp_path / "cut.pt")
    torch.save({"epoch": 1, "notes": "no weights"}, tmp_path / "meta.pt")
    with pytest.raises(InputError, match=r"meta\.pt: no state dict in it \(a dict with keys epoch, notes"):
        read_checkpoint(tmp_path / "meta.pt")
    with pytest.raises(InputError, match="no such file"):
        read_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(InputError, match="not a file"):
        read_checkpoint(tmp_path)


def test_checkpoint_with_code_is_refused_by_weights_only_load(tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self) -> tuple:
            return (print, ("ran code from a checkpoint",))

    torch.save({"state_dict": {"w": torch.zeros(1)}, "hook": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(InputError, match="weights-only load refused"):
        read_checkpoint(tmp_path / "evil.pt")


def test_save_is_atomic_and_keeps_the_previous_checkpoint_on_failure(tmp_path: Path, monkeypatch) -> None:
    path = save_checkpoint(tmp_path / "ck.pt", "mixbit_vit_test", _tiny(), model_kwargs=TINY)
    before = path.read_bytes()

    def full_disk(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(InputError, match=r"No space left on device \(the previous checkpoint there is untouched\)"):
        save_checkpoint(path, "mixbit_vit_test", create_model("mixbit_vit_test"), model_kwargs={})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temporary file left behind


def test_a_dead_writers_temporary_is_removed_by_the_next_write(tmp_path: Path) -> None:
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid, live_pid = int(dead.stdout), os.getppid()  # (the exited child's pid is not reused this soon)
    stale = tmp_path / f".ck.pt.{dead_pid}.x1y2z3.tmp"  # what a kill -9 during torch.save leaves
    live = tmp_path / f".ck.pt.{live_pid}.a1b2c3.tmp"  # another process writing the same file now
    other = tmp_path / f".other.pt.{dead_pid}.q.tmp"  # a temporary of another checkpoint
    for path in (stale, live, other):
        path.write_bytes(b"half a checkpoint")
    assert remove_stale_temporaries(tmp_path / "ck.pt") == [stale]
    stale.write_bytes(b"half a checkpoint")
    save_checkpoint(tmp_path / "ck.pt", "mixbit_vit_test", _tiny(), model_kwargs=TINY)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name, "ck.pt"])


def test_load_model_shipped_random_and_head_fitting() -> None:
    model, weights = load_model("mixbit_vit_digits")
    assert weights.source == str(CHECKPOINT_DIR / "mixbit_vit_digits.pt")
    assert weights.classes == tuple(str(i) for i in range(10)) and weights.num_outputs == 10
    random_model, random_weights = load_model("mixbit_vit_test", seed=3)
    assert random_weights.random and random_weights.num_outputs is None
    fit_head_(random_model, random_weights, 4)
    assert random_model.num_classes == 4 and random_model.head.out_features == 4
    fit_head_(model, weights, 4)  # trained weights are never resized
    assert model.num_classes == 10
