"""numba-cuda kernels of the GPU backend (imported only by :mod:`.gpu`, never at package import).

The same kernels run on a CUDA device (CuPy arrays) and, with ``NUMBA_ENABLE_CUDASIM=1``, on
the CPU under numba-cuda's simulator (NumPy arrays). Every kernel is compiled with
``fastmath=False``: no fused multiply-add, no approximate division, so float64 results are
those of the CPU kernels bit for bit. Kernels whose shared-memory tiles have a compile-time
size are built by ``make_*`` factories for the tile settings in force (see :mod:`.gpu`).

The batching rules themselves are not written here: the functions of :mod:`.kernels` (the
CPU kernels' plain Python source) that use only what device code supports (scalars, no
allocation, no exceptions) are compiled as device functions, so both backends run one source:
``_cuts`` (the per-row rule), ``walk_batches``, ``grid_cell``, ``floor_walk`` and
``floor_risky``. The kernels here launch them, or split their work across threads.

Building blocks:

* :func:`walk_rows` (device): the greedy/fill rule over rows ``lo..hi`` from a batch state,
  writing start flags; optionally stops where its path meets the flags already there.
* :data:`walk_batches` (device): the CPU walk itself, run by one thread
  (``spec`` early stop, ``multiple`` cut-backs, int64 overflow with the exact CPU tuple).
* :func:`make_walk_tiles` / :data:`combine_segments` / :data:`walk_top`: the tiled speculative
  pass and the hierarchy of segment summaries that carries the true state across tiles.
* :func:`make_scan`: a tiled inclusive scan (saturating int64 sum, or max) of any length.
"""
from __future__ import annotations

from numba import boolean, cuda, int64

from . import kernels

I64_MAX = kernels.I64_MAX

_jit = {"fastmath": False}


def _device_functions(*names) -> dict:
    """The named functions of :mod:`.kernels` as device functions, each calling the others'
    device versions (names not listed resolve to the module's constants)."""
    namespace = dict(vars(kernels))
    for name in names:
        namespace[name] = cuda.jit(device=True, **_jit)(kernels.with_globals(getattr(kernels, name), namespace))
    return {name: namespace[name] for name in names}


_shared = _device_functions("_cuts", "walk_batches", "grid_cell", "_floor_rows", "floor_walk", "floor_risky")
cut_rule = _shared["_cuts"]
walk_batches = _shared["walk_batches"]
grid_cell = _shared["grid_cell"]
floor_walk = _shared["floor_walk"]
floor_risky = _shared["floor_risky"]


@cuda.jit(device=True, **_jit)
def flat_index():
    """This thread's index in the grid, in 64 bits (inputs may exceed 2**31 rows)."""
    return int64(cuda.blockIdx.x) * int64(cuda.blockDim.x) + int64(cuda.threadIdx.x)


# --------------------------------------------------------------------------- the per-row rule
@cuda.jit(device=True, **_jit)
def walk_rows(w, g, f, lo, hi, rows, tot, mx, start, check_met, greedy, padded, is_float,
              lim_gt, lim_ge, max_rows):
    """Walk rows ``lo..hi`` from state ``(rows, tot, mx, start)``, writing start flags to ``f``.

    With ``check_met`` the walk stops at the first start already flagged in ``f`` (the path
    it follows from there is the one that wrote ``f``). Returns
    ``(met, overflow, rows, tot, mx, start)`` with ``met``/``overflow`` -1 when none.
    """
    zero = tot - tot
    for i in range(lo, hi):
        wi = w[i]
        cut = rows == 0 or g[i]
        if not cut:
            cut = cut_rule(tot, rows, mx, wi, greedy, padded, is_float, lim_gt, lim_ge, max_rows)
        if cut:
            if check_met and f[i]:
                return i, -1, rows, tot, mx, start
            f[i] = True
            start = i
            rows = 0
            tot = zero
            mx = zero
        else:
            f[i] = False
        if not is_float and wi > I64_MAX - tot:
            return -1, i, rows, tot, mx, start
        tot += wi
        rows += 1
        if wi > mx:
            mx = wi
    return -1, -1, rows, tot, mx, start


@cuda.jit(device=True, **_jit)
def carry_across(w, g, f, lo, hi, rows, tot, mx, start, own_rows, own_tot, own_mx, own_start,
                 greedy, padded, is_float, lim_gt, lim_ge, max_rows, ovf):
    """The true state ``(rows, tot, mx, start)`` after rows ``lo..hi``, carried in from before.

    ``f`` holds there the flags of a walk from an empty batch at ``lo``, which ended in state
    ``own_*``: the fix-up walk rewrites them until its path meets theirs, after which that
    walk's end state is the true one. Sets ``ovf[0]`` on an int64 overflow.
    """
    r = walk_rows(w, g, f, lo, hi, rows, tot, mx, start, True, greedy, padded, is_float,
                  lim_gt, lim_ge, max_rows)
    if r[1] >= 0:
        ovf[0] = 1
    if r[0] >= 0:
        return own_rows, own_tot, own_mx, own_start
    return r[2], r[3], r[4], r[5]


# --------------------------------------------------------------------------- one-thread walks
@cuda.jit(**_jit)
def walk_sequential_kernel(w, newgrp, tail, state_i, state_w, greedy, padded, is_float, lim_gt,
                           lim_ge, max_rows, multiple, spec, out, ids, base, res_i, res_w):
    """One thread runs :data:`walk_batches`; ``state_i = (rows, start)``, ``state_w = (tot, mx)``.

    Writes ``res_i = (n_starts, backdated, rows, start, met, overflow)``, ``res_w = (tot, mx)``.
    """
    if flat_index() != 0:
        return
    r = walk_batches(w, newgrp, tail, state_i[0], state_w[0], state_w[1], state_i[1], greedy,
                        padded, is_float, lim_gt, lim_ge, max_rows, multiple, spec, out, ids, base)
    res_i[0] = r[0]
    res_i[1] = r[1]
    res_i[2] = r[2]
    res_i[3] = r[5]
    res_i[4] = r[6]
    res_i[5] = r[7]
    res_w[0] = r[3]
    res_w[1] = r[4]


# --------------------------------------------------------------------------- tiled walk
def make_walk_tiles(threads, rows_per_thread, weight_type):
    """The speculative pass over tiles of ``threads * rows_per_thread`` rows (one per block).

    Each block stages its tile in shared memory; each thread walks its ``rows_per_thread``
    rows from an empty batch; then thread 0 carries the block's state across its threads'
    pieces (fix-up walks until the paths meet). The tile's flags are those of a walk of the
    tile from an empty batch; its end state goes to ``seg_i = (rows, start)``/``seg_w = (tot,
    mx)``. ``ovf[0]`` is set when any walk saw an int64 overflow.
    """
    tile = threads * rows_per_thread

    @cuda.jit(**_jit)
    def walk_tiles(w, g, f, greedy, padded, is_float, lim_gt, lim_ge, max_rows, seg_i, seg_w, ovf):
        ws = cuda.shared.array(tile, weight_type)
        gs = cuda.shared.array(tile, boolean)
        fs = cuda.shared.array(tile, boolean)
        t_rows = cuda.shared.array(threads, int64)
        t_start = cuda.shared.array(threads, int64)
        t_tot = cuda.shared.array(threads, weight_type)
        t_mx = cuda.shared.array(threads, weight_type)
        n = w.shape[0]
        t = cuda.threadIdx.x
        b = cuda.blockIdx.x
        first = b * tile
        m = min(tile, n - first)
        for k in range(t, m, threads):  # coalesced staging
            ws[k] = w[first + k]
            gs[k] = g[first + k]
        cuda.syncthreads()
        zero = ws[0] - ws[0]
        lo = t * rows_per_thread
        hi = min(lo + rows_per_thread, m)
        r = walk_rows(ws, gs, fs, lo, hi, 0, zero, zero, lo, False, greedy, padded, is_float,
                      lim_gt, lim_ge, max_rows)
        if r[1] >= 0:
            ovf[0] = 1
        t_rows[t] = r[2]
        t_tot[t] = r[3]
        t_mx[t] = r[4]
        t_start[t] = r[5]
        cuda.syncthreads()
        if t == 0:
            rows = t_rows[0]
            tot = t_tot[0]
            mx = t_mx[0]
            start = t_start[0]
            for p in range(1, threads):
                plo = p * rows_per_thread
                if plo >= m:
                    break
                phi = min(plo + rows_per_thread, m)
                rows, tot, mx, start = carry_across(ws, gs, fs, plo, phi, rows, tot, mx, start,
                                                    t_rows[p], t_tot[p], t_mx[p], t_start[p],
                                                    greedy, padded, is_float, lim_gt, lim_ge,
                                                    max_rows, ovf)
            seg_i[b, 0] = rows
            seg_i[b, 1] = start + first
            seg_w[b, 0] = tot
            seg_w[b, 1] = mx
        cuda.syncthreads()
        for k in range(t, m, threads):
            f[first + k] = fs[k]

    return walk_tiles


@cuda.jit(**_jit)
def combine_segments(w, g, f, seg_len, group, greedy, padded, is_float, lim_gt, lim_ge, max_rows,
                     seg_i, seg_w, out_i, out_w, ovf):
    """One level of the hierarchy: thread k joins segments ``k*group .. k*group+group-1``.

    Segments hold ``seg_len`` rows each (the last fewer) and flags of a walk from an empty
    batch at their first row. The thread carries the true state of its group (which starts
    empty) across them: a fix-up walk per segment until it meets the segment's flags, after
    which the segment's own end state holds. Writes the group's end state to ``out_i/out_w``.
    """
    k = flat_index()
    nseg = seg_i.shape[0]
    s0 = k * group
    if s0 >= nseg:
        return
    n = w.shape[0]
    rows = seg_i[s0, 0]
    start = seg_i[s0, 1]
    tot = seg_w[s0, 0]
    mx = seg_w[s0, 1]
    for s in range(s0 + 1, min(s0 + group, nseg)):
        lo = s * seg_len
        hi = min(lo + seg_len, n)
        rows, tot, mx, start = carry_across(w, g, f, lo, hi, rows, tot, mx, start, seg_i[s, 0],
                                            seg_w[s, 0], seg_w[s, 1], seg_i[s, 1], greedy, padded,
                                            is_float, lim_gt, lim_ge, max_rows, ovf)
    out_i[k, 0] = rows
    out_i[k, 1] = start
    out_w[k, 0] = tot
    out_w[k, 1] = mx


@cuda.jit(**_jit)
def walk_top(w, g, f, state_i, state_w, whole_i, whole_w, greedy, padded, is_float, lim_gt,
             lim_ge, max_rows, res_i, res_w, ovf):
    """The fix-up of the whole partition from the carried state (one thread).

    ``f`` holds the flags of a walk from an empty batch, ``whole_*`` its end state. Writes
    ``res_i = (met, rows, start)`` and ``res_w = (tot, mx)``: the true end state.
    """
    if flat_index() != 0:
        return
    r = walk_rows(w, g, f, 0, w.shape[0], state_i[0], state_w[0], state_w[1], state_i[1], True,
                  greedy, padded, is_float, lim_gt, lim_ge, max_rows)
    if r[1] >= 0:
        ovf[0] = 1
    res_i[0] = r[0]
    if r[0] >= 0:
        res_i[1] = whole_i[0, 0]
        res_i[2] = whole_i[0, 1]
        res_w[0] = whole_w[0, 0]
        res_w[1] = whole_w[0, 1]
    else:
        res_i[1] = r[2]
        res_i[2] = r[5]
        res_w[0] = r[3]
        res_w[1] = r[4]


# --------------------------------------------------------------------------- scans
@cuda.jit(device=True, **_jit)
def sat_add(a, b):
    """a + b for non-negative int64, saturating at I64_MAX (associative, so any order is exact)."""
    if a > I64_MAX - b:
        return I64_MAX
    return a + b


@cuda.jit(device=True, **_jit)
def max_of(a, b):
    """The larger of a and b."""
    return a if a > b else b


def make_scan(threads, rows_per_thread, op):
    """Tiled inclusive int64 scan with ``op``: per-tile scan, and each tile's total.

    ``tile_scan(x, out, totals)``: each block scans its tile of ``threads * rows_per_thread``
    elements (staged in shared memory), writes the tile's total to ``totals[block]``.
    ``add_prefix(out, scanned_totals)``: adds the scanned totals of the tiles before each tile.
    """
    tile = threads * rows_per_thread

    @cuda.jit(**_jit)
    def tile_scan(x, out, totals):
        xs = cuda.shared.array(tile, int64)
        ts = cuda.shared.array(threads, int64)
        n = x.shape[0]
        t = cuda.threadIdx.x
        first = cuda.blockIdx.x * tile
        m = min(tile, n - first)
        for k in range(t, m, threads):
            xs[k] = x[first + k]
        cuda.syncthreads()
        lo = t * rows_per_thread
        hi = min(lo + rows_per_thread, m)
        for k in range(lo + 1, hi):
            xs[k] = op(xs[k - 1], xs[k])
        if lo < hi:
            ts[t] = xs[hi - 1]
        cuda.syncthreads()
        if t == 0:
            last = (m - 1) // rows_per_thread
            for p in range(1, last + 1):
                ts[p] = op(ts[p - 1], ts[p])
            totals[cuda.blockIdx.x] = ts[last]
        cuda.syncthreads()
        if t > 0 and lo < hi:
            before = ts[t - 1]
            for k in range(lo, hi):
                xs[k] = op(before, xs[k])
        cuda.syncthreads()
        for k in range(t, m, threads):
            out[first + k] = xs[k]

    @cuda.jit(**_jit)
    def add_prefix(out, scanned):
        i = flat_index()
        if i < out.shape[0]:
            b = i // tile
            if b > 0:
                out[i] = op(scanned[b - 1], out[i])

    return tile_scan, add_prefix


# --------------------------------------------------------------------------- floor mode
@cuda.jit(**_jit)
def floor_cells(w, incl, seg_first, lim_f, lim_i, as_float, s_in, use_s_in, cells):
    """Each row's grid cell from the inclusive saturating prefix ``incl`` of the weights.

    ``seg_first[i]`` is the first row of row i's group segment; the exclusive running sum is
    ``incl[i] - w[i] - incl[seg_first[i] - 1]``, plus ``s_in`` in the first segment when it
    continues the previous partition (``use_s_in``). ``as_float``: cells of float sums.
    """
    i = flat_index()
    if i >= w.shape[0]:
        return
    f = seg_first[i]
    s = incl[i] - int64(w[i])
    if f > 0:
        s -= incl[f - 1]
    if as_float:
        sf = float(s)
        if use_s_in and f <= 0:
            sf = s_in + sf
        cells[i] = grid_cell(sf, lim_f, lim_i)
    else:
        if use_s_in and f <= 0:
            s = int64(s_in) + s
        cells[i] = grid_cell(s, lim_f, lim_i)


@cuda.jit(**_jit)
def floor_starts(g, cells, cell_prev, has_prev, flags):
    """Start flags of floor mode: group changes, row 0 without a previous row, cell changes."""
    i = flat_index()
    if i >= cells.shape[0]:
        return
    if g[i] or (i == 0 and not has_prev):
        flags[i] = 1
    elif i == 0:
        flags[i] = 1 if cells[0] != cell_prev else 0
    else:
        flags[i] = 1 if cells[i] != cells[i - 1] else 0


@cuda.jit(**_jit)
def floor_sequential_kernel(w, newgrp, s_in, cell_prev, has_prev, lim_f, lim_i, is_int, out, ids,
                            base, res_i, res_s):
    """:data:`floor_walk` by one thread (non-integer floats and overflow).

    Writes ``res_i = (n_starts, cell_last, overflow)`` and ``res_s = (s_out,)``.
    """
    if flat_index() != 0:
        return
    r = floor_walk(w, newgrp, s_in, cell_prev, has_prev, lim_f, lim_i, is_int, out, ids, base)
    res_i[0] = r[0]
    res_i[1] = r[2]
    res_i[2] = r[3]
    res_s[0] = r[1]


@cuda.jit(**_jit)
def floor_risky_kernel(w, seg_len, threshold, is_int, p_out, w_out, res_i, res_s):
    """:data:`floor_risky` by one thread (float running sums must be in row order).

    Writes ``res_i = (count, overflow)`` and ``res_s = (p_last, total)``.
    """
    if flat_index() != 0:
        return
    r = floor_risky(w, seg_len, threshold, is_int, p_out, w_out)
    res_i[0] = r[0]
    res_i[1] = r[3]
    res_s[0] = r[1]
    res_s[1] = r[2]


# --------------------------------------------------------------------------- small array work
@cuda.jit(**_jit)
def cap_starts(flags, last_flag, rows_in, max_rows, out):
    """Row-cap starts from the last flagged row at or before each row (``last_flag``).

    Rows before any flag continue the open batch of ``rows_in`` rows (a virtual start at
    ``-rows_in``; ``rows_in`` 0 or >= ``max_rows``: row 0 starts).
    """
    i = flat_index()
    if i >= flags.shape[0]:
        return
    f = last_flag[i]
    if f < 0:
        f = 0 if (rows_in == 0 or rows_in >= max_rows) else -rows_in
    d = i - f
    out[i] = flags[i] or d == 0 or d % max_rows == 0


@cuda.jit(**_jit)
def batch_stats_kernel(w, positions, first_rows, n, rows, total, mx, first, last):
    """One thread per batch: its rows, total (summed in row order), max and position range."""
    j = flat_index()
    k = first_rows.shape[0]
    if j >= k:
        return
    lo = first_rows[j]
    hi = first_rows[j + 1] if j + 1 < k else n
    tot = w[lo] - w[lo]
    m = tot
    pmin = positions[lo]
    pmax = positions[lo]
    for i in range(lo, hi):
        tot += w[i]
        if w[i] > m:
            m = w[i]
        pmin = min(pmin, positions[i])
        pmax = max(pmax, positions[i])
    rows[j] = hi - lo
    total[j] = tot
    mx[j] = m
    first[j] = pmin
    last[j] = pmax
