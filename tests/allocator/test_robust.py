"""Layers whose bits flip within their scores' error bars (allocator.ilp.robust)."""

from __future__ import annotations

import pandas as pd
import pytest

from allocator.ilp.model import Limits, allocate
from allocator.ilp.problem import Problem
from allocator.ilp.robust import unresolved_layers
from sim.errors import InputError

COLUMNS = ["layer", "wbits", "abits", "sensitivity", "latency_cycles", "size_bits", "bops", "onchip_bits"]


def budget_problem() -> Problem:
    """Two layers, each 4-bit (slow, small Ω) or 2-bit (fast, larger Ω); the latency budget (500 cycles at
    1 MHz = 0.5 ms) lets exactly one of them stay at 4 bits: the one whose drop to 2 bits costs more Ω."""
    frame = pd.DataFrame(
        [
            ("a", 4, 8, 1.0, 300, 4e6, 1e9, 0),
            ("a", 2, 8, 2.0, 200, 2e6, 1e9, 0),
            ("b", 4, 8, 1.0, 300, 4e6, 1e9, 0),
            ("b", 2, 8, 2.2, 200, 2e6, 1e9, 0),
        ],
        columns=COLUMNS,
    )
    return Problem.from_frame(frame, clock_mhz=1.0)


def _errors(se_a: float, se_b: float) -> pd.DataFrame:
    rows = [("a", 4, 8, se_a), ("a", 2, 8, se_a), ("b", 4, 8, se_b), ("b", 2, 8, se_b)]
    return pd.DataFrame(rows, columns=["layer", "wbits", "abits", "sensitivity_se"])


def test_a_layer_close_to_its_rival_is_unresolved_and_exact_scores_leave_none() -> None:
    allocation = allocate(budget_problem(), Limits(latency_ms=0.5)).check()
    chosen = {c.layer: (c.wbits, c.abits) for c in allocation.chosen}
    assert chosen == {"a": (2, 8), "b": (4, 8)}  # b's drop costs 1.2, a's 1.0
    assert unresolved_layers(allocation, _errors(0.0, 0.0)) == ()
    # ±0.06 on each score (z=2: 0.12) can close b's 0.2 lead over a: b is unresolved
    flips = unresolved_layers(allocation, _errors(0.0, 0.06))
    assert [(f.layer, f.chosen, f.flipped) for f in flips] == [("b", (4, 8), (2, 8))]
    assert flips[0].to_json() == {"layer": "b", "chosen": [4, 8], "flipped": [2, 8]}
    # a tight error bar on b leaves it resolved
    assert unresolved_layers(allocation, _errors(0.0, 0.01)) == ()
    # a mapping works as well as a table, and z scales the bars
    assert unresolved_layers(allocation, {("b", 4, 8): 0.06, ("b", 2, 8): 0.06}, z=0.5) == ()


def test_bad_z_and_tables_are_input_errors() -> None:
    allocation = allocate(budget_problem(), Limits(latency_ms=0.5)).check()
    with pytest.raises(InputError, match="z must be"):
        unresolved_layers(allocation, _errors(0.1, 0.1), z=-1)
    with pytest.raises(InputError, match="sensitivity_se"):
        unresolved_layers(allocation, pd.DataFrame({"layer": ["a"], "wbits": [4], "abits": [8]}))
