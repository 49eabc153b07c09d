"""Workload: construction, its own validation, single-GEMM workloads and SCALE-Sim topology CSVs."""

from __future__ import annotations

import math
import re
from itertools import pairwise
from pathlib import Path

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sim
from sim.errors import InputError
from sim.workload import Gemm, VectorOp, Workload

DATA = Path(__file__).parent.parent / "data"


def _block() -> list[Gemm | VectorOp]:
    return [
        VectorOp("norm1", "layernorm", 197 * 384),
        Gemm("qkv", "qkv", 197, 1152, 384, True, 384 * 1152),
        Gemm("attn.matmul_qk", "attn_qk", 197, 197, 64, False, 0, count=6),
        VectorOp("attn.softmax", "softmax", 6 * 197 * 197),
        Gemm("attn.matmul_av", "attn_av", 197, 64, 197, False, 0, count=6),
        Gemm("proj", "proj", 197, 384, 384, True, 384 * 384),
    ]


# ---- construction -------------------------------------------------------------------------------------------
def test_from_ops_keeps_order_and_chains_operators() -> None:
    ops = _block()
    workload = Workload.from_ops("block", ops)
    assert workload.ops == tuple(ops)
    assert [g.name for g in workload.gemms] == ["qkv", "attn.matmul_qk", "attn.matmul_av", "proj"]
    assert [v.name for v in workload.vector_ops] == ["norm1", "attn.softmax"]
    assert list(workload.graph.edges) == [(a.name, b.name) for a, b in pairwise(ops)]
    assert [workload.graph.nodes[op.name]["order"] for op in ops] == list(range(len(ops)))
    assert len(workload) == 6


def test_macs_count_repeats() -> None:
    workload = Workload.from_ops("block", _block())
    expected = 197 * 1152 * 384 + 2 * 6 * 197 * 197 * 64 + 197 * 384 * 384
    assert workload.macs == expected
    assert Gemm("g", "gemm", 2, 3, 5, count=7).macs == 210


def test_from_ops_without_chain_has_no_edges() -> None:
    assert Workload.from_ops("loose", _block(), chain=False).graph.number_of_edges() == 0


def test_ops_follow_order_attribute_not_insertion() -> None:
    graph = nx.DiGraph()
    graph.add_node("second", op=VectorOp("second", "add", 4), order=1)
    graph.add_node("first", op=Gemm("first", "gemm", 2, 2, 2), order=0)
    graph.add_edge("first", "second")
    assert [op.name for op in Workload("w", graph).ops] == ["first", "second"]


# ---- Workload's own validation -------------------------------------------------------------------------------
def test_cycle_is_rejected() -> None:
    graph = nx.DiGraph()
    for name in ("a", "b"):
        graph.add_node(name, op=Gemm(name, "gemm", 1, 1, 1), order=0)
    graph.add_edges_from([("a", "b"), ("b", "a")])
    with pytest.raises(InputError, match="cycle"):
        Workload("loop", graph)


@pytest.mark.parametrize("dim", ["m", "n", "k", "count"])
@pytest.mark.parametrize("value", [0, -3])
def test_non_positive_gemm_dims_are_rejected(dim: str, value: int) -> None:
    dims = {"m": 4, "n": 4, "k": 4, "count": 1, dim: value}
    gemm = Gemm("bad", "gemm", dims["m"], dims["n"], dims["k"], count=dims["count"])
    with pytest.raises(InputError, match=rf"'bad' has {dim}={value}"):
        Workload.from_ops("w", [gemm])


def test_empty_vector_op_is_rejected() -> None:
    with pytest.raises(InputError, match="elements=0"):
        Workload.from_ops("w", [VectorOp("softmax", "softmax", 0)])


def test_duplicate_names_are_rejected() -> None:
    with pytest.raises(InputError, match="'qkv' appears twice"):
        Workload.from_ops("w", [Gemm("qkv", "qkv", 1, 1, 1), Gemm("qkv", "qkv", 2, 2, 2)])


def test_node_without_operator_is_rejected() -> None:
    graph = nx.DiGraph()
    graph.add_node("x", order=0)
    with pytest.raises(InputError, match="node 'x' has no Gemm or VectorOp"):
        Workload("w", graph)


def test_node_name_must_match_its_operator() -> None:
    graph = nx.DiGraph()
    graph.add_node("x", op=Gemm("y", "gemm", 1, 1, 1), order=0)
    with pytest.raises(InputError, match="node 'x' holds operator 'y'"):
        Workload("w", graph)


# ---- from_gemm ------------------------------------------------------------------------------------------------
def test_from_gemm() -> None:
    workload = Workload.from_gemm(197, 1152, 384)
    (gemm,) = workload.gemms
    assert (gemm.m, gemm.n, gemm.k, gemm.count) == (197, 1152, 384, 1)
    assert gemm.b_is_weight and gemm.weight_params == 384 * 1152
    assert workload.macs == 197 * 1152 * 384
    assert workload.name == gemm.name == "gemm_197x1152x384"


@pytest.mark.parametrize("dims", [(0, 1, 1), (1, -2, 1), (1, 1, 2.5), (True, 1, 1)])
def test_from_gemm_rejects_bad_dims(dims: tuple) -> None:
    with pytest.raises(InputError, match="must be positive integers"):
        Workload.from_gemm(*dims)


# ---- SCALE-Sim topology CSV -----------------------------------------------------------------------------------
def test_reads_scalesim_gemm_file_with_repeated_rows() -> None:
    workload = Workload.from_topology_csv(DATA / "deit_s_block0.csv")
    assert workload.name == "deit_s_block0"
    shapes = [(g.name, g.m, g.n, g.k, g.count) for g in workload.gemms]
    assert shapes == [
        ("blocks.0.attn.qkv", 197, 1152, 384, 1),
        ("blocks.0.attn.matmul_qk", 197, 197, 64, 6),
        ("blocks.0.attn.matmul_av", 197, 64, 197, 6),
        ("blocks.0.attn.proj", 197, 384, 384, 1),
        ("blocks.0.mlp.fc1", 197, 1536, 384, 1),
        ("blocks.0.mlp.fc2", 197, 384, 1536, 1),
    ]
    assert workload.macs == 197 * 384 * (1152 + 384 + 2 * 1536) + 2 * 6 * 197 * 197 * 64
    assert all(g.kind == "gemm" and g.b_is_weight for g in workload.gemms)
    assert nx.is_directed_acyclic_graph(workload.graph) and workload.graph.number_of_edges() == 5


def test_reads_compact_style_without_spaces_and_with_blank_lines() -> None:
    workload = Workload.from_topology_csv(DATA / "gemm_mnk_style.csv")
    assert [(g.name, g.m, g.n, g.k) for g in workload.gemms][:2] == [("QKT", 1024, 1024, 64), ("QKTV", 1024, 64, 1024)]
    assert len(workload.gemms) == 5


def test_trailing_comma_is_optional(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("Layer, M, N, K\nfc, 3, 4, 5\n")
    assert Workload.from_topology_csv(path).gemms[0].macs == 60


def test_round_trip_keeps_names_dims_and_counts(tmp_path: Path) -> None:
    ops = [*_block(), Gemm("single[0]", "gemm", 2, 3, 4)]  # an index suffix on a lone row stays a name
    original = Workload.from_ops("block", ops)
    path = original.to_topology_csv(tmp_path / "block.csv")
    lines = path.read_text().splitlines()
    assert lines[0] == "Layer, M, N, K,"
    assert lines[1] == "qkv, 197, 1152, 384,"
    assert lines[2] == "attn.matmul_qk[0], 197, 197, 64,"
    assert len(lines) == 1 + sum(g.count for g in original.gemms)  # one row per repeat: SCALE-Sim runs each once
    back = Workload.from_topology_csv(path)
    assert [(g.name, g.m, g.n, g.k, g.count) for g in back.gemms] == [
        (g.name, g.m, g.n, g.k, g.count) for g in original.gemms
    ]
    assert back.macs == original.macs


_SHAPE = st.tuples(st.integers(1, 4096), st.integers(1, 4096), st.integers(1, 4096), st.integers(1, 5))


@settings(max_examples=25, deadline=None)
@given(st.lists(_SHAPE, min_size=1, max_size=6))
def test_round_trip_property(tmp_path_factory: pytest.TempPathFactory, shapes: list[tuple[int, int, int, int]]) -> None:
    gemms = [Gemm(f"layer{i}", "gemm", m, n, k, count=c) for i, (m, n, k, c) in enumerate(shapes)]
    path = Workload.from_ops("w", list(gemms)).to_topology_csv(tmp_path_factory.mktemp("rt") / "w.csv")
    back = Workload.from_topology_csv(path)
    assert [(g.name, g.m, g.n, g.k, g.count) for g in back.gemms] == [(g.name, g.m, g.n, g.k, g.count) for g in gemms]


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("Layer, M, N, K,\nfc, 3, x, 5,\n", 2, r"N='x' in layer 'fc' is not an integer"),
        ("Layer, M, N, K,\nfc, 3, 4.5, 5,\n", 2, r"N='4.5' in layer 'fc' is not an integer"),
        ("Layer, M, N, K,\nfc, 3, 4, 5,\nfc2, 0, 4, 5,\n", 3, r"M=0 in layer 'fc2'; must be > 0"),
        ("Layer, M, N, K,\nfc, 3, 4, -5,\n", 2, r"K=-5 in layer 'fc'; must be > 0"),
        ("Layer, M, N, K,\nfc, 3, 4,\n", 2, r"expected 4 columns 'name, M, N, K,' but found 3"),
        ("Layer, M, N, K,\nfc, 3, 4, 5, 6, 7,\n", 2, r"expected 4 columns 'name, M, N, K,' but found 6"),
        ("Layer, M, N, K,\n, 3, 4, 5,\n", 2, r"empty layer name"),
        ("fc, 3, 4, 5,\n", 1, r"first row looks like data"),
        ("Layer, M, N, K,\nfc, 3, 4, 5,\n\nfc, 1, 1, 1,\n", 4, r"layer name 'fc' already used on line 2"),
        # issue #15 item 13: odd numerals and huge numbers
        ("Layer, M, N, K,\nfc, \u00b2, 4, 5,\n", 2, r"M='\u00b2' in layer 'fc' is not an integer"),
        ("Layer, M, N, K,\nfc, \u0663, 4, 5,\n", 2, r"M='\u0663' in layer 'fc' is not an integer"),
        ("Layer, M, N, K,\nfc, 3, " + "9" * 5000 + ", 5,\n", 2, r"N=9{24}\.\.\. in layer 'fc' is too large"),
    ],
)
def test_bad_rows_name_file_line_and_reason(tmp_path: Path, text: str, line: int, reason: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=rf"bad\.csv:{line}: {reason}") as info:
        Workload.from_topology_csv(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"Layer, M, N, K,\nf\xe9, 1, 2, 3,\n", r"byte 17: not UTF-8 text"),
        (b"\xef\xbb\xbfLayer, M, N, K,\n", r"\(BOM\)"),
    ],
)
def test_topology_that_is_not_utf8_text(tmp_path: Path, data: bytes, reason: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(data)
    with pytest.raises(InputError, match=rf"bad\.csv: .*{reason}"):
        Workload.from_topology_csv(path)


@pytest.mark.parametrize(("text", "reason"), [("", "empty topology file"), ("Layer, M, N, K,\n\n", "no GEMM rows")])
def test_empty_files(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "empty.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=reason):
        Workload.from_topology_csv(path)


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.csv: no such topology file"):
        Workload.from_topology_csv(tmp_path / "nope.csv")


TOPOLOGIES = DATA / "topologies"

# IFMAP sizes in these files include padding (SCALE-Sim has none), chosen so that SCALE-Sim's rule
# ⌈(ifmap − filter + stride) / stride⌉ gives the papers' output sizes: AlexNet (Krizhevsky et al., NIPS 2012,
# Fig. 2: 55, 27, 13, 13, 13; FC6-8 as convolutions over 6x6 and 1x1) and ResNet-18 (He et al., CVPR 2016,
# Table 1: 112, 56, 28, 14, 7).
ALEXNET_MNK = [
    (55 * 55, 96, 11 * 11 * 3), (27 * 27, 256, 5 * 5 * 96), (13 * 13, 384, 3 * 3 * 256), (13 * 13, 384, 3 * 3 * 384),
    (13 * 13, 256, 3 * 3 * 384), (1, 4096, 6 * 6 * 256), (1, 4096, 4096), (1, 1000, 4096),
]  # fmt: skip


def _closed_form(dataflow: str, rows: int, cols: int, m: int, n: int, k: int) -> int:
    """SCALE-Sim v3's compute cycles (DESIGN.md) without its minus 1."""
    if dataflow == "os":
        return math.ceil(m / rows) * math.ceil(n / cols) * (k + rows + cols - 2)
    if dataflow == "ws":
        return math.ceil(k / rows) * math.ceil(n / cols) * (2 * rows + cols + m - 2)
    return math.ceil(k / rows) * math.ceil(m / cols) * (2 * rows + cols + n - 2)


def test_conv_topology_uses_scalesim_im2col() -> None:
    workload = Workload.from_topology_csv(TOPOLOGIES / "alexnet_conv.csv")
    assert [(g.m, g.n, g.k) for g in workload.gemms] == ALEXNET_MNK
    assert [g.name for g in workload.gemms][:2] == ["Conv1", "Conv2"]
    resnet = Workload.from_topology_csv(TOPOLOGIES / "resnet18_conv.csv")
    sizes = {g.name: g.m for g in resnet.gemms}
    assert (sizes["conv1"], sizes["layer1.0.conv1"], sizes["layer2.0.downsample"], sizes["layer4.1.conv2"]) == (
        112 * 112, 56 * 56, 28 * 28, 7 * 7,
    )  # fmt: skip
    assert resnet.gemms[0].k == 7 * 7 * 3 and resnet.gemms[-1].n == 1000


@pytest.mark.parametrize("topology", ["alexnet_conv.csv", "resnet18_conv.csv"])
@pytest.mark.parametrize("dataflow", ["os", "ws", "is"])
def test_conv_topology_compute_cycles_are_scalesim_closed_forms(topology: str, dataflow: str) -> None:
    target = sim.load_target("scalesim_32x32")
    workload = Workload.from_topology_csv(TOPOLOGIES / topology)
    result = sim.simulate(workload, target, (8, 8), dataflow=dataflow, ideal_memory=True)
    with (TOPOLOGIES / topology).open() as handle:
        rows = [line.split(",") for line in handle.read().splitlines()[1:]]
    for layer, row in zip(result.layers, rows, strict=True):
        ih, iw, fh, fw, ch, nf, stride = (int(v) for v in row[1:8])
        m = ((ih - fh + stride + stride - 1) // stride) * ((iw - fw + stride + stride - 1) // stride)
        assert layer.compute_cycles == _closed_form(dataflow, 32, 32, m, nf, fh * fw * ch), layer.name


def test_conv_topology_bad_rows_name_file_line_and_column(tmp_path: Path) -> None:
    header = "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"
    cases = {
        "Conv1, 227, 227, 11, 11, 3, 96,\n": "expected 8 columns",
        "Conv1, 227, 227, 11, x, 3, 96, 4,\n": "Filter Width='x'",
        "Conv1, 7, 7, 11, 11, 3, 96, 4,\n": "Filter Height=11 in layer 'Conv1' is larger than IFMAP Height=7",
        "Conv1, 227, 227, 11, 11, 3, 0, 4,\n": "Num Filter=0",
    }
    for row, message in cases.items():
        path = tmp_path / "bad.csv"
        path.write_text(header + row, encoding="utf-8")
        with pytest.raises(InputError, match=re.escape(message)) as info:
            Workload.from_topology_csv(path)
        assert f"{path}:2" in str(info.value)


def test_mixture_of_experts_replaces_the_chosen_mlps_and_keeps_the_macs() -> None:
    from sim.workload import MixtureOfExperts

    ops: list = []
    for block in range(3):
        prefix = f"blocks.{block}"
        ops += [
            sim.VectorOp(f"{prefix}.norm2", "layernorm", 5 * 8, 8),
            sim.Gemm(f"{prefix}.mlp.fc1", "fc1", 5, 32, 8, weight_params=256),
            sim.VectorOp(f"{prefix}.mlp.act", "gelu", 5 * 32),
            sim.Gemm(f"{prefix}.mlp.fc2", "fc2", 5, 8, 32, weight_params=256),
            sim.VectorOp(f"{prefix}.add_mlp", "add", 5 * 8),
        ]
    workload = sim.Workload.from_ops("toy", ops)
    moe = workload.with_experts(MixtureOfExperts(experts=4, experts_per_token=2, hidden=16))
    names = [op.name for op in moe.ops]
    assert "blocks.1.mlp.fc1" not in names and "blocks.0.mlp.fc1" in names and "blocks.2.mlp.fc1" in names
    experts = [op for op in moe.gemms if ".experts." in op.name]
    # 5 tokens x 2 experts = 10 slots over 4 experts: 3, 3, 2, 2 tokens; each expert loads its own weights
    assert [op.m for op in experts if op.kind == "fc1"] == [3, 3, 2, 2]
    assert all(op.weight_params == 8 * 16 for op in experts)
    assert moe.macs == workload.macs  # 10 slots x 16 hidden = 5 tokens x 32 hidden
    assert list(moe.graph.pred["blocks.1.mlp.experts.0.fc1"]) == ["blocks.1.norm2"]
    assert list(moe.graph.succ["blocks.1.mlp.experts.3.fc2"]) == ["blocks.1.add_mlp"]
    assert nx.is_directed_acyclic_graph(moe.graph)
    with pytest.raises(sim.InputError, match="no MLP"):
        sim.Workload.from_ops("flat", ops[:1]).with_experts(MixtureOfExperts(4, 2, 16))
    with pytest.raises(sim.InputError, match="experts_per_token <= experts"):
        workload.with_experts(MixtureOfExperts(2, 3, 16))
