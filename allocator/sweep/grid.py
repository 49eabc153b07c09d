"""A sweep's design points as a lazy grid: counted by multiplying axis lengths, expanded a slice at a time.

A ``[grid]`` of a million points is never a million objects. ``PointGrid`` holds each axis's values and, per
target, what each value resolves to (an absent axis resolves to the target's own value). Point i is the
mixed-radix digit string of i over the axes — the first axis varies slowest, then the models, then the budget
axes fastest, so the points of one design and model sit together and share their cost table and front.
``columns(indices)`` resolves a whole slice at once as numpy columns; ``point(i)`` gives one ``DesignPoint``.
``Points`` joins the grid with the explicit ``[[point]]`` designs the grid lacks, as one sequence.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["FIELDS", "PointGrid", "Points", "point_ids"]

# DesignPoint's fields, sorted: the order of the JSON text its id hashes
FIELDS = (
    "abits", "allocate", "bandwidth_gbps", "choices", "clock_mhz", "cols", "dataflow", "filter_bytes",
    "ifmap_bytes", "limit_bops", "limit_energy_mj", "limit_latency_ms", "limit_size_mb", "model", "ofmap_bytes",
    "rows", "sensitivity", "target", "wbits",
)  # fmt: skip
# fields added after ids were first published: hashed only when set, so every earlier point keeps its id
ID_WHEN_SET = frozenset({"limit_energy_mj"})
BUDGET_AXES: tuple[str, ...] = ("latency_ms", "size_mb", "bops", "energy_mj")
"""Budget axes of a sweep file (``allocate = true``), each setting the ``limit_<axis>`` field of a point."""


def _fragment(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _id_fragment(name: str, value: Any) -> str:
    """A field's ``"name":value`` piece of the id text; empty for a field of ``ID_WHEN_SET`` that is not set."""
    if name in ID_WHEN_SET and value is None:
        return ""
    return f'"{name}":{_fragment(_plain(value))}'


def _joined(parts: Iterable[str]) -> str:
    return "{" + ",".join(part for part in parts if part) + "}"


def id_text(fields: Mapping[str, Any]) -> str:
    """The canonical JSON text of a point's fields (sorted keys, no spaces) that its id hashes."""
    return _joined(_id_fragment(name, fields[name]) for name in FIELDS)


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def point_ids(texts: Sequence[str]) -> list[str]:
    """16-hex-digit ids (SHA-256 prefixes) of canonical point texts."""
    return [hashlib.sha256(text.encode()).hexdigest()[:16] for text in texts]


@dataclass(frozen=True)
class PointGrid:
    """The product of ``axes`` (name → values, file order, budget axes last) and ``models``, lazily.

    ``resolved[axis]`` is, per target of the ``target`` axis and per value, the DesignPoint fields that value
    sets (a tuple of (field, value) pairs); axes absent from the file appear with one value, ``None``, which
    resolves to the target's own setting. ``constants`` are the fields every point shares.
    """

    targets: tuple[str, ...]
    models: tuple[str, ...]
    axes: tuple[tuple[str, tuple[Any, ...]], ...]
    resolved: Mapping[str, tuple[tuple[tuple[tuple[str, Any], ...], ...], ...]]
    constants: tuple[tuple[str, Any], ...]
    _tables: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    @property
    def shape(self) -> tuple[int, ...]:
        """Lengths of the digits of a point index: target, the other axes before ``model``, model, budgets."""
        return tuple(len(values) for _, values in self._order())

    def _order(self) -> list[tuple[str, tuple[Any, ...]]]:
        design = [(name, values) for name, values in self.axes if name not in BUDGET_AXES]
        budgets = [(name, values) for name, values in self.axes if name in BUDGET_AXES]
        return [("target", self.targets), *design, ("model", self.models), *budgets]

    def __len__(self) -> int:
        return math.prod(self.shape)

    def digits(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """Each axis's value index for every point index."""
        order = self._order()
        if len(indices) == 0:
            return {name: np.zeros(0, dtype=np.int64) for name, _ in order}
        unravelled = np.unravel_index(np.asarray(indices, dtype=np.int64), self.shape)
        return {name: np.asarray(d, dtype=np.int64) for (name, _), d in zip(order, unravelled, strict=True)}

    def _field_tables(self) -> dict[str, tuple[str, np.ndarray]]:
        """field → (axis that sets it, object array [target, value index] of its values)."""
        if "fields" not in self._tables:
            tables: dict[str, tuple[str, np.ndarray]] = {}
            for axis, per_target in self.resolved.items():
                names = [name for name, _ in per_target[0][0]]
                for position, name in enumerate(names):
                    table = np.empty((len(per_target), len(per_target[0])), dtype=object)
                    for t, values in enumerate(per_target):
                        for v, pairs in enumerate(values):
                            table[t, v] = pairs[position][1]
                    tables[name] = (axis, table)
            self._tables["fields"] = tables
        return self._tables["fields"]

    def columns(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """Every DesignPoint field of the points at ``indices``, as columns (object arrays where mixed)."""
        digits = self.digits(indices)
        n = len(indices)
        out: dict[str, np.ndarray] = {}
        target_digit = digits["target"]
        for name, (axis, table) in self._field_tables().items():
            value_digit = digits[axis] if axis in digits else np.zeros(n, dtype=np.int64)
            out[name] = table[target_digit, value_digit]
        targets = np.array(self.targets, dtype=object)
        out["target"] = targets[target_digit]
        out["model"] = np.array(self.models, dtype=object)[digits["model"]]
        for name, value in self.constants:
            column = np.empty(n, dtype=object)
            column.fill(value)
            out[name] = column
        return out

    def ids(self, indices: np.ndarray) -> list[str]:
        """Ids of the points at ``indices`` (as ``DesignPoint.point_id`` computes them, a slice at a time): the
        canonical text is joined from per-value JSON fragments, so no point is built."""
        digits = self.digits(indices)
        n = len(indices)
        columns = []
        for name in FIELDS:
            axis, table = self._fragment_tables()[name]
            value_digit = digits[axis] if axis in digits else np.zeros(n, dtype=np.int64)
            fragments = table[digits["target"], value_digit] if table.ndim == 2 else table[value_digit]
            columns.append(fragments.tolist())
        return point_ids([_joined(parts) for parts in zip(*columns, strict=True)])

    def _fragment_tables(self) -> dict[str, tuple[str, np.ndarray]]:
        """field → (digit that picks it, array of its '"field":value' JSON fragments)."""
        if "fragments" not in self._tables:
            tables: dict[str, tuple[str, np.ndarray]] = {}
            for name, (axis, values) in self._field_tables().items():
                fragments = np.empty(values.shape, dtype=object)
                for where, value in np.ndenumerate(values):
                    fragments[where] = _id_fragment(name, value)
                tables[name] = (axis, fragments)
            for name, values in (("target", self.targets), ("model", self.models)):
                tables[name] = (name, np.array([f'"{name}":{_fragment(v)}' for v in values], dtype=object))
            for name, value in self.constants:
                tables[name] = ("", np.array([_id_fragment(name, value)], dtype=object))
            self._tables["fragments"] = tables
        return self._tables["fragments"]

    def point(self, index: int, point_type: type) -> Any:
        """The design point at ``index`` (``point_type`` is ``DesignPoint``; passed in to avoid an import cycle)."""
        columns = self.columns(np.array([index], dtype=np.int64))
        return point_type(**{name: _scalar(columns[name][0]) for name in FIELDS})


@dataclass(frozen=True)
class Points(Sequence):
    """The grid's points, then the explicit designs it does not hold: one sequence, nothing expanded up front."""

    grid: PointGrid | None
    extra: tuple[Any, ...]
    point_type: type

    @property
    def grid_size(self) -> int:
        return len(self.grid) if self.grid is not None else 0

    def __len__(self) -> int:
        return self.grid_size + len(self.extra)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        if index < self.grid_size:
            return self.grid.point(index, self.point_type)  # type: ignore[union-attr]
        return self.extra[index - self.grid_size]

    def __iter__(self) -> Iterator[Any]:
        for start in range(0, self.grid_size, 4096):
            yield from self.slice_points(np.arange(start, min(start + 4096, self.grid_size)))
        yield from self.extra

    def slice_points(self, indices: np.ndarray) -> list[Any]:
        """DesignPoints at ``indices`` (grid and extra alike)."""
        indices = np.asarray(indices, dtype=np.int64)
        in_grid = indices[indices < self.grid_size]
        points: list[Any] = []
        if len(in_grid):
            columns = self.grid.columns(in_grid)  # type: ignore[union-attr]
            values = [[_scalar(v) for v in columns[name].tolist()] for name in FIELDS]
            points = [self.point_type(**dict(zip(FIELDS, row, strict=True))) for row in zip(*values, strict=True)]
        points += [self.extra[i - self.grid_size] for i in indices[indices >= self.grid_size].tolist()]
        return points

    def columns(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """Fields of the points at ``indices`` as columns, grid and extra alike (in the order given)."""
        indices = np.asarray(indices, dtype=np.int64)
        if self.grid is not None and (indices < self.grid_size).all():
            return self.grid.columns(indices)
        points = self.slice_points(indices)
        out = {}
        for name in FIELDS:
            column = np.empty(len(points), dtype=object)
            for i, point in enumerate(points):
                column[i] = getattr(point, name)
            out[name] = column
        return out

    def ids(self, indices: np.ndarray) -> list[str]:
        indices = np.asarray(indices, dtype=np.int64)
        if self.grid is not None and (indices < self.grid_size).all():
            return self.grid.ids(indices)
        return [p.point_id for p in self.slice_points(indices)]
