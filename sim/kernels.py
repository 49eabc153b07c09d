"""All jitted code of ``sim``: private ``@njit(cache=True)`` kernels. Public wrappers live in sim/simulate.py
and sim/functional.py; every kernel has a slow, obvious twin in tests/naive.py.

Timing model of one GEMM (M×K activation A times K×N operand B) on an R×C array of p-wide PEs
(see sim/pe.py for how p widens the columns to C·p). Dataflow codes: 0 = output stationary (OS),
1 = weight stationary (WS), 2 = input stationary (IS).

Folds. The array works through folds one at a time, an outer and an inner loop of tiles:

- OS: outer over M in tiles of R rows, inner over N in tiles of C·p columns; each fold streams K.
- WS: outer over N in tiles of C·p, inner over K in tiles of R; each fold streams M.
- IS: outer over M in tiles of C·p, inner over K in tiles of R; each fold streams N.

A fold takes SCALE-Sim v3's cycles: OS K + R + C − 2, WS 2R + C + M − 2, IS 2R + C + N − 2 (array fill,
streaming and drain, always over the full array as SCALE-Sim does). We report these as they are, NOT
SCALE-Sim's "minus 1". tests/naive.py moves operands register by register through the array and finds the
same counts.

Memory, by exact events (tests/naive.py steps the same rules cycle by cycle and agrees):

- One DRAM channel moves ``bytes_per_cycle`` bytes per cycle; a transfer of b bytes takes ⌈b/bytes_per_cycle⌉
  cycles. Requests are served in a fixed order: for fold f, first the write-back of fold f−2's outputs, then
  fold f's A tile, then its B tile (after the last fold, the remaining write-backs).
- Words are packed by bit width: a tile of e elements at b bits moves ⌈e·b/8⌉ bytes.
- Each operand has its own double-buffered SRAM (ifmap for A, filter for B, ofmap for outputs). A tile that
  fits in half its buffer is prefetched while fold f−1 computes (its load may start when fold f−2 ends and
  frees that half). A bigger tile is loaded only after fold f−1 ends (no overlap).
- Reuse: a tile equal to the previous fold's tile is not reloaded; an operand whose whole matrix fits in its
  buffer is loaded once, tile by tile when first needed, and then stays.
- Outputs: OS folds finish their outputs; WS/IS folds accumulate 32-bit partial sums over the inner K loop
  in the ofmap buffer and write the outputs (at ``out_bits``) after the last K fold. A fold may start only
  when its operands are on chip, the previous fold has ended and (for a new output tile) the write-back of
  the output tile two tiles back has ended (the ofmap half it reuses is free).
- WS/IS use only as many of a p-wide PE's lanes as keep the partial-sum tile (32 bits per element) in half
  the ofmap buffer (``_usable_lanes``; without this cap fewer bits could cost more cycles). When even one
  lane's tile does not fit, partial sums spill: every non-final K fold writes them (4 bytes each) and the next
  reads them back, and everything runs serially (no prefetch), write-back of fold f−1 then loads of fold f.
- With ideal memory (infinite bandwidth, operands on chip) only the fold cycles count, all lanes used.

``compute_cycles`` is the sum of fold cycles; ``cycles`` runs from the first load to the last write-back.

Fold pipelining (``pipelined``; the target's ``fold_pipelining``): RTL arrays start the next fold's operands
right behind the current fold's (double-buffered stationary registers and output shadow registers), so the
skew fill and the drain are paid once per GEMM call, not once per fold. A fold then takes its steady-state
cycles, OS max(K, R), WS max(M, R), IS max(N, R) (the R-cycle load or drain of the next/previous tile hides
behind a stream of at least R), and each call adds once: OS R + C − 2, WS/IS 2R + C − 2 (the first
stationary load, fill and drain). The SCALE-Sim mode (``pipelined`` False) stays for the parity tests.

Fused nonlinear operators (sim/nonlinear.py): ``_output_chunks`` says in how many chunks a GEMM hands its
outputs on (whole output tiles, or whole-row blocks for row-wise operators) and ``_fused_pipeline_end`` runs
those chunks through the fused operators' pipeline stages; chunk j becomes ready at ⌈T·(j+1)/n⌉ of the GEMM's
T cycles (outputs drain evenly; an assumption), stage s starts it when both it and the stage are free, keeps
the stage busy ``service[s]`` cycles and hands it on ``depth[s]`` cycles later.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__: list[str] = []

OS, WS, IS = 0, 1, 2
PSUM_BYTES = 4


@njit(cache=True)
def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@njit(cache=True)
def _packed_bytes(elements: int, bits: int) -> int:
    """Bytes of ``elements`` words of ``bits`` bits packed densely."""
    return (elements * bits + 7) // 8


@njit(cache=True)
def _transfer_cycles(nbytes: int, bytes_per_cycle: float) -> int:
    """Cycles the DRAM channel needs for ``nbytes`` (the tolerance absorbs float rounding of exact ratios)."""
    if nbytes <= 0:
        return 0
    return int(np.ceil(nbytes / bytes_per_cycle - 1e-9))


@njit(cache=True)
def _fold_cycles(dataflow: int, rows: int, cols: int, m: int, n: int, k: int) -> int:
    """Cycles of one fold (fill + stream + drain), SCALE-Sim v3 closed form without its minus 1."""
    if dataflow == OS:
        return k + rows + cols - 2
    if dataflow == WS:
        return 2 * rows + cols + m - 2
    return 2 * rows + cols + n - 2


@njit(cache=True)
def _fold_steady(dataflow: int, rows: int, m: int, n: int, k: int) -> int:
    """Cycles of one fold in steady state with fold pipelining (fill and drain overlapped)."""
    if dataflow == OS:
        return max(k, rows)
    if dataflow == WS:
        return max(m, rows)
    return max(n, rows)


@njit(cache=True)
def _fold_once(dataflow: int, rows: int, cols: int) -> int:
    """Cycles a pipelined GEMM call pays once: first stationary load (WS/IS), skew fill and drain."""
    if dataflow == OS:
        return rows + cols - 2
    return 2 * rows + cols - 2


@njit(cache=True)
def _fold_grid(dataflow: int, rows: int, cols: int, lanes: int, m: int, n: int, k: int) -> tuple:
    """(outer total, outer tile, inner total, inner tile) of the fold loops."""
    wide = cols * lanes
    if dataflow == OS:
        return m, rows, n, wide
    if dataflow == WS:
        return n, wide, k, rows
    return m, wide, k, rows


@njit(cache=True)
def _compute_cycles(
    dataflow: int, rows: int, cols: int, lanes: int, m: int, n: int, k: int, count: int, pipelined: bool = False
) -> int:
    """Cycles with ideal memory: folds × fold cycles × count (pipelined: steady folds plus the one-off fill)."""
    outer, outer_tile, inner, inner_tile = _fold_grid(dataflow, rows, cols, lanes, m, n, k)
    folds = _ceil_div(outer, outer_tile) * _ceil_div(inner, inner_tile)
    if pipelined:
        return folds * _fold_steady(dataflow, rows, m, n, k) * count + _fold_once(dataflow, rows, cols)
    return folds * _fold_cycles(dataflow, rows, cols, m, n, k) * count


@njit(cache=True)
def _tile_elements(dataflow: int, m: int, n: int, k: int, outer_size: int, inner_size: int) -> tuple:
    """Elements of the (A tile, B tile, output tile) of a fold with these outer/inner tile sizes."""
    if dataflow == OS:
        return outer_size * k, k * inner_size, outer_size * inner_size
    if dataflow == WS:
        return m * inner_size, inner_size * outer_size, m * outer_size
    return inner_size * outer_size, inner_size * n, outer_size * n


@njit(cache=True)
def _gemm_cycles(
    dataflow: int,
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
    pipelined: bool = False,
    b_resident: bool = False,
) -> tuple:
    """(compute cycles, total cycles, bytes read, bytes written) of ``count`` back-to-back M×K·K×N GEMMs.

    ``b_resident``: B is already on chip when its whole matrix fits its buffer (the second row group of a
    token-split GEMM, sim/patchwise.py, after the first loaded it), so it is never loaded."""
    lanes = _usable_lanes(dataflow, rows, cols, lanes, m, n, k, ofmap_bytes)
    outer, outer_tile, inner, inner_tile = _fold_grid(dataflow, rows, cols, lanes, m, n, k)
    n_outer = _ceil_div(outer, outer_tile)
    n_inner = _ceil_div(inner, inner_tile)
    once = 0
    if pipelined:
        fold = _fold_steady(dataflow, rows, m, n, k)
        once = _fold_once(dataflow, rows, cols)
    else:
        fold = _fold_cycles(dataflow, rows, cols, m, n, k)
    compute = n_outer * n_inner * fold * count + once

    # operand dependence on the loops: 0 = outer only, 1 = inner only, 2 = both
    if dataflow == OS:
        a_dep, b_dep = 0, 1
    elif dataflow == WS:
        a_dep, b_dep = 1, 2
    else:
        a_dep, b_dep = 2, 1
    a_whole = _packed_bytes(m * k, act_bits) <= ifmap_bytes
    b_whole = _packed_bytes(k * n, weight_bits) <= filter_bytes
    accumulate = dataflow != OS
    _, _, full_out = _tile_elements(dataflow, m, n, k, min(outer, outer_tile), min(inner, inner_tile))
    spill = accumulate and n_inner > 1 and 2 * PSUM_BYTES * full_out > ofmap_bytes

    chan = 0  # cycle the DRAM channel is free
    end1 = 0  # compute end of fold f-1
    end2 = 0  # compute end of fold f-2
    write1 = 0  # bytes to write after fold f-1
    write2 = 0
    tile1 = -1  # output tile of fold f-1
    tile2 = -1
    tile_write_end = np.zeros(2, dtype=np.int64)
    read_total = 0
    write_total = 0
    out_tile = -1
    f = 0
    for _rep in range(count):
        for o in range(n_outer):
            o_size = min(outer_tile, outer - o * outer_tile)
            for i in range(n_inner):
                new_out_tile = i == 0 or not accumulate
                if new_out_tile:
                    out_tile += 1
                i_size = min(inner_tile, inner - i * inner_tile)
                a_el, b_el, out_el = _tile_elements(dataflow, m, n, k, o_size, i_size)
                a_load = _needs_load(a_dep, a_whole, o, i, n_inner)
                b_load = _needs_load(b_dep, b_whole, o, i, n_inner) and not (b_resident and b_whole)
                a_bytes = _packed_bytes(a_el, act_bits) if a_load else 0
                b_bytes = _packed_bytes(b_el, weight_bits) if b_load else 0
                final = (not accumulate) or i == n_inner - 1
                out_bytes = _packed_bytes(out_el, out_bits) if final else (PSUM_BYTES * out_el if spill else 0)
                psum_read = PSUM_BYTES * out_el if (spill and i > 0) else 0
                read_total += a_bytes + b_bytes + psum_read
                write_total += out_bytes
                if spill:
                    if f >= 1 and write1 > 0:
                        chan = max(chan, end1) + _transfer_cycles(write1, bytes_per_cycle)
                    loads = a_bytes + b_bytes + psum_read
                    loaded = 0  # a fold with nothing to load (B resident) waits for no transfer
                    if loads > 0:
                        chan = max(chan, end1) + _transfer_cycles(a_bytes, bytes_per_cycle)
                        chan += _transfer_cycles(b_bytes, bytes_per_cycle)
                        chan += _transfer_cycles(psum_read, bytes_per_cycle)
                        loaded = chan
                    start = max(end1, loaded)
                else:
                    if f >= 2 and write2 > 0:
                        chan = max(chan, end2) + _transfer_cycles(write2, bytes_per_cycle)
                        tile_write_end[tile2 % 2] = chan
                    ready = end1
                    a_done = 0
                    if a_bytes > 0:
                        a_lag2 = a_whole or 2 * a_bytes <= ifmap_bytes
                        chan = max(chan, end2 if a_lag2 else end1) + _transfer_cycles(a_bytes, bytes_per_cycle)
                        a_done = chan
                    b_done = 0
                    if b_bytes > 0:
                        b_lag2 = b_whole or 2 * b_bytes <= filter_bytes
                        chan = max(chan, end2 if b_lag2 else end1) + _transfer_cycles(b_bytes, bytes_per_cycle)
                        b_done = chan
                    start = max(ready, max(a_done, b_done))
                    if new_out_tile:
                        start = max(start, tile_write_end[out_tile % 2])
                end = start + fold
                end2, end1 = end1, end
                write2, write1 = write1, out_bytes
                tile2, tile1 = tile1, out_tile
                f += 1
    end1 += once  # the pipelined call's one-off fill and drain
    if spill:
        if write1 > 0:
            chan = max(chan, end1) + _transfer_cycles(write1, bytes_per_cycle)
    else:
        if f >= 2 and write2 > 0:
            chan = max(chan, end2) + _transfer_cycles(write2, bytes_per_cycle)
        if write1 > 0:
            chan = max(chan, end1) + _transfer_cycles(write1, bytes_per_cycle)
    return compute, max(chan, end1), read_total, write_total


@njit(cache=True)
def _usable_lanes(dataflow: int, rows: int, cols: int, lanes: int, m: int, n: int, k: int, ofmap_bytes: int) -> int:
    """Lanes of a p-wide PE that WS/IS can use: as many as keep the partial-sum tile in half the ofmap buffer.

    Each lane adds a column of 32-bit partial sums to hold across the K folds; past what the buffer holds, the
    extra lanes idle (at least one stays). OS keeps its sums in the PEs, and one K fold needs no partial sums.
    """
    if dataflow == OS or k <= rows:
        return lanes
    stream = m if dataflow == WS else n
    outer = n if dataflow == WS else m
    usable = lanes
    while usable > 1 and 2 * PSUM_BYTES * stream * min(outer, cols * usable) > ofmap_bytes:
        usable -= 1
    return usable


@njit(cache=True)
def _needs_load(dep: int, whole_fits: bool, o: int, i: int, n_inner: int) -> bool:
    """Whether fold (o, i) must load an operand tile that depends on the loops as ``dep`` says."""
    if dep == 0:
        return i == 0
    if dep == 1:
        if n_inner == 1 or whole_fits:
            return o == 0
        return True
    return True


@njit(cache=True)
def _gemm_cycles_many(
    dataflow: int,
    rows: int,
    cols: int,
    shapes: np.ndarray,
    ifmap_bytes: int,
    filter_bytes: int,
    ofmap_bytes: int,
    bytes_per_cycle: float,
    ideal: bool,
    pipelined: bool = False,
) -> np.ndarray:
    """``_gemm_cycles`` over rows of ``shapes`` (lanes, m, n, k, count, act_bits, weight_bits, out_bits[, b_resident]).

    Returns int64 rows (compute cycles, total cycles, bytes read, bytes written); with ``ideal`` memory the
    total equals compute and no bytes are counted.
    """
    out = np.zeros((shapes.shape[0], 4), dtype=np.int64)
    for row in range(shapes.shape[0]):
        lanes = shapes[row, 0]
        m = shapes[row, 1]
        n = shapes[row, 2]
        k = shapes[row, 3]
        count = shapes[row, 4]
        act_bits = shapes[row, 5]
        weight_bits = shapes[row, 6]
        out_bits = shapes[row, 7]
        b_resident = shapes.shape[1] > 8 and shapes[row, 8] != 0
        if ideal:
            compute = _compute_cycles(dataflow, rows, cols, lanes, m, n, k, count, pipelined)
            out[row, 0] = compute
            out[row, 1] = compute
        else:
            res = _gemm_cycles(
                dataflow,
                rows,
                cols,
                lanes,
                m,
                n,
                k,
                count,
                act_bits,
                weight_bits,
                out_bits,
                ifmap_bytes,
                filter_bytes,
                ofmap_bytes,
                bytes_per_cycle,
                pipelined,
                b_resident,
            )
            out[row, 0] = res[0]
            out[row, 1] = res[1]
            out[row, 2] = res[2]
            out[row, 3] = res[3]
    return out


@njit(cache=True)
def _gemm_cycles_rows(configs: np.ndarray, bytes_per_cycle: np.ndarray) -> np.ndarray:
    """``_gemm_cycles`` over rows that each carry their own array and memory (sweeps batch many designs).

    ``configs`` rows are int64 (dataflow, rows, cols, lanes, m, n, k, count, act_bits, weight_bits, out_bits,
    ifmap_bytes, filter_bytes, ofmap_bytes); ``bytes_per_cycle`` is float64, one per row. Returns int64 rows
    (compute cycles, total cycles, bytes read, bytes written).
    """
    out = np.zeros((configs.shape[0], 4), dtype=np.int64)
    for row in range(configs.shape[0]):
        c = configs[row]
        res = _gemm_cycles(
            c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11], c[12], c[13], bytes_per_cycle[row]
        )
        out[row, 0] = res[0]
        out[row, 1] = res[1]
        out[row, 2] = res[2]
        out[row, 3] = res[3]
    return out


@njit(cache=True)
def _vector_cycles(elements: np.ndarray, ops_per_element: np.ndarray, lanes: int) -> np.ndarray:
    """Cycles of each vector operator: ⌈elements · lane-ops per element / lanes⌉."""
    out = np.zeros(elements.shape[0], dtype=np.int64)
    for i in range(elements.shape[0]):
        out[i] = _ceil_div(elements[i] * ops_per_element[i], lanes)
    return out


@njit(cache=True)
def _output_chunks(
    dataflow: int,
    rows: int,
    cols: int,
    lanes: int,
    m: int,
    n: int,
    k: int,
    count: int,
    ofmap_bytes: int,
    row_wise: bool,
) -> int:
    """Chunks in which a GEMM hands its outputs to fused operators: finished output tiles, or (``row_wise``)
    blocks of whole rows of the M×N output (OS/IS: one per outer tile; WS finishes rows only with its last fold)."""
    usable = _usable_lanes(dataflow, rows, cols, lanes, m, n, k, ofmap_bytes) if ofmap_bytes > 0 else lanes
    outer, outer_tile, inner, inner_tile = _fold_grid(dataflow, rows, cols, usable, m, n, k)
    n_outer = _ceil_div(outer, outer_tile)
    n_inner = _ceil_div(inner, inner_tile)
    if row_wise:
        return (1 if dataflow == WS else n_outer) * count
    if dataflow == OS:
        return n_outer * n_inner * count
    return n_outer * count


@njit(cache=True)
def _fused_pipeline_end(gemm_cycles: int, chunks: int, service: np.ndarray, depth: np.ndarray) -> int:
    """Cycle (from the GEMM's start) at which the last chunk leaves the last fused stage.

    Chunk j is ready at a_j = ⌈gemm_cycles·(j+1)/chunks⌉; stage s takes it when it is ready and the stage is free,
    is busy ``service[s]`` cycles and passes it on ``depth[s]`` cycles later (tests/naive.py steps this chunk by
    chunk). Closed form, O(stages) so a GEMM of 10^12 output tiles costs no more than one of ten: in max-plus
    terms the last departure is the longest path through the chunks × stages grid,
    max_j (a_j + (chunks − 1 − j)·max_s service) + Σ_s (service[s] + depth[s]); a_j grows by ⌊T/c⌋ or ⌈T/c⌉ a
    step and max_s service is an integer, so a_j − j·max service is monotone and the max is at j = 0 or
    j = chunks − 1 (a_{chunks−1} = gemm_cycles).
    """
    if chunks <= 0:
        return gemm_cycles
    slowest = 0
    through = 0
    for s in range(service.shape[0]):
        slowest = max(slowest, service[s])
        through += service[s] + depth[s]
    first = _ceil_div(gemm_cycles, chunks)
    return max(gemm_cycles, first + (chunks - 1) * slowest) + through


@njit(cache=True)
def _fused_tails(
    dataflow: int,
    rows: int,
    cols: int,
    ofmap_bytes: int,
    gemms: np.ndarray,
    totals: np.ndarray,
    stage_ptr: np.ndarray,
    stage_elements: np.ndarray,
    stage_factor: np.ndarray,
    stage_depth: np.ndarray,
) -> np.ndarray:
    """Cycles each GEMM's fused operators add after it ends (≥ 0).

    ``gemms`` rows are (lanes, m, n, k, count, row_wise); ``totals`` the GEMMs' cycles. GEMM g's stages are
    ``stage_ptr[g]:stage_ptr[g + 1]``; a stage over E elements in c chunks is busy ⌈⌈E/c⌉ · factor⌉ cycles per
    chunk (factor = cycles per element) and hands a chunk on ``depth`` cycles after finishing it.
    """
    out = np.zeros(gemms.shape[0], dtype=np.int64)
    for g in range(gemms.shape[0]):
        first, last = stage_ptr[g], stage_ptr[g + 1]
        if last == first:
            continue
        chunks = _output_chunks(
            dataflow, rows, cols, gemms[g, 0], gemms[g, 1], gemms[g, 2], gemms[g, 3], gemms[g, 4], ofmap_bytes,
            gemms[g, 5] != 0,
        )  # fmt: skip
        out[g] = _chain_tail(totals[g], chunks, first, last, stage_elements, stage_factor, stage_depth)
    return out


@njit(cache=True)
def _chain_tail(
    total: int,
    chunks: int,
    first: int,
    last: int,
    stage_elements: np.ndarray,
    stage_factor: np.ndarray,
    stage_depth: np.ndarray,
) -> int:
    """Cycles fused stages ``first:last`` add after a GEMM of ``total`` cycles that hands out ``chunks`` chunks."""
    service = np.zeros(last - first, dtype=np.int64)
    depth = np.zeros(last - first, dtype=np.int64)
    for s in range(first, last):
        per_chunk = _ceil_div(stage_elements[s], chunks)
        service[s - first] = int(np.ceil(per_chunk * stage_factor[s] - 1e-9))
        depth[s - first] = stage_depth[s]
    return max(0, _fused_pipeline_end(total, chunks, service, depth) - total)


@njit(cache=True)
def _gemm_fused_rows(
    configs: np.ndarray,
    bytes_per_cycle: np.ndarray,
    pipelined: bool,
    chain_ids: np.ndarray,
    chain_ptr: np.ndarray,
    chain_row_wise: np.ndarray,
    chain_serial: np.ndarray,
    stage_elements: np.ndarray,
    stage_factor: np.ndarray,
    stage_depth: np.ndarray,
) -> np.ndarray:
    """``_gemm_cycles`` and ``_fused_tails`` over rows that each carry their own array and memory.

    ``configs`` rows as ``_gemm_cycles_rows``'; row r's GEMM is followed by fused chain ``chain_ids[r]`` (stages
    ``chain_ptr[c]:chain_ptr[c + 1]`` as ``_fused_tails`` takes them, plus ``chain_serial[c]`` unoverlapped
    cycles). Returns int64 rows (compute cycles, total cycles, bytes read, bytes written, fused cycles): per row
    what ``_gemm_cycles_many`` and ``_fused_tails`` give that GEMM on that design.
    """
    out = np.zeros((configs.shape[0], 5), dtype=np.int64)
    for row in range(configs.shape[0]):
        c = configs[row]
        res = _gemm_cycles(
            c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11], c[12], c[13],
            bytes_per_cycle[row], pipelined,
        )  # fmt: skip
        out[row, 0] = res[0]
        out[row, 1] = res[1]
        out[row, 2] = res[2]
        out[row, 3] = res[3]
        chain = chain_ids[row]
        first, last = chain_ptr[chain], chain_ptr[chain + 1]
        tail = 0
        if last > first:
            chunks = _output_chunks(c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[13], chain_row_wise[chain] != 0)
            tail = _chain_tail(res[1], chunks, first, last, stage_elements, stage_factor, stage_depth)
        out[row, 4] = tail + chain_serial[chain]
    return out


@njit(cache=True)
def _systolic_tile(dataflow: int, rows: int, cols: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Push one fold's int64 operands through an R×C array register by register; return its outputs.

    OS: ``a`` is r×K (r ≤ R rows of A), ``b`` is K×c (c ≤ C); returns r×c.
    WS: ``b`` is the stationary K_t×c weight tile (K_t ≤ R), ``a`` is M×K_t streaming; returns M×c partial sums.
    IS: ``a`` is the stationary K_t×c tile of Aᵀ (c ≤ C rows of A), ``b`` is K_t×N streaming; returns c×N.
    Operands are zero-padded to the full array, so timing follows the closed forms.
    """
    if dataflow == OS:
        r_used, k = a.shape
        c_used = b.shape[1]
        a_reg = np.zeros((rows, cols), dtype=np.int64)
        b_reg = np.zeros((rows, cols), dtype=np.int64)
        acc = np.zeros((rows, cols), dtype=np.int64)
        for t in range(k + rows + cols - 2):
            # shift right / down (from the far end so each value moves one PE per cycle)
            for r in range(rows):
                for c in range(cols - 1, 0, -1):
                    a_reg[r, c] = a_reg[r, c - 1]
                kk = t - r
                a_reg[r, 0] = a[r, kk] if (r < r_used and 0 <= kk < k) else 0
            for c in range(cols):
                for r in range(rows - 1, 0, -1):
                    b_reg[r, c] = b_reg[r - 1, c]
                kk = t - c
                b_reg[0, c] = b[kk, c] if (c < c_used and 0 <= kk < k) else 0
            for r in range(rows):
                for c in range(cols):
                    acc[r, c] += a_reg[r, c] * b_reg[r, c]
        return acc[:r_used, :c_used].copy()
    if dataflow == WS:
        stream, k_used = a.shape
        stat = b  # k_used × c_used
        c_used = b.shape[1]
    else:
        stream = b.shape[1]
        k_used = a.shape[0]
        stat = a  # k_used × c_used (c indexes rows of A)
        c_used = a.shape[1]
    # weight (or input) load: rows shift down for R cycles, row r ends holding stat[r]
    held = np.zeros((rows, cols), dtype=np.int64)
    for t in range(rows):
        for r in range(rows - 1, 0, -1):
            for c in range(cols):
                held[r, c] = held[r - 1, c]
        src = rows - 1 - t
        for c in range(cols):
            held[0, c] = stat[src, c] if (src < k_used and c < c_used) else 0
    x_reg = np.zeros((rows, cols), dtype=np.int64)
    psum = np.zeros((rows, cols), dtype=np.int64)
    out = np.zeros((stream, c_used), dtype=np.int64)
    for t in range(stream + rows + cols - 2):
        # the streaming operand moves right one column per cycle, skewed by row
        for r in range(rows):
            for c in range(cols - 1, 0, -1):
                x_reg[r, c] = x_reg[r, c - 1]
            s = t - r
            if r < k_used and 0 <= s < stream:
                x_reg[r, 0] = a[s, r] if dataflow == WS else b[r, s]
            else:
                x_reg[r, 0] = 0
        # partial sums move down one row per cycle, each PE adds its product
        for r in range(rows - 1, -1, -1):
            for c in range(cols):
                above = psum[r - 1, c] if r > 0 else 0
                psum[r, c] = above + x_reg[r, c] * held[r, c]
        # the bottom row emits the sum for stream index s = t - (rows - 1) - c
        for c in range(c_used):
            s = t - (rows - 1) - c
            if 0 <= s < stream:
                out[s, c] = psum[rows - 1, c]
    if dataflow == WS:
        return out
    return out.T.copy()


@njit(cache=True)
def _functional_gemm(a: np.ndarray, b: np.ndarray, rows: int, cols: int, dataflow: int) -> np.ndarray:
    """A (M×K) · B (K×N) in int64, fold by fold through the array in the given dataflow."""
    m, k = a.shape
    n = b.shape[1]
    out = np.zeros((m, n), dtype=np.int64)
    if dataflow == OS:
        for i0 in range(0, m, rows):
            i1 = min(m, i0 + rows)
            for j0 in range(0, n, cols):
                j1 = min(n, j0 + cols)
                out[i0:i1, j0:j1] = _systolic_tile(OS, rows, cols, a[i0:i1, :].copy(), b[:, j0:j1].copy())
    elif dataflow == WS:
        for j0 in range(0, n, cols):
            j1 = min(n, j0 + cols)
            for k0 in range(0, k, rows):
                k1 = min(k, k0 + rows)
                out[:, j0:j1] += _systolic_tile(WS, rows, cols, a[:, k0:k1].copy(), b[k0:k1, j0:j1].copy())
    else:
        for i0 in range(0, m, cols):
            i1 = min(m, i0 + cols)
            for k0 in range(0, k, rows):
                k1 = min(k, k0 + rows)
                tile = a[i0:i1, k0:k1].T.copy()
                out[i0:i1, :] += _systolic_tile(IS, rows, cols, tile, b[k0:k1, :].copy())
    return out
