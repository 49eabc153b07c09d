"""The bit-allocation problem: every layer's bit choices with their sensitivity and hardware costs.

One row per layer and (wbits, abits) choice — the ILP's whole input table. Costs come from ``sim``: latency
cycles per layer (stalls included) from ``sim.cost_table``, and the bit-independent vector-unit cycles from
``sim.vector_cycles``, so a plan's latency is ``fixed_cycles + Σ latency_cycles`` of its choices. Energy the same
way: ``energy_mj`` per option from the cost table's dynamic energy, ``fixed_energy_mj`` from
``sim.vector_energy_mj`` (unfused vector operators), so a plan's energy is ``fixed_energy_mj + Σ energy_mj``.

Units: cycles of the accelerator clock (``clock_mhz``), bits; MB below means 10^6 bytes and G means 10^9.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from sim.errors import InputError
from sim.target import BRAM36_BITS, URAM_BITS

if TYPE_CHECKING:
    from sim.target import Target
    from sim.workload import Workload

__all__ = [
    "BRAM36_BITS",
    "OPTION_COLUMNS",
    "SPLIT_COLUMNS",
    "URAM_BITS",
    "BitField",
    "Problem",
    "Tie",
    "build_problem",
    "onchip_capacity_bits",
]

BitField = Literal["wbits", "abits", "bits"]
_FIELDS: tuple[str, ...] = ("wbits", "abits", "bits")

OPTION_COLUMNS: tuple[str, ...] = (
    "layer",
    "wbits",
    "abits",
    "sensitivity",
    "latency_cycles",
    "size_bits",
    "bops",
    "onchip_bits",
    "energy_mj",
)
_FIELD = {"layer": "option_layer"}  # table column -> Problem field, where they differ
_COST_COLUMNS: tuple[str, ...] = ("latency_cycles", "size_bits", "bops", "onchip_bits", "energy_mj")
#: Columns of patch-wise (token-split) options, present in a table only when it has some: the low token group's
#: bits and the fraction of tokens at ``abits`` (both 0 on a layer-wise row; sim/patchwise.py, quant/tokens.py).
SPLIT_COLUMNS: tuple[str, ...] = ("abits_low", "token_fraction")

# BRAM36_BITS and URAM_BITS (Xilinx UG573 block sizes) come from sim.target, their one definition.


@dataclass(frozen=True)
class Tie:
    """Layer bit fields that must all take the same value in a plan.

    Each member is ``(layer, field)``: ``"wbits"``, ``"abits"``, or ``"bits"`` (the whole (wbits, abits) pair).
    ``Tie.of("blocks.0.attn.matmul_qk", "blocks.0.attn.qkv", field="abits")`` ties two layers' activation bits;
    ``Tie((("blocks.0.attn.matmul_qk", "abits"), ("blocks.0.attn.matmul_qk", "wbits")))`` puts q and k at the
    same bits.
    """

    members: tuple[tuple[str, BitField], ...]

    def __post_init__(self) -> None:
        members = tuple((str(layer), str(f)) for layer, f in self.members)
        object.__setattr__(self, "members", members)
        if len(members) < 2:
            raise InputError(f"tie {self}: needs at least two members")
        for _, f in members:
            if f not in _FIELDS:
                raise InputError(f"tie {self}: field {f!r} is not one of {', '.join(_FIELDS)}")
        if len({f == "bits" for _, f in members}) > 1:
            raise InputError(f"tie {self}: cannot tie a (wbits, abits) pair to a single bit width")

    @classmethod
    def of(cls, *layers: str, field: BitField = "abits") -> Tie:
        """All ``layers`` take the same ``field``."""
        return cls(tuple((layer, field) for layer in layers))

    @classmethod
    def parse(cls, spec: Tie | Sequence[str] | Sequence[tuple[str, str]]) -> Tie:
        """A tie from ``Tie``, ``("layer_a", "layer_b", ..., "abits")`` or ``(("layer_a", "abits"), ...)``."""
        if isinstance(spec, Tie):
            return spec
        items = list(spec)
        if items and all(isinstance(item, tuple | list) and len(item) == 2 for item in items):
            return cls(tuple((str(layer), str(f)) for layer, f in items))
        if len(items) >= 3 and all(isinstance(item, str) for item in items) and items[-1] in _FIELDS:
            return cls.of(*items[:-1], field=items[-1])
        raise InputError(f"tie {spec!r}: expected (layer, ..., field) or ((layer, field), ...)")

    def __str__(self) -> str:
        return " = ".join(f"{layer}.{f}" for layer, f in self.members)


def _column(values: Iterable, dtype: type, name: str) -> np.ndarray:
    array = np.array(values, dtype=dtype)  # a copy: freezing it must not freeze the caller's array
    if array.ndim != 1:
        raise InputError(f"problem column {name!r} must be one-dimensional")
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class Problem:
    """The ILP's input: one row (an *option*) per layer and (wbits, abits) choice, plus the plan-wide terms.

    Row arrays (equal length): ``option_layer`` (the name of the layer the row is a choice for; the table's
    ``layer`` column), ``wbits``, ``abits`` (bits), ``sensitivity`` (Ω, unitless,
    lower is better), ``latency_cycles`` (cycles, stalls included), ``size_bits`` (weight bits stored),
    ``bops`` (bit operations: MACs × wbits × abits), ``onchip_bits`` (weight bits that must sit on chip when
    weights are kept resident), ``energy_mj`` (mJ of dynamic energy; zeros when the table has none),
    ``dataflow`` (the dataflow an option runs in on an array that switches dataflow per layer, else ""). ``layers``
    gives the layer order; rows are kept sorted by it, then by bits.
    ``fixed_cycles`` (cycles) is added to every plan's latency and ``fixed_energy_mj`` (mJ) to its energy;
    ``onchip_capacity_bits`` (bits, None when
    unknown) bounds Σ onchip_bits when on-chip limits are asked for; ``ties`` always hold (user ties can also
    be given per solve in ``allocator.ilp.Limits``).
    """

    option_layer: np.ndarray
    wbits: np.ndarray
    abits: np.ndarray
    sensitivity: np.ndarray
    latency_cycles: np.ndarray
    size_bits: np.ndarray
    bops: np.ndarray
    onchip_bits: np.ndarray
    layers: tuple[str, ...]
    clock_mhz: float
    fixed_cycles: int = 0
    onchip_capacity_bits: int | None = None
    ties: tuple[Tie, ...] = ()
    model: str = ""
    energy_mj: np.ndarray | None = None
    fixed_energy_mj: float = 0.0
    dataflow: np.ndarray | None = None  # per option: the dataflow it runs in on a per-layer-dataflow array, else ""
    abits_low: np.ndarray | None = None
    token_fraction: np.ndarray | None = None
    choice_rows: tuple[np.ndarray, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        columns = {
            "option_layer": _column(self.option_layer, object, "layer"),
            "wbits": _column(self.wbits, np.int64, "wbits"),
            "abits": _column(self.abits, np.int64, "abits"),
            "sensitivity": _column(self.sensitivity, np.float64, "sensitivity"),
            "latency_cycles": _column(self.latency_cycles, np.float64, "latency_cycles"),
            "size_bits": _column(self.size_bits, np.float64, "size_bits"),
            "bops": _column(self.bops, np.float64, "bops"),
            "onchip_bits": _column(self.onchip_bits, np.float64, "onchip_bits"),
            "energy_mj": _column(
                np.zeros(len(self.option_layer)) if self.energy_mj is None else self.energy_mj, np.float64, "energy_mj"
            ),
            "dataflow": _column(
                [""] * len(self.option_layer) if self.dataflow is None else [str(d) for d in self.dataflow],
                object,
                "dataflow",
            ),
            "abits_low": _column(
                np.zeros(len(self.option_layer)) if self.abits_low is None else self.abits_low, np.int64, "abits_low"
            ),
            "token_fraction": _column(
                np.zeros(len(self.option_layer)) if self.token_fraction is None else self.token_fraction,
                np.float64,
                "token_fraction",
            ),
        }
        rows = len(columns["option_layer"])
        for name, values in columns.items():
            if len(values) != rows:
                raise InputError(f"problem column {name!r} has {len(values)} rows; 'layer' has {rows}")
        layers = tuple(str(name) for name in self.layers)
        if len(set(layers)) != len(layers):
            duplicate = next(name for name in layers if layers.count(name) > 1)
            raise InputError(f"problem: layer {duplicate!r} is listed twice in the layer order")
        position = {name: i for i, name in enumerate(layers)}
        for name in columns["option_layer"]:
            if name not in position:
                raise InputError(f"problem: option row for layer {name!r}, which is not in the layer order")
        if not np.isfinite(self.clock_mhz) or self.clock_mhz <= 0:
            raise InputError(f"problem: clock_mhz={self.clock_mhz}; must be a positive number")
        if self.fixed_cycles < 0:
            raise InputError(f"problem: fixed_cycles={self.fixed_cycles}; must be >= 0")
        if not np.isfinite(self.fixed_energy_mj) or self.fixed_energy_mj < 0:
            raise InputError(f"problem: fixed_energy_mj={self.fixed_energy_mj}; must be a finite number >= 0")
        if self.onchip_capacity_bits is not None and self.onchip_capacity_bits < 0:
            raise InputError(f"problem: onchip_capacity_bits={self.onchip_capacity_bits}; must be >= 0")
        for name in ("sensitivity", *_COST_COLUMNS):
            values = columns[name]
            bad = ~np.isfinite(values) | (values < 0)
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                layer, wbits, abits = (columns[c][row] for c in ("option_layer", "wbits", "abits"))
                raise InputError(
                    f"problem: layer {layer!r} at W{wbits}A{abits} has {name}={values[row]}; "
                    "must be a finite number >= 0"
                )
        for name in ("wbits", "abits"):
            if (columns[name] <= 0).any():
                row = int(np.flatnonzero(columns[name] <= 0)[0])
                raise InputError(f"problem: layer {columns['option_layer'][row]!r} has {name}={columns[name][row]}")

        split = columns["abits_low"] > 0
        fraction = columns["token_fraction"]
        bad = (split & ~((fraction > 0) & (fraction < 1) & (columns["abits_low"] < columns["abits"]))) | (
            ~split & (fraction != 0)
        )
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise InputError(
                f"problem: layer {columns['option_layer'][row]!r}: a token-split option needs 0 < token_fraction < 1 "
                f"and abits_low below abits (got abits_low={columns['abits_low'][row]}, "
                f"token_fraction={fraction[row]})"
            )
        layer_index = np.array([position[name] for name in columns["option_layer"]], dtype=np.int64)
        order = np.lexsort((columns["abits_low"], columns["abits"], columns["wbits"], layer_index))
        for name, values in columns.items():
            values = values[order]
            values.setflags(write=False)
            object.__setattr__(self, name, values)
        layer_index = layer_index[order]
        keys = (
            np.stack([layer_index, self.wbits, self.abits, self.abits_low], axis=1)
            if rows
            else np.zeros((0, 4), np.int64)
        )
        if rows and (np.diff(keys, axis=0) == 0).all(axis=1).any():
            row = int(np.flatnonzero((np.diff(keys, axis=0) == 0).all(axis=1))[0])
            layer, wbits, abits = self.option_layer[row], self.wbits[row], self.abits[row]
            low = f"/{self.abits_low[row]}" if self.abits_low[row] else ""
            raise InputError(f"problem: layer {layer!r} has W{wbits}A{abits}{low} twice")
        bounds = np.searchsorted(layer_index, np.arange(len(layers) + 1))
        choice_rows = tuple(np.arange(bounds[i], bounds[i + 1]) for i in range(len(layers)))
        for i, rows_i in enumerate(choice_rows):
            if len(rows_i) == 0:
                raise InputError(f"problem: layer {layers[i]!r} has no bit choice")
            rows_i.setflags(write=False)
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "choice_rows", choice_rows)
        object.__setattr__(self, "fixed_cycles", int(self.fixed_cycles))
        object.__setattr__(self, "fixed_energy_mj", float(self.fixed_energy_mj))
        object.__setattr__(self, "ties", tuple(Tie.parse(tie) for tie in self.ties))
        self.check_ties(self.ties)

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        clock_mhz: float,
        layers: Sequence[str] | None = None,
        fixed_cycles: int = 0,
        onchip_capacity_bits: int | None = None,
        ties: Sequence[Tie | Sequence] = (),
        model: str = "",
        fixed_energy_mj: float = 0.0,
    ) -> Problem:
        """A problem from a table with the ``OPTION_COLUMNS`` (``onchip_bits`` defaults to ``size_bits``,
        ``energy_mj`` to zeros).

        ``layers`` defaults to the order of first appearance in ``frame``.
        """
        frame = frame.copy()
        if "onchip_bits" not in frame.columns and "size_bits" in frame.columns:
            frame["onchip_bits"] = frame["size_bits"]
        if "energy_mj" not in frame.columns:
            frame["energy_mj"] = 0.0
        dataflow = frame["dataflow"].fillna("").astype(str).to_numpy() if "dataflow" in frame.columns else None
        split_columns = {c: frame[c].fillna(0).to_numpy() for c in SPLIT_COLUMNS if c in frame.columns}
        missing = [c for c in OPTION_COLUMNS if c not in frame.columns]
        if missing:
            raise InputError(f"problem table is missing column(s) {', '.join(missing)}")
        if layers is None:
            layers = tuple(dict.fromkeys(frame["layer"].astype(str)))
        return cls(
            **{_FIELD.get(c, c): frame[c].to_numpy() for c in OPTION_COLUMNS},
            layers=tuple(layers),
            clock_mhz=clock_mhz,
            fixed_cycles=fixed_cycles,
            onchip_capacity_bits=onchip_capacity_bits,
            ties=tuple(Tie.parse(t) for t in ties),
            model=model,
            fixed_energy_mj=fixed_energy_mj,
            dataflow=dataflow,
            **split_columns,
        )

    @property
    def per_layer_dataflow(self) -> bool:
        """Whether options carry their own dataflow (an array that switches dataflow per layer)."""
        return bool(self.dataflow is not None and any(self.dataflow))

    @property
    def has_token_splits(self) -> bool:
        """Whether any option is a patch-wise (token-split) choice."""
        return bool((self.abits_low > 0).any())  # type: ignore[operator]

    def option_key(self, row: int) -> tuple[str, int, int, int]:
        """(layer, wbits, abits, abits_low) of option ``row``; abits_low is 0 for a layer-wise choice."""
        return (str(self.option_layer[row]), int(self.wbits[row]), int(self.abits[row]), int(self.abits_low[row]))  # type: ignore[index]

    def to_frame(self) -> pd.DataFrame:
        """The option table: one row per layer and bit choice, columns ``OPTION_COLUMNS`` (plus ``SPLIT_COLUMNS``
        when some option is a token split, and ``dataflow`` on a per-layer-dataflow array)."""
        columns = (*OPTION_COLUMNS, *SPLIT_COLUMNS) if self.has_token_splits else OPTION_COLUMNS
        frame = pd.DataFrame({c: np.asarray(getattr(self, _FIELD.get(c, c))) for c in columns})
        if self.per_layer_dataflow:
            frame["dataflow"] = np.asarray(self.dataflow)
        frame["layer"] = frame["layer"].astype(str)
        for c in _COST_COLUMNS:
            if c != "energy_mj" and np.all(np.mod(frame[c], 1) == 0):
                frame[c] = frame[c].astype(np.int64)
        return frame

    def with_sensitivity(self, sensitivity: pd.DataFrame, *, partial: bool = False) -> Problem:
        """The same problem with Ω replaced from a table [layer, wbits, abits, sensitivity].

        Every option must get a score unless ``partial`` (then options left out keep theirs); rows for choices
        the problem lacks are an error.
        """
        scores = _sensitivity_lookup(sensitivity)
        new = np.array(self.sensitivity, dtype=np.float64)
        for row in range(len(new)):
            key = self.option_key(row)
            if key in scores:
                new[row] = scores.pop(key)
            elif not partial:
                raise InputError(f"sensitivity: no score for layer {key[0]!r} at {_bits_label(*key[1:])}")
        if scores:
            layer, wbits, abits, low = next(iter(scores))
            raise InputError(
                f"sensitivity: layer {layer!r} at {_bits_label(wbits, abits, low)} is not a choice of the problem"
            )
        frame = self.to_frame()
        frame["sensitivity"] = new
        return Problem.from_frame(
            frame,
            clock_mhz=self.clock_mhz,
            layers=self.layers,
            fixed_cycles=self.fixed_cycles,
            onchip_capacity_bits=self.onchip_capacity_bits,
            ties=self.ties,
            model=self.model,
            fixed_energy_mj=self.fixed_energy_mj,
        )

    def cycles_to_ms(self, cycles: float) -> float:
        """Milliseconds that ``cycles`` of the accelerator clock take."""
        return cycles / (self.clock_mhz * 1e3)

    def ms_to_cycles(self, ms: float) -> float:
        """Accelerator clock cycles in ``ms`` milliseconds."""
        return ms * self.clock_mhz * 1e3

    def check_ties(self, ties: Iterable[Tie]) -> None:
        """Raise InputError for a tie naming an unknown layer or whose members share no bit value."""
        position = {name: i for i, name in enumerate(self.layers)}
        for tie in ties:
            common: set | None = None
            for layer, f in tie.members:
                if layer not in position:
                    raise InputError(f"tie {tie}: layer {layer!r} is not in the problem")
                values = set(self.tie_values(position[layer], f))
                common = values if common is None else common & values
            if not common:
                raise InputError(f"tie {tie}: its layers have no bit value in common")

    def tie_values(self, layer_index: int, bit_field: str) -> list:
        """The tied value (an int, or a (wbits, abits) pair for "bits") of each choice of a layer, in row order."""
        rows = self.choice_rows[layer_index]
        if bit_field == "wbits":
            return [int(b) for b in self.wbits[rows]]
        if bit_field == "abits":
            return [int(b) for b in self.abits[rows]]
        return [(int(w), int(a)) for w, a in zip(self.wbits[rows], self.abits[rows], strict=True)]

    @property
    def layer(self) -> np.ndarray:
        """Alias of ``option_layer`` (kept for callers of the earlier name; ``layers`` is the layer order)."""
        return self.option_layer

    def __len__(self) -> int:
        return len(self.option_layer)

    def __repr__(self) -> str:
        return (
            f"Problem({self.model!r}, {len(self.layers)} layers, {len(self)} options, "
            f"{self.clock_mhz:g} MHz, {len(self.ties)} ties)"
        )


def _bits_label(wbits: int, abits: int, abits_low: int = 0) -> str:
    return f"W{wbits}A{abits}" + (f"/{abits_low}" if abits_low else "")


def _sensitivity_lookup(sensitivity: pd.DataFrame) -> dict[tuple[str, int, int, int], float]:
    """Scores by (layer, wbits, abits, abits_low); a table without ``abits_low`` scores layer-wise choices (0)."""
    missing = [c for c in ("layer", "wbits", "abits", "sensitivity") if c not in sensitivity.columns]
    if missing:
        raise InputError(f"sensitivity table is missing column(s) {', '.join(missing)}")
    lows = sensitivity["abits_low"].fillna(0) if "abits_low" in sensitivity.columns else [0] * len(sensitivity)
    scores: dict[tuple[str, int, int, int], float] = {}
    rows = sensitivity[["layer", "wbits", "abits", "sensitivity"]].itertuples(index=False)
    for (layer, wbits, abits, score), low in zip(rows, lows, strict=True):
        key = (str(layer), int(wbits), int(abits), int(low))
        if key in scores:
            raise InputError(f"sensitivity: layer {key[0]!r} at {_bits_label(*key[1:])} appears twice")
        scores[key] = float(score)
    return scores


def onchip_capacity_bits(target: Target) -> int:
    """Bits of on-chip memory left for resident weights: on an FPGA, BRAM36 and URAM under the target's use caps;
    on an ASIC, its SRAM. The input and output buffers placed in that memory keep their share; the weight
    buffer is what resident weights replace."""
    device, caps, buffers = target.device, target.caps, target.accelerator.buffers
    if getattr(device, "kind", "fpga") == "asic":
        memory_bits = 8 * getattr(device, "sram_bytes", 0)
        kinds = {"sram"}
    else:
        memory_bits = device.bram36 * caps.bram36 * BRAM36_BITS + device.uram * caps.uram * URAM_BITS
        kinds = {"bram36", "uram"}
    buffer_bits = 0
    for name in ("ifmap", "ofmap"):
        if getattr(buffers, f"{name}_memory", "bram36") in kinds:
            buffer_bits += 8 * getattr(buffers, f"{name}_bytes")
    return max(0, int(memory_bits - buffer_bits))


def build_problem(
    workload: Workload,
    target: Target,
    sensitivity: pd.DataFrame,
    bit_pairs: Sequence[tuple[int, int]] | None = None,
    *,
    ideal_memory: bool = False,
    cost_table: pd.DataFrame | None = None,
    vector_cycles: int | None = None,
    vector_energy_mj: float | None = None,
    ties: Sequence[Tie | Sequence] = (),
    prefer: str = "cycles",
) -> Problem:
    """The problem for ``workload`` on ``target``: costs from ``sim.cost_table``, Ω from ``sensitivity``.

    ``sensitivity`` has columns [layer, wbits, abits, sensitivity]; a layer's choices are the bit pairs that
    have both a cost and a score. ``bit_pairs`` defaults to every (wbits, abits) the target's array supports.
    ``cost_table`` / ``vector_cycles`` / ``vector_energy_mj`` replace the simulator's (same columns as
    ``sim.cost_table``: name, wbits, abits, macs, weight_params, cycles, and energy_mj if energy is wanted) — for
    tests and for cost tables computed elsewhere. On an array that switches dataflow per layer, each option runs
    in its best dataflow for ``prefer`` (``"cycles"``, or ``"energy_mj"`` when energy is the binding budget; see
    ``sim.cost_table``) and the option table records it.
    """
    if bit_pairs is None:
        accel = target.accelerator
        bit_pairs = [(w, a) for w in accel.weight_bits for a in accel.act_bits]
    bit_pairs = [(int(w), int(a)) for w, a in bit_pairs]
    if cost_table is None or vector_cycles is None:
        import sim

        if cost_table is None:
            cost_table = sim.cost_table(workload, target, bit_pairs, ideal_memory=ideal_memory, prefer=prefer)
            if vector_energy_mj is None:  # the simulator's energies: its unfused vector operators are the fixed part
                vector_energy_mj = sim.vector_energy_mj(workload, target)
        if vector_cycles is None:
            vector_cycles = sim.vector_cycles(workload, target)
    missing = [c for c in ("name", "wbits", "abits", "macs", "weight_params", "cycles") if c not in cost_table.columns]
    if missing:
        raise InputError(f"cost table is missing column(s) {', '.join(missing)}")

    gemms = [g.name for g in workload.gemms]
    known = set(gemms)
    scores = _sensitivity_lookup(sensitivity)
    for layer, wbits, abits, _ in scores:
        if layer not in known:
            raise InputError(f"sensitivity: layer {layer!r} (W{wbits}A{abits}) is not a GEMM of {workload.name!r}")
    wanted = set(bit_pairs)
    costs = cost_table[
        [(int(w), int(a)) in wanted for w, a in zip(cost_table["wbits"], cost_table["abits"], strict=True)]
    ]
    rows = []
    energies = costs["energy_mj"] if "energy_mj" in costs.columns else pd.Series(0.0, index=costs.index)
    per_layer = target.accelerator.per_layer_dataflow and "dataflow" in costs.columns
    dataflows = costs["dataflow"] if per_layer else pd.Series("", index=costs.index)
    for (name, wbits, abits, macs, weight_params, cycles), energy, dataflow in zip(
        costs[["name", "wbits", "abits", "macs", "weight_params", "cycles"]].itertuples(index=False),
        energies,
        dataflows,
        strict=True,
    ):
        key = (str(name), int(wbits), int(abits), 0)
        if key[0] not in known:
            raise InputError(f"cost table: layer {key[0]!r} is not a GEMM of {workload.name!r}")
        if key not in scores:
            continue
        weight_bits = int(weight_params) * key[1]
        rows.append(
            {
                "layer": key[0],
                "wbits": key[1],
                "abits": key[2],
                "sensitivity": scores[key],
                "latency_cycles": cycles,
                "size_bits": weight_bits,
                "bops": int(macs) * key[1] * key[2],
                # attention matmuls have no weights (weight_params = 0), so nothing of theirs stays on chip
                "onchip_bits": weight_bits,
                "energy_mj": float(energy),
                "dataflow": str(dataflow),
            }
        )
    frame = pd.DataFrame(rows, columns=[*OPTION_COLUMNS, "dataflow"])
    have = set(frame["layer"])
    for name in gemms:
        if name not in have:
            raise InputError(
                f"layer {name!r} of {workload.name!r} has no bit choice with both a cost and a sensitivity score"
            )
    return Problem.from_frame(
        frame,
        clock_mhz=target.clock_mhz,
        layers=gemms,
        fixed_cycles=int(vector_cycles),
        onchip_capacity_bits=onchip_capacity_bits(target),
        ties=ties,
        model=workload.name,
        fixed_energy_mj=float(vector_energy_mj or 0.0),
    )
