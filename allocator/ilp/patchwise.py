"""Patch-wise (token-split) options for the ILP: a layer may take (wbits, abits, abits_low) at a token fraction f.

The ILP stays the same (one choice per layer); a token-split option is one more row of its table, with:

- latency, traffic and energy from ``sim.token_split_cost_table`` (sim/patchwise.py: the high and low token
  groups as row groups on the array, with the target's token sort or worst-case tile widths);
- size and on-chip bits of the weights at ``wbits`` (the weights are not split);
- BOPs = n·k·count·wbits·(h·abits + (M − h)·abits_low), h = ⌈f·M⌉ high rows;
- Ω = s·Ω(wbits, abits) + (1 − s)·Ω(wbits, abits_low), where s is the layer's *token importance share*: the
  share of the input's importance (summed over tokens) that the high group carries (``token_shares`` in
  ``allocator.sensitivity.tokens`` measures it as the L1 mass of the top-f tokens by the plan's token score).
  A layer's Ω(w, a) prices the error of quantizing every token at a; keeping the tokens that carry share s of
  the importance at the high width leaves s of the high-width error and 1 − s of the low-width one (Ω taken as
  additive over tokens, weighted by importance). For the random control s is the share of its random tokens
  (about f). This is our estimate, not PMQ's (its formula is unpublished): it is tested against measured
  accuracy in bench/patchwise.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from allocator.ilp.problem import OPTION_COLUMNS, SPLIT_COLUMNS, Problem
from sim.errors import InputError
from sim.patchwise import check_fraction, high_rows

if TYPE_CHECKING:
    from sim.target import Target
    from sim.workload import Workload

__all__ = ["TOKEN_SPLIT_KINDS", "split_choices", "split_layers", "with_token_splits"]

#: GEMM kinds whose input rows are tokens of a Linear layer (quant.quantize_ splits these only).
TOKEN_SPLIT_KINDS: tuple[str, ...] = ("qkv", "proj", "fc1", "fc2")


def split_layers(workload: Workload) -> list[str]:
    """Names of the GEMMs a token split applies to (``TOKEN_SPLIT_KINDS``), in execution order."""
    return [g.name for g in workload.gemms if g.kind in TOKEN_SPLIT_KINDS]


def split_choices(problem: Problem, layer: str) -> list[tuple[int, int, int]]:
    """(wbits, abits, abits_low) for ``layer``: every pair of its layer-wise choices (w, a) and (w, a_low) with
    a_low < a, so both Ω terms exist."""
    rows = problem.choice_rows[problem.layers.index(layer)]
    pairs = {(int(problem.wbits[r]), int(problem.abits[r])) for r in rows if problem.abits_low[r] == 0}  # type: ignore[index]
    return sorted((w, a, low) for w, a in pairs for w2, low in pairs if w2 == w and low < a)


def with_token_splits(
    problem: Problem,
    workload: Workload,
    target: Target,
    fraction: float,
    shares: Mapping[str, float],
    *,
    layers: Iterable[str] | None = None,
    ideal_memory: bool = False,
) -> Problem:
    """``problem`` with a token-split option for every ``split_choices`` triple of each of ``layers`` (default
    ``split_layers``) at ``fraction`` of tokens high; ``shares``: each layer's token importance share s (module
    docstring). Raises ``InputError`` for a fraction outside (0, 1), a target without patch-wise support, or a
    share outside [0, 1]."""
    import sim

    fraction = check_fraction(fraction, "--patchwise")
    names = split_layers(workload) if layers is None else list(layers)
    gemms = {g.name: g for g in workload.gemms}
    for name in names:
        if name not in gemms:
            raise InputError(f"token split: layer {name!r} is not a GEMM of {workload.name!r}")
        share = shares.get(name)
        if share is None or not 0.0 <= share <= 1.0:
            raise InputError(f"token split: layer {name!r} has token importance share {share!r}; needs one in [0, 1]")
    triples = sorted({t for name in names for t in split_choices(problem, name)})
    costs = sim.token_split_cost_table(workload, target, triples, fraction, layers=names, ideal_memory=ideal_memory)
    omega = {
        problem.option_key(r)[:3]: float(problem.sensitivity[r])
        for r in range(len(problem))
        if not problem.abits_low[r]
    }  # type: ignore[index]
    wanted = {(name, *t) for name in names for t in split_choices(problem, name)}
    rows = []
    for c in costs.itertuples(index=False):
        key = (str(c.name), int(c.wbits), int(c.abits), int(c.abits_low))
        if key not in wanted:
            continue
        share = float(shares[key[0]])
        gemm = gemms[key[0]]
        high = high_rows(gemm.m, fraction)
        weight_bits = int(c.weight_params) * key[1]
        rows.append(
            {
                "layer": key[0],
                "wbits": key[1],
                "abits": key[2],
                "sensitivity": share * omega[key[:3]] + (1 - share) * omega[(key[0], key[1], key[3])],
                "latency_cycles": c.cycles,
                "size_bits": weight_bits,
                "bops": gemm.n * gemm.k * gemm.count * key[1] * (high * key[2] + (gemm.m - high) * key[3]),
                "onchip_bits": weight_bits,
                "energy_mj": float(c.energy_mj),
                "abits_low": key[3],
                "token_fraction": fraction,
            }
        )
    frame = pd.concat(
        [problem.to_frame().reindex(columns=[*OPTION_COLUMNS, *SPLIT_COLUMNS], fill_value=0), pd.DataFrame(rows)],
        ignore_index=True,
    )
    frame["abits_low"] = frame["abits_low"].astype(np.int64)
    return Problem.from_frame(
        frame,
        clock_mhz=problem.clock_mhz,
        layers=problem.layers,
        fixed_cycles=problem.fixed_cycles,
        onchip_capacity_bits=problem.onchip_capacity_bits,
        ties=problem.ties,
        model=problem.model,
        fixed_energy_mj=problem.fixed_energy_mj,
    )
