"""Arrays that switch dataflow per layer (``switchable_dataflows``, ``--dataflow per-layer``): each GEMM runs in
the dataflow the plan names or its best one, costs add up as for a fixed array, and the array pays for the
switch in LUTs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from workloads import mixed_dataflow_workload as workload

from sim import load_target, simulate
from sim.errors import InputError
from sim.simulate import cost_table, vector_cycles
from sim.target import PER_LAYER


@pytest.mark.parametrize("name", ["zcu102", "bitfusion_16x32"])
def test_each_layer_runs_in_its_fastest_dataflow(name: str) -> None:
    target = load_target(name)
    fixed = {d: simulate(workload(), target, (8, 8), dataflow=d) for d in ("os", "ws", "is")}
    switching = simulate(workload(), target, (8, 8), dataflow=PER_LAYER)
    assert switching.dataflow == PER_LAYER
    by_name = {d: {layer.name: layer for layer in result.layers} for d, result in fixed.items()}
    for layer in switching.layers:
        if not layer.m:
            continue
        best = min(("os", "ws", "is"), key=lambda d: (by_name[d][layer.name].cycles, by_name[d][layer.name].energy_mj))
        assert layer.dataflow == best
        assert layer.cycles == by_name[best][layer.name].cycles
        assert layer.energy_mj == by_name[best][layer.name].energy_mj
    assert switching.cycles <= min(result.cycles for result in fixed.values())
    assert len({layer.dataflow for layer in switching.layers if layer.m}) > 1  # the shapes really differ
    assert switching.cycles == sum(layer.cycles for layer in switching.layers)
    assert vector_cycles(workload(), target.replace_array(dataflow=PER_LAYER)) == vector_cycles(workload(), target)


def test_layer_dataflows_fix_layers_and_are_checked() -> None:
    target = load_target("zcu102").replace_array(dataflow=PER_LAYER)
    result = simulate(workload(), target, (8, 8), layer_dataflows={"tall": "is", "deep": "os"})
    chosen = {layer.name: layer.dataflow for layer in result.layers if layer.m}
    assert chosen["tall"] == "is" and chosen["deep"] == "os"
    alone = simulate(workload(), load_target("zcu102"), (8, 8), dataflow="is")
    assert next(lay for lay in result.layers if lay.name == "tall").cycles == alone.layers[0].cycles
    with pytest.raises(InputError, match="not a GEMM"):
        simulate(workload(), target, (8, 8), layer_dataflows={"nope": "os"})
    with pytest.raises(InputError, match="dataflow 'ws' is not one the array"):
        fixed = load_target("zcu102").replace_array(dataflow="os")
        simulate(workload(), fixed, (8, 8), layer_dataflows={"tall": "ws"})


def test_energy_preference_picks_the_least_energy() -> None:
    target = load_target("zcu102").replace_array(dataflow=PER_LAYER)
    table = cost_table(workload(), target, [(8, 8)], prefer="energy_mj")
    for row in table.itertuples():
        energies = {
            d: cost_table(workload(), load_target("zcu102").replace_array(dataflow=d), [(8, 8)])
            .set_index("name")
            .loc[row.name, "energy_mj"]
            for d in ("os", "ws", "is")
        }
        assert row.energy_mj == min(energies.values()) and energies[row.dataflow] == row.energy_mj


def test_switching_costs_luts_and_widest_ports() -> None:
    base = load_target("zcu102")
    fixed = {d: base.replace_array(dataflow=d).accelerator for d in ("os", "ws", "is")}
    switching = simulate(workload(), base, (8, 8), dataflow=PER_LAYER).resources
    each = [simulate(workload(), base, (8, 8), dataflow=d).resources for d in fixed]
    pes = base.accelerator.rows * base.accelerator.cols
    widest = max(w + a for w in base.accelerator.weight_bits for a in base.accelerator.act_bits)
    # the OS/WS/IS select muxes (one LUT per operand bit per PE) on top of the dearest fixed mode's array
    assert switching.lut >= max(r.lut for r in each) + pes * widest
    assert switching.bram36 >= max(r.bram36 for r in each)
    assert switching.dsp == each[0].dsp


def test_target_file_declares_switchable_dataflows(tmp_path: Path) -> None:
    text = load_target("zcu102").path.read_text()
    assert "switchable_dataflows" not in text
    good = text.replace('dataflow = "', 'switchable_dataflows = ["os", "ws", "is"]\ndataflow = "', 1)
    path = tmp_path / "switching.toml"
    path.write_text(good)
    target = load_target(path)
    assert target.accelerator.per_layer_dataflow and target.accelerator.dataflows == ("os", "ws", "is")
    assert not target.replace_array(dataflow="ws").accelerator.per_layer_dataflow
    bad = text.replace('dataflow = "', 'switchable_dataflows = ["ws", "is", "ws"]\ndataflow = "', 1)
    path.write_text(bad)
    with pytest.raises(InputError, match="switchable_dataflows"):
        load_target(path)
    missing = text.replace('dataflow = "', 'switchable_dataflows = ["zz", "is"]\ndataflow = "', 1)
    path.write_text(missing)
    with pytest.raises(InputError, match="switchable_dataflows"):
        load_target(path)
    two = load_target("zcu102")
    two = dataclasses.replace(
        two, accelerator=dataclasses.replace(two.accelerator, switchable_dataflows=("os", "ws"))
    ).replace_array(dataflow=PER_LAYER)
    assert two.accelerator.dataflows == ("os", "ws")  # per-layer keeps the target's own set
    with pytest.raises(InputError, match="unknown dataflow"):
        load_target("zcu102").replace_array(dataflow="diagonal")
