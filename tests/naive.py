"""Slow, obvious plain-Python twins of the kernels in sim/kernels.py, for tiny shapes only.

- ``naive_systolic_tile``: moves operands register by register through an R×C array, one cycle per loop
  step, and stops when the last output has been produced; returns the outputs and the cycles it took.
- ``naive_gemm_cycles``: lists every fold's tiles explicitly (resident tiles kept in sets), takes each fold's
  cycles from ``naive_systolic_tile`` and steps the DRAM channel and the array cycle by cycle.
- ``naive_functional_gemm``, ``naive_vector_cycles``.

Nothing here uses the closed forms; tests compare these with the kernels and with the closed forms.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = [
    "naive_fold_cycles",
    "naive_functional_gemm",
    "naive_gemm_cycles",
    "naive_systolic_tile",
    "naive_vector_cycles",
]

DATAFLOWS = {"os": 0, "ws": 1, "is": 2}
PSUM_BYTES = 4


def _zeros(rows: int, cols: int) -> list[list[int]]:
    return [[0] * cols for _ in range(rows)]


def naive_systolic_tile(dataflow: str, rows: int, cols: int, a: list, b: list) -> tuple[list[list[int]], int]:
    """One fold through an R×C array; operands as nested lists, zero-padded to the full array.

    OS: a is r×K, b is K×c → r×c outputs. WS: a is M×Kt streaming, b is Kt×c stationary → M×c.
    IS: a is Kt×c stationary (Aᵀ tile), b is Kt×N streaming → c×N. Returns (outputs, cycles).
    """
    if dataflow == "os":
        k = len(b)
        a_full = [[(a[r][kk] if r < len(a) else 0) for kk in range(k)] for r in range(rows)]
        b_full = [[(b[kk][c] if c < len(b[0]) else 0) for c in range(cols)] for kk in range(k)]
        # each register holds (value, k index) or None; inputs enter skewed by row / column
        a_reg = [[None] * cols for _ in range(rows)]
        b_reg = [[None] * cols for _ in range(rows)]
        acc = _zeros(rows, cols)
        macs_done = _zeros(rows, cols)
        t = 0
        while any(macs_done[r][c] < k for r in range(rows) for c in range(cols)):
            for r in range(rows):
                a_reg[r] = [(a_full[r][t - r], t - r) if 0 <= t - r < k else None, *a_reg[r][:-1]]
            new_b = [[None] * cols for _ in range(rows)]
            for c in range(cols):
                new_b[0][c] = (b_full[t - c][c], t - c) if 0 <= t - c < k else None
                for r in range(1, rows):
                    new_b[r][c] = b_reg[r - 1][c]
            b_reg = new_b
            for r in range(rows):
                for c in range(cols):
                    if a_reg[r][c] is not None and b_reg[r][c] is not None:
                        assert a_reg[r][c][1] == b_reg[r][c][1], "operands of different k met in a PE"
                        acc[r][c] += a_reg[r][c][0] * b_reg[r][c][0]
                        macs_done[r][c] += 1
            t += 1
        return [row[: len(b[0])] for row in acc[: len(a)]], t

    if dataflow == "ws":
        stat, stream_len, k_used, c_used = b, len(a), len(b), len(b[0])

        def streamed(r: int, s: int) -> int:
            return a[s][r]
    else:
        stat, stream_len, k_used, c_used = a, len(b[0]), len(a), len(a[0])

        def streamed(r: int, s: int) -> int:
            return b[r][s]

    # load phase: the stationary tile enters at the top, one row per cycle, until row r holds stat row r
    held: list[list[tuple[int, int] | None]] = [[None] * cols for _ in range(rows)]
    t = 0
    feed = list(range(rows - 1, -1, -1))  # the last row goes in first
    while any(held[r][0] is None or held[r][0][1] != r for r in range(rows)):
        src = feed[t]
        held = [[(stat[src][c] if (src < k_used and c < c_used) else 0, src) for c in range(cols)], *held[:-1]]
        t += 1
    weights = [[held[r][c][0] for c in range(cols)] for r in range(rows)]
    # stream phase: x enters row r at the left skewed by r; partial sums flow down and leave the bottom row
    x_reg: list[list[tuple[int, int] | None]] = [[None] * cols for _ in range(rows)]
    psum: list[list[tuple[int, int] | None]] = [[None] * cols for _ in range(rows)]
    out = _zeros(stream_len, cols)
    emitted = 0
    t_stream = 0
    while emitted < stream_len * cols:
        for r in range(rows):
            s = t_stream - r
            x = (streamed(r, s) if r < k_used else 0, s) if 0 <= s < stream_len else None
            x_reg[r] = [x, *x_reg[r][:-1]]
        new_psum: list[list[tuple[int, int] | None]] = [[None] * cols for _ in range(rows)]
        for r in range(rows):
            for c in range(cols):
                if x_reg[r][c] is None:
                    continue
                value, s = x_reg[r][c]
                above = 0
                if r > 0:
                    assert psum[r - 1][c] is not None and psum[r - 1][c][1] == s, "partial sum out of step"
                    above = psum[r - 1][c][0]
                new_psum[r][c] = (above + value * weights[r][c], s)
        psum = new_psum
        for c in range(cols):
            if psum[rows - 1][c] is not None:
                value, s = psum[rows - 1][c]
                out[s][c] = value
                emitted += 1
        t_stream += 1
    result = [row[:c_used] for row in out]
    if dataflow == "is":
        result = [list(col) for col in zip(*result, strict=True)] if result else []
    return result, t + t_stream


@functools.cache
def naive_fold_cycles(dataflow: str, rows: int, cols: int, stream: int) -> int:
    """Cycles of one full fold found by running ``naive_systolic_tile`` on ones (OS: stream = K)."""
    if dataflow == "os":
        _, cycles = naive_systolic_tile("os", rows, cols, [[1] * stream] * rows, [[1] * cols] * stream)
    elif dataflow == "ws":
        _, cycles = naive_systolic_tile("ws", rows, cols, [[1] * rows] * stream, [[1] * cols] * rows)
    else:
        _, cycles = naive_systolic_tile("is", rows, cols, [[1] * cols] * rows, [[1] * stream] * rows)
    return cycles


def naive_functional_gemm(a: np.ndarray, b: np.ndarray, rows: int, cols: int, dataflow: str) -> np.ndarray:
    """A·B fold by fold through ``naive_systolic_tile`` (Python ints, so never overflows)."""
    m, k = a.shape
    n = b.shape[1]
    out = [[0] * n for _ in range(m)]
    A = [[int(v) for v in row] for row in a]
    B = [[int(v) for v in row] for row in b]
    if dataflow == "os":
        for i0 in range(0, m, rows):
            for j0 in range(0, n, cols):
                b_t = [r[j0 : j0 + cols] for r in B]
                tile, _ = naive_systolic_tile("os", rows, cols, A[i0 : i0 + rows], b_t)
                for di, row in enumerate(tile):
                    for dj, v in enumerate(row):
                        out[i0 + di][j0 + dj] = v
    elif dataflow == "ws":
        for j0 in range(0, n, cols):
            for k0 in range(0, k, rows):
                a_t = [r[k0 : k0 + rows] for r in A]
                b_t = [r[j0 : j0 + cols] for r in B[k0 : k0 + rows]]
                tile, _ = naive_systolic_tile("ws", rows, cols, a_t, b_t)
                for mi, row in enumerate(tile):
                    for dj, v in enumerate(row):
                        out[mi][j0 + dj] += v
    else:
        for i0 in range(0, m, cols):
            for k0 in range(0, k, rows):
                a_t = [[A[i][kk] for i in range(i0, min(m, i0 + cols))] for kk in range(k0, min(k, k0 + rows))]
                tile, _ = naive_systolic_tile("is", rows, cols, a_t, B[k0 : k0 + rows])
                for di, row in enumerate(tile):
                    for nj, v in enumerate(row):
                        out[i0 + di][nj] += v
    return np.array(out, dtype=object).reshape(m, n)


def _bytes(elements: int, bits: int) -> int:
    return (elements * bits + 7) // 8


def naive_gemm_cycles(
    dataflow: str,
    rows: int,
    cols: int,
    lanes: int,
    m: int,
    n: int,
    k: int,
    count: int,
    act_bits: int,
    weight_bits: int,
    out_bits: int,
    ifmap_bytes: int,
    filter_bytes: int,
    ofmap_bytes: int,
    bytes_per_cycle: float,
    b_resident: bool = False,
) -> tuple[int, int, int, int]:
    """(compute cycles, total cycles, bytes read, bytes written), stepping one cycle at a time. ``b_resident``:
    a B that fits its buffer whole is on chip before the first fold (never loaded)."""
    stream = {"os": k, "ws": m, "is": n}[dataflow]
    if dataflow != "os" and k > rows:
        # lanes that keep the 32-bit partial-sum tile in half the ofmap buffer, at least one
        across = n if dataflow == "ws" else m
        usable = [
            ell for ell in range(1, lanes + 1) if 2 * PSUM_BYTES * stream * min(across, cols * ell) <= ofmap_bytes
        ]
        lanes = max(usable, default=1)
    wide = cols * lanes
    fold_cycles = naive_fold_cycles(dataflow, rows, cols, stream)

    # every fold as explicit index ranges: (m range, n range, k range)
    folds = []
    for rep in range(count):
        if dataflow == "os":
            for i0 in range(0, m, rows):
                for j0 in range(0, n, wide):
                    folds.append((rep, (i0, min(m, i0 + rows)), (j0, min(n, j0 + wide)), (0, k)))
        elif dataflow == "ws":
            for j0 in range(0, n, wide):
                for k0 in range(0, k, rows):
                    folds.append((rep, (0, m), (j0, min(n, j0 + wide)), (k0, min(k, k0 + rows))))
        else:
            for i0 in range(0, m, wide):
                for k0 in range(0, k, rows):
                    folds.append((rep, (i0, min(m, i0 + wide)), (0, n), (k0, min(k, k0 + rows))))

    def size(rng: tuple[int, int]) -> int:
        return rng[1] - rng[0]

    a_whole = _bytes(m * k, act_bits) <= ifmap_bytes
    b_whole = _bytes(k * n, weight_bits) <= filter_bytes
    accumulate = dataflow != "os"
    first = folds[0]
    spill = (
        accumulate
        and k > rows
        and 2 * PSUM_BYTES * size(first[1]) * size(first[2]) > ofmap_bytes  # full output tile of partial sums
    )

    # what each fold loads and writes
    plan = []
    resident_a: set = set()
    resident_b: set = {(rep, kr, nr) for rep, _, nr, kr in folds} if (b_resident and b_whole) else set()
    last_a = last_b = None
    out_tiles: list = []
    for rep, mr, nr, kr in folds:
        a_tile, b_tile, o_tile = (rep, mr, kr), (rep, kr, nr), (rep, mr, nr)
        a_load = a_tile != last_a and a_tile not in resident_a
        b_load = b_tile != last_b and b_tile not in resident_b
        last_a, last_b = a_tile, b_tile
        if a_whole:
            resident_a.add(a_tile)
        if b_whole:
            resident_b.add(b_tile)
        a_bytes = _bytes(size(mr) * size(kr), act_bits) if a_load else 0
        b_bytes = _bytes(size(kr) * size(nr), weight_bits) if b_load else 0
        final = kr[1] == k
        out_el = size(mr) * size(nr)
        new_tile = not out_tiles or out_tiles[-1] != o_tile
        if new_tile:
            out_tiles.append(o_tile)
        plan.append(
            {
                "a": a_bytes,
                "a_lag": 2 if (a_whole or 2 * a_bytes <= ifmap_bytes) else 1,
                "b": b_bytes,
                "b_lag": 2 if (b_whole or 2 * b_bytes <= filter_bytes) else 1,
                "psum_read": PSUM_BYTES * out_el if (spill and kr[0] > 0) else 0,
                "write": _bytes(out_el, out_bits) if final else (PSUM_BYTES * out_el if spill else 0),
                "tile": len(out_tiles) - 1,
                "new_tile": new_tile,
            }
        )

    # the DRAM request sequence; each request waits for the end of fold `after` (None: from cycle 0)
    requests: list[dict] = []

    def request(nbytes: int, after: int | None, role: str, fold: int) -> None:
        if nbytes > 0:
            requests.append({"bytes": nbytes, "after": after, "role": role, "fold": fold, "done": None})

    for f, p in enumerate(plan):
        if spill:
            if f >= 1:
                request(plan[f - 1]["write"], f - 1, "write", f - 1)
            prev = f - 1 if f >= 1 else None
            request(p["a"], prev, "a", f)
            request(p["b"], prev, "b", f)
            request(p["psum_read"], prev, "psum", f)
        else:
            if f >= 2:
                request(plan[f - 2]["write"], f - 2, "write", f - 2)
            for role in ("a", "b"):
                after = f - p[f"{role}_lag"]
                request(p[role], after if after >= 0 else None, role, f)
    last = len(plan) - 1
    if spill:
        request(plan[last]["write"], last, "write", last)
    else:
        if last >= 1:
            request(plan[last - 1]["write"], last - 1, "write", last - 1)
        request(plan[last]["write"], last, "write", last)

    loads_of = {f: [r for r in requests if r["fold"] == f and r["role"] != "write"] for f in range(len(plan))}
    write_of_tile: dict[int, dict] = {}
    for r in requests:
        if r["role"] == "write" and plan[r["fold"]]["write"] > 0:
            write_of_tile[plan[r["fold"]]["tile"]] = r  # the last write of a tile is its output

    compute_end: dict[int, int] = {}
    next_fold = 0
    next_req = 0
    active: dict | None = None
    active_cycles = 0
    t = 0

    def ended(fold: int | None, now: int) -> bool:
        return fold is None or (fold in compute_end and compute_end[fold] <= now)

    while next_fold < len(plan) or next_req < len(requests) or active is not None:
        changed = True
        while changed:
            changed = False
            if active is None and next_req < len(requests) and ended(requests[next_req]["after"], t):
                active = requests[next_req]
                active_cycles = 0
                changed = True
            if next_fold < len(plan) and ended(next_fold - 1 if next_fold else None, t):
                ok = all(r["done"] is not None and r["done"] <= t for r in loads_of[next_fold])
                p = plan[next_fold]
                if p["new_tile"] and not spill and p["tile"] >= 2:
                    w = write_of_tile.get(p["tile"] - 2)
                    ok = ok and (w is None or (w["done"] is not None and w["done"] <= t))
                if ok:
                    compute_end[next_fold] = t + fold_cycles
                    next_fold += 1
                    changed = True
        if active is not None:
            active_cycles += 1
            if active_cycles * bytes_per_cycle >= active["bytes"] - 1e-9 * bytes_per_cycle:
                active["done"] = t + 1
                active = None
                next_req += 1
        t += 1
    total = max([compute_end[len(plan) - 1]] + [r["done"] for r in requests])
    compute = fold_cycles * len(plan)
    read = sum(p["a"] + p["b"] + p["psum_read"] for p in plan)
    written = sum(p["write"] for p in plan)
    return compute, total, read, written


def naive_vector_cycles(elements: int, ops_per_element: int, lanes: int) -> int:
    """Cycles for ``lanes`` lanes to do elements × ops_per_element lane operations, one cycle at a time."""
    remaining = elements * ops_per_element
    cycles = 0
    while remaining > 0:
        remaining -= lanes
        cycles += 1
    return cycles


def naive_fused_pipeline_end(gemm_cycles: int, chunks: int, service: list[int], depth: list[int]) -> int:
    """Step cycle by cycle: chunk j of the GEMM's output appears at ⌈gemm_cycles·(j+1)/chunks⌉; each stage works
    on one chunk at a time for ``service[s]`` cycles (in arrival order) and its result reaches the next stage
    ``depth[s]`` cycles later. Returns the cycle at which the last chunk leaves the last stage."""
    stages = len(service)
    ready = [-(-gemm_cycles * (j + 1) // chunks) for j in range(chunks)]
    inbox: list[list[int]] = [[] for _ in range(stages)]  # arrival cycle of each chunk waiting at a stage
    busy_until = [0] * stages
    working: list[int | None] = [None] * stages  # cycle the current chunk's service ends
    in_flight: list[list[int]] = [[] for _ in range(stages)]  # delivery cycles to the next stage
    done: list[int] = []
    t = 0
    fed = 0
    while len(done) < chunks:
        while fed < chunks and ready[fed] <= t:
            inbox[0].append(t)
            fed += 1
        for s in range(stages):
            if working[s] is not None and working[s] == t:
                working[s] = None
                in_flight[s].append(t + depth[s])
            for arrival in [a for a in in_flight[s] if a == t]:
                in_flight[s].remove(arrival)
                if s + 1 < stages:
                    inbox[s + 1].append(t)
                else:
                    done.append(t)
            while working[s] is None and inbox[s] and busy_until[s] <= t:
                inbox[s].pop(0)
                if service[s] > 0:
                    working[s] = busy_until[s] = t + service[s]
                elif depth[s] > 0:  # no service time: the chunk only waits out the pipeline depth
                    in_flight[s].append(t + depth[s])
                elif s + 1 < stages:
                    inbox[s + 1].append(t)
                else:
                    done.append(t)
        t += 1
    return max(done)
