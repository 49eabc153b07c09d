"""The file readers tests/sim/test_schema.py does not reach, fed random bytes and random structures: a sweep's
sensitivity table (CSV and parquet), checkpoints (torch and safetensors: random bytes and random torch-saved
objects) and the convolution format of a topology CSV (8 or 9 fields). Each returns a valid result or raises one
clean ``InputError`` (one line, naming the file), never another exception (issue #15, "Measured when done")."""

from __future__ import annotations

import io
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from allocator.sweep import SweepSpec, load_sweep
from quant.checkpoint import Checkpoint, read_checkpoint
from quant.errors import InputError as QuantInputError
from sim.errors import InputError
from sim.workload import Workload

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SWEEP = 'models = ["tiny"]\nallocate = true\nsensitivity = "{table}"\n[grid]\ntarget = ["zcu102"]\nrows = [16, 32]\n'
COLUMNS = ["layer", "wbits", "abits", "sensitivity"]
CONV_HEADER = [
    "Layer name", "IFMAP Height", "IFMAP Width", "Filter Height", "Filter Width", "Channels", "Num Filter", "Strides"
]  # fmt: skip


def outcome(path: Path, read: Callable[[Path], Any], named: str | None = None) -> Any:
    """``read(path)``'s result, or None after checking its InputError is one line naming ``named`` (the file)."""
    try:
        return read(path)
    except (InputError, QuantInputError) as exc:
        message = str(exc)
        assert "\n" not in message and "Traceback" not in message, repr(message)
        assert str(named or path) in message, message
        return None


# --- the sweep's sensitivity table ------------------------------------------------------------------------------


def check_sweep_with_table(write_table: Callable[[Path], None], suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        table = Path(folder) / f"scores{suffix}"
        write_table(table)
        sweep = Path(folder) / "sweep.toml"
        sweep.write_text(SWEEP.format(table=table.name))
        spec = outcome(sweep, load_sweep)
        if spec is not None:  # a valid result: the table read, with its columns and sane values
            assert isinstance(spec, SweepSpec) and len(spec.points) == 2
            frame = pd.read_parquet(table) if suffix == ".parquet" else pd.read_csv(table)
            assert set(COLUMNS) <= set(frame.columns) and len(frame) > 0
            assert (pd.to_numeric(frame["wbits"]) >= 1).all() and (pd.to_numeric(frame["sensitivity"]) >= 0).all()


CELLS = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=6),
    st.integers(-3, 10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["fc1", "8", "4", "0.5", "nan", "inf", "-1", '"', '""', "\\", "\r", "\n", "#"]),
)


@FUZZ
@given(
    header=st.lists(st.sampled_from([*COLUMNS, "x", ""]), min_size=0, max_size=6),
    rows=st.lists(st.lists(CELLS, max_size=6), max_size=5),
)
@example(
    header=COLUMNS, rows=[["fc1", "8", "8", "1"], ["fc1", "8", "8", "1", "2", "3"]]
)  # ragged: pandas says it in 2 lines
def test_random_sensitivity_csv(header: list[str], rows: list[list[str]]) -> None:
    text = "\n".join(",".join(row) for row in [header, *rows]) + "\n"
    check_sweep_with_table(lambda path: path.write_text(text, errors="surrogatepass"), ".csv")


@FUZZ
@given(data=st.binary(max_size=400), suffix=st.sampled_from([".csv", ".parquet"]))
def test_random_bytes_as_a_sensitivity_table(data: bytes, suffix: str) -> None:
    check_sweep_with_table(lambda path: path.write_bytes(data), suffix)


COLUMN_VALUES = st.one_of(
    st.lists(st.integers(-(2**40), 2**40), min_size=3, max_size=3),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=3, max_size=3),
    st.lists(st.text(max_size=4), min_size=3, max_size=3),
    st.lists(st.booleans(), min_size=3, max_size=3),
    st.lists(st.none(), min_size=3, max_size=3),
)


@FUZZ
@given(columns=st.dictionaries(st.sampled_from([*COLUMNS, "x"]), COLUMN_VALUES, max_size=5), rows=st.integers(0, 3))
def test_random_parquet_sensitivity_tables(columns: dict[str, list[Any]], rows: int) -> None:
    frame = pd.DataFrame({name: values[:rows] for name, values in columns.items()})
    check_sweep_with_table(lambda path: frame.to_parquet(path), ".parquet")


def test_a_ragged_csv_is_a_one_line_error(tmp_path: Path) -> None:
    """pandas' message for a row with extra fields ends in a newline; the sweep's error is cut to its first line."""
    (tmp_path / "scores.csv").write_text("layer,wbits,abits,sensitivity\nfc1,8,8,1\nfc2,8,8,1,2,3\n")
    (tmp_path / "sweep.toml").write_text(SWEEP.format(table="scores.csv"))
    with pytest.raises(InputError, match=r": sensitivity: cannot read .*scores\.csv: Error tokenizing data") as raised:
        load_sweep(tmp_path / "sweep.toml")
    assert "\n" not in str(raised.value)


# --- checkpoints ------------------------------------------------------------------------------------------------


def check_checkpoint(write: Callable[[Path], None], suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"model{suffix}"
        write(path)
        checkpoint = outcome(path, read_checkpoint)
        if checkpoint is not None:  # a valid result: tensors by name
            assert isinstance(checkpoint, Checkpoint) and checkpoint.path == path
            assert all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in checkpoint.state_dict.items())
            assert isinstance(checkpoint.model_kwargs, dict)


@FUZZ
@given(data=st.binary(max_size=400), suffix=st.sampled_from([".pt", ".pth", ".safetensors"]))
def test_random_bytes_as_a_checkpoint(data: bytes, suffix: str) -> None:
    check_checkpoint(lambda path: path.write_bytes(data), suffix)


TENSORS = st.builds(
    lambda shape, dtype: torch.zeros(shape, dtype=dtype),
    st.lists(st.integers(0, 3), max_size=3),
    st.sampled_from([torch.float32, torch.int8, torch.bool, torch.float16]),
)
SAVED_KEYS = st.sampled_from(["state_dict", "model", "model_kwargs", "classes", "data_config", "head.weight", "x", ""])
SAVED = st.recursive(
    st.one_of(TENSORS, st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=5), st.none(), st.booleans()),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(SAVED_KEYS, children, max_size=4)
        | st.dictionaries(st.integers(-2, 2), children, max_size=2)
    ),
    max_leaves=12,
)


@FUZZ
@given(obj=SAVED, truncate=st.one_of(st.none(), st.floats(0.0, 1.0)))
@example(obj={0: torch.zeros(1)}, truncate=None)  # tensors under an int key: once an AttributeError on the key
def test_random_torch_saved_structures(obj: Any, truncate: float | None) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    data = buffer.getvalue()
    if truncate is not None:
        data = data[: math.floor(len(data) * truncate)]
    check_checkpoint(lambda path: path.write_bytes(data), ".pt")


# --- the convolution format of a topology CSV ---------------------------------------------------------------------

CONV_NUMBERS = st.one_of(
    st.integers(-2, 300).map(str),
    st.integers(10**18, 10**25).map(str),
    st.sampled_from(["", "x", "1.5", "٣", "²", "1e3", "0", " 7 ", "nan"]),
)


@FUZZ
@given(
    wide=st.booleans(),
    rows=st.lists(
        st.tuples(st.text(max_size=4).filter(lambda s: "," not in s), st.lists(CONV_NUMBERS, min_size=6, max_size=9)),
        max_size=5,
    ),
)
def test_random_convolution_topologies(wide: bool, rows: list[tuple[str, list[str]]]) -> None:
    header = [*CONV_HEADER[:-1], "Stride Height", "Stride Width"] if wide else CONV_HEADER
    lines = [", ".join(header) + ","] + [", ".join([name, *fields]) + "," for name, fields in rows]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "conv.csv"
        path.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass"))
        workload = outcome(path, Workload.from_topology_csv)
        if workload is not None:  # a valid result: one GEMM per row, positive sizes
            assert isinstance(workload, Workload) and 0 < len(workload.gemms) <= len(rows)  # (X[0], X[1] fold)
            assert all(g.m >= 1 and g.n >= 1 and g.k >= 1 for g in workload.gemms)


def test_a_good_convolution_topology_reads(tmp_path: Path) -> None:
    path = tmp_path / "conv.csv"
    path.write_text(", ".join(CONV_HEADER) + ",\nconv1, 224, 224, 7, 7, 3, 64, 2,\n")
    [gemm] = Workload.from_topology_csv(path).gemms
    assert (gemm.m, gemm.n, gemm.k) == (110 * 110, 64, 7 * 7 * 3)  # SCALE-Sim: ceil((224 - 7 + 2) / 2) = 110
