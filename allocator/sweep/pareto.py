"""Pareto membership of sweep points: which designs no other design beats on every objective at once.

A point is on the front when no other point is at least as good on every objective (all minimised) and
strictly better on one. Objectives of a sweep row: ``latency_ms``, ``omega`` (Σ Ω of its bit plan: the ILP's
objective on allocation points, the proxy of its uniform bits on simulation points), ``dsp`` and, where the
simulator reports it, ``energy_mj``. Rows with an error, an infeasible budget or a NaN objective are never on
it. Exact for any number of objectives: points are sorted lexicographically (every dominator comes first) and
each is checked against the front found so far, one numpy comparison per point, a block at a time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["OBJECTIVES", "pareto_mask"]

OBJECTIVES = ("latency_ms", "energy_mj", "omega", "dsp")


def pareto_mask(frame: pd.DataFrame, objectives: tuple[str, ...] = OBJECTIVES) -> np.ndarray:
    """Boolean array over ``frame``'s rows: True for rows on the Pareto front of the objectives it has."""
    names = [name for name in objectives if name in frame.columns]
    if not names or frame.empty:
        return np.zeros(len(frame), dtype=bool)
    values = np.stack([pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64) for name in names], 1)
    valid = np.isfinite(values).all(axis=1)
    if "error" in frame.columns:
        valid &= frame["error"].fillna("").astype(str).to_numpy() == ""
    mask = np.zeros(len(frame), dtype=bool)
    rows = np.flatnonzero(valid)
    if len(rows) == 0:
        return mask
    # equal points do not dominate each other: decide each distinct vector once
    from allocator.sweep.batch import unique_rows

    chosen = values[rows] + 0.0  # -0.0 and 0.0 are one value
    first, inverse = unique_rows(chosen.view(np.int64))
    on_front = _front_of_unique(chosen[first])
    mask[rows] = on_front[inverse]
    return mask


def _front_of_unique(points: np.ndarray) -> np.ndarray:
    """Front membership of distinct points (rows), all objectives minimised."""
    if points.shape[1] == 2:
        return _front_2d(points[:, 0], points[:, 1])
    if points.shape[1] == 3:
        distinct = [len(np.unique(points[:, j])) for j in range(3)]
        c = int(np.argmin(distinct))
        if distinct[c] <= 256:
            a, b = [j for j in range(3) if j != c]
            return _front_3d_grouped(points[:, a], points[:, b], points[:, c])
    return _front_by_scan(points)


def _front_2d(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distinct (a, b) pairs: dominated iff an earlier pair in (a, b) order has b no larger."""
    order = np.lexsort((b, a))
    sorted_b = b[order]
    before = np.minimum.accumulate(np.concatenate([[np.inf], sorted_b[:-1]]))
    on_front = np.zeros(len(a), dtype=bool)
    on_front[order] = sorted_b < before
    return on_front


def _front_3d_grouped(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Distinct (a, b, c) with few distinct c: a point with c = v is dominated by a point of smaller c that is no
    worse in a and b (a staircase query), or by one of equal c that beats it in (a, b) (a 2-D front)."""
    on_front = np.zeros(len(a), dtype=bool)
    lower_a = np.empty(0)
    lower_min_b = np.empty(0)
    for value in np.unique(c):
        group = np.flatnonzero(c == value)
        keep = _front_2d(a[group], b[group])
        if len(lower_a):
            reach = np.searchsorted(lower_a, a[group], side="right")
            best = np.where(reach > 0, lower_min_b[np.maximum(reach - 1, 0)], np.inf)
            keep &= ~(best <= b[group])
        on_front[group] = keep
        # points with c <= value, sorted by a, with the running minimum of b: the staircase for larger c
        members = np.flatnonzero(c <= value)
        order = members[np.argsort(a[members], kind="stable")]
        lower_a, lower_min_b = a[order], np.minimum.accumulate(b[order])
    return on_front


def _front_by_scan(points: np.ndarray) -> np.ndarray:
    """Any number of objectives.

    In lexicographic order a dominator always precedes what it dominates, so each point need only be compared
    with the front members found before it.
    """
    order = np.lexsort(points.T[::-1])
    front: list[int] = []
    front_values = np.empty((0, points.shape[1]))
    on_front = np.zeros(len(points), dtype=bool)
    for index in order.tolist():
        point = points[index]
        if len(front) and (front_values <= point).all(axis=1).any():
            continue  # distinct points: <= everywhere means strictly better somewhere
        front.append(index)
        front_values = np.vstack([front_values, point])
        on_front[index] = True
    return on_front
