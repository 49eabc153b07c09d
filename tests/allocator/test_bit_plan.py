"""allocator.bridge.read_bit_plan and sim.plan: one reader of bit-plan files for simulate, verify, allocate and
export; hostile files give one-line errors naming the file and the key (issue #15 items 12, 17, 23)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from allocator.bridge import read_bit_plan
from quant.plan import BitPlan, LayerBits
from sim.errors import InputError
from sim.plan import load_bits, plan_bits

PLAN = {
    "model": "mixbit_vit_test",
    "default": {"wbits": 8, "abits": 8},
    "layers": {"blocks.0.attn.qkv": {"wbits": 4, "abits": 6, "act_kind": "log2"}},
}


def write(tmp_path: Path, obj: object, name: str = "plan.json") -> Path:
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def error(tmp_path: Path, content: object | bytes) -> str:
    path = tmp_path / "bad.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        write(tmp_path, content, "bad.json")
    messages = []
    for reader in (read_bit_plan, load_bits):
        with pytest.raises(InputError) as exc:
            reader(path)
        message = str(exc.value)
        assert "\n" not in message and message.startswith(str(path)), message
        messages.append(message)
    assert messages[0] == messages[1]  # simulate's reader and verify's reader say the same thing
    return messages[0]


def test_a_saved_plan_reads_back(tmp_path: Path) -> None:
    plan = BitPlan("m", {"head": LayerBits(4, 8, act_kind="twin_uniform")}, LayerBits(8, 8))
    plan.save(tmp_path / "plan.json")
    assert read_bit_plan(tmp_path / "plan.json") == plan


def test_simulate_and_verify_accept_the_same_plan_with_a_note(tmp_path: Path) -> None:
    path = write(tmp_path, {**PLAN, "note": "tried by hand"})
    plan = read_bit_plan(path)
    assert plan.bits_for("blocks.0.attn.qkv") == LayerBits(4, 6, act_kind="log2")
    assert plan_bits(path, ["blocks.0.attn.qkv", "head"]) == {"blocks.0.attn.qkv": (4, 6), "head": (8, 8)}


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({**PLAN, "extra": 1}, ": extra: unknown key; expected one of default, layers, model, note"),
        ({"layers": {"head": {"wbits": 9, "abits": 8}}}, ": layers.head.wbits: must be at most 8, got 9"),
        ({"layers": {"head": {"wbits": 4}}}, ": layers.head.abits: missing key"),
        ({"layers": {"head": {"wbits": "4", "abits": 4}}}, ": layers.head.wbits: expected an integer, got a string"),
        ({"layers": {"head": {"wbits": True, "abits": 4}}}, ": layers.head.wbits: expected an integer, got a boolean"),
        ({"layers": {"head": {"wbits": 4.0, "abits": 4}}}, ": layers.head.wbits: expected an integer, got a number"),
        ({"layers": []}, ": layers: expected a table, got a list"),
        ([1, 2], "expected a table, got a list"),
    ],
)
def test_bad_plans_name_the_key(tmp_path: Path, obj: object, expected: str) -> None:
    assert expected in error(tmp_path, obj)


def test_unknown_quantizer_kind_names_the_file_and_layer(tmp_path: Path) -> None:
    path = write(tmp_path, {"layers": {"head": {"wbits": 4, "abits": 4, "act_kind": "cubic"}}})
    with pytest.raises(InputError, match=r"plan.json: layers.head: act_kind: unknown quantizer kind 'cubic'"):
        read_bit_plan(path)


def test_duplicate_keys_are_an_error_not_last_wins(tmp_path: Path) -> None:
    text = '{"layers": {"head": {"wbits": 4, "abits": 4, "wbits": 8}}}'
    assert ": wbits: duplicate key" in error(tmp_path, text)


def test_binary_plan(tmp_path: Path) -> None:
    assert ": byte 0: not UTF-8 text" in error(tmp_path, b"\xff\xfe\x00garbage")


def test_plan_with_a_byte_order_mark(tmp_path: Path) -> None:
    assert "byte-order mark (BOM)" in error(tmp_path, b"\xef\xbb\xbf" + json.dumps(PLAN).encode())


def test_100000_deep_json(tmp_path: Path) -> None:
    assert "nested too deeply" in error(tmp_path, "[" * 100_000 + "]" * 100_000)


def test_deep_but_parseable_json(tmp_path: Path) -> None:
    assert "nested more than 64 levels deep" in error(tmp_path, "[" * 500 + "]" * 500)


@pytest.mark.parametrize("text", ["{not json", '{"layers": {"head": {"wbits": NaN, "abits": 4}}}', ""])
def test_not_json(tmp_path: Path, text: str) -> None:
    assert "not valid JSON" in error(tmp_path, text)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such bit plan file"):
        read_bit_plan(tmp_path / "absent.json")
