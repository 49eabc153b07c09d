"""Further GEMM arrays ([[accelerator.engines]]): some layer kinds on an array of their own."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from test_attention import block
from test_target import GOOD, load_error, write

import sim
from sim.patchwise import Patchwise, TokenSplit
from sim.target import Engine

ENGINE = """
[[accelerator.engines]]
name = "msa"
kinds = ["qkv", "proj"]
rows = 4
cols = 4
source = "assumption: test"
"""


def with_engines(target: sim.Target, *engines: Engine) -> sim.Target:
    return dataclasses.replace(target, accelerator=dataclasses.replace(target.accelerator, engines=engines))


def test_target_file_reads_engines(tmp_path: Path) -> None:
    target = sim.load_target(write(tmp_path, GOOD + ENGINE))
    assert target.accelerator.engines == (Engine("msa", ("qkv", "proj"), 4, 4),)
    assert target.source("accelerator.engines.msa.rows") == "assumption: test"


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (ENGINE.replace('"proj"', '"projection"'), ": accelerator.engines[0].kinds[1]: unknown value 'projection'"),
        (ENGINE + ENGINE.replace('"qkv", ', ""), ": accelerator.engines: engine name 'msa' used twice"),
        (
            ENGINE + ENGINE.replace('"msa"', '"other"').replace('"qkv", ', ""),
            ": accelerator.engines: layer kind 'proj' is on engines 'msa' and 'other'",
        ),
        (ENGINE.replace("rows = 4", "rows = 0"), ": accelerator.engines[0].rows: must be positive, got 0"),
        (ENGINE.replace('source = "assumption: test"\n', ""), ": accelerator.engines[0].rows: missing source"),
    ],
)
def test_bad_engines_are_named(tmp_path: Path, extra: str, needle: str) -> None:
    assert needle in load_error(tmp_path, GOOD + extra)


def test_attention_kinds_belong_to_the_attention_engine(tmp_path: Path) -> None:
    text = GOOD + ENGINE.replace('"qkv", "proj"', '"attn_qk"') + "\n[accelerator.attention]\nqueries = 2\ndims = 2\n"
    text += 'source = "assumption: test"\n'
    assert ": accelerator.engines: layer kind 'attn_qk' runs on the [accelerator.attention] engine" in load_error(
        tmp_path, text
    )


def test_engine_layers_cost_what_the_array_of_that_shape_costs() -> None:
    base = sim.load_target("zcu102")
    target = with_engines(base, Engine("msa", ("qkv", "proj"), 4, 4))
    small = base.replace_array(rows=4, cols=4)
    workload = block()
    got = {x.name: x for x in sim.simulate(workload, target).layers}
    on_small = {x.name: x for x in sim.simulate(workload, small).layers}
    on_main = {x.name: x for x in sim.simulate(workload, base).layers}
    for name in ("qkv", "proj"):
        assert got[name].unit == "msa"
        assert (got[name].cycles, got[name].bytes_read, got[name].energy_mj) == (
            on_small[name].cycles,
            on_small[name].bytes_read,
            on_small[name].energy_mj,
        )
    for name in ("qk", "av"):
        assert got[name].unit == "" and got[name].cycles == on_main[name].cycles
    result = sim.simulate(workload, target)
    assert result.cycles == sum(layer.cycles for layer in result.layers)
    table = sim.cost_table(workload, target, [(8, 8)])
    assert int(table.cycles.sum()) + sim.vector_cycles(workload, target) == result.cycles


def test_engines_add_their_pes_to_the_resources() -> None:
    base = sim.load_target("zcu102")
    target = with_engines(base, Engine("msa", ("qkv",), 4, 8))
    parts = {part.component: part for part in sim.estimate_resources(target).breakdown}
    assert parts["array:msa"].dsp == 4 * 8  # one dsp_packed DSP per PE
    assert parts["accumulators:msa"].ff > 0
    assert sim.estimate_resources(target).dsp == sim.estimate_resources(base).dsp + 32


def test_token_split_on_an_engine_is_refused() -> None:
    base = sim.load_target("zcu102")
    base = dataclasses.replace(base, accelerator=dataclasses.replace(base.accelerator, patchwise=Patchwise(False, 0)))
    target = with_engines(base, Engine("msa", ("qkv",), 4, 8))
    with pytest.raises(sim.InputError, match="runs on engine 'msa'"):
        sim.simulate(block(), target, token_splits={"qkv": TokenSplit(4, 0.5)})
