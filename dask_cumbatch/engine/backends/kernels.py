"""The CPU kernels' source as plain Python functions: no numba import here.

:mod:`.cpu` compiles every function of this module with numba (``njit``); :mod:`.python` runs
them as they are, for inputs so small that importing numba and loading its cache would cost
more than the work (a 10-row export). Both run the very same code, so their results are
identical: float64 arithmetic is IEEE double in both, and the integer kernels check for
int64 overflow before every addition, so Python's unbounded ints never see a wider value.

Kernels call each other only through the names in :data:`HELPERS` (``_cuts``, ``grid_cell``),
which :mod:`.cpu` rebinds to their compiled versions.

Two walks cover every mode:

* :func:`walk_batches` follows the greedy/fill rule row by row from a carried batch state.
  It serves the speculative pass (empty start), the fix-up of a partition head (stops where
  the true path meets the speculative one) and the finish (records every start).
* :func:`floor_walk` marks the fixed grid of the running sum (``floor`` mode) from a carried
  running sum; :func:`cap_walk` adds the row-cap starts on top of any start flags.

Weights arrive as int64 (ints and bools: exact, overflow detected) or float64 (summed in row
order from each batch's first row, as a sequential pass would).
"""
from __future__ import annotations

import math
import sys
import types

import numpy as np

I64_MAX = np.iinfo(np.int64).max
NO_POSITION = np.iinfo(np.int64).min
CELL_MAX = 1 << 62  # grid cells saturate here (a float grid this fine carries no information)
LITTLE_ENDIAN = sys.byteorder == "little"  # flags_to_ids reads eight flags as one word
INF_BITS = np.int64(0x7FF0000000000000)  # float64 infinity's bits as an int64
FLAG_CHUNK = 4096  # rows whose in-word prefix sums flags_to_ids buffers at a time

HELPERS = ("_cuts", "grid_cell", "_open_max", "_greedy_step", "_plain_float", "_plain_int", "_stretch_heads", "_four_stretches", "_eight_float_stretches", "_four_int_stretches", "_floor_rows", "_last_within", "_prefix_sums", "_batch_end", "_carried_rows", "_valid_and_bits", "_two_sum", "_two_prod", "_grow", "_at_or_above", "_exact_cell", "_dd_add", "_dd_sum")  # called from other kernels: compiled inline by .cpu
# Helpers that sum a block of weights in any order (exact there, see floor_summary_float):
# compiled by .cpu with reassociation allowed, so that they vectorise, and never inlined, so
# that no other kernel's arithmetic is reassociated.
BLOCK_HELPERS = ("_block_float", "_block_int")
COLD_HELPERS = ("_exact_near",)  # called on rare rows: compiled apart (never inlined), exact arithmetic
KERNELS = (
    "walk_batches", "greedy_walk", "greedy_starts", "chain_table", "greedy_chain", "greedy_sums_ids", "greedy_sums_end",
    "greedy_sums_starts",
    "floor_walk", "floor_risky", "cap_walk", "count_invalid", "valid_bits_total",
    "starts_to_ids", "batch_stats", "flags_to_ids", "floor_ids_quick", "floor_summary_float", "floor_summary_int",
    "floor_exact_walk", "floor_exact_ids", "floor_exact_risky", "floor_exact_sum", "floats_integral",
)
FLOOR_BLOCK = 256  # rows of a block in floor_summary_float / floor_summary_int
EXACT_SUMS = 2.0**53  # float64 sums of integers below this are exact, in any order
INT_BLOCK_SAFE = 1 << 54  # FLOOR_BLOCK int64 weights below this cannot overflow their block sum


def with_globals(func, namespace: dict):
    """``func`` with its globals looked up in ``namespace``: how a backend compiles these
    functions with the helpers they call compiled too (``.cpu``: ``njit``; ``.cuda_kernels``:
    device functions), by rebinding those names in ``namespace``.

    >>> double = with_globals(lambda x: twice(x), {"twice": lambda x: 2 * x})
    >>> double(4)
    8
    """
    clone = types.FunctionType(func.__code__, namespace, func.__name__, func.__defaults__, func.__closure__)
    clone.__doc__, clone.__qualname__, clone.__module__ = func.__doc__, func.__qualname__, func.__module__
    return clone


def _cuts(tot, rows, mx, wi, greedy, padded, is_float, lim_gt, lim_ge, max_rows):
    """Whether row i (weight ``wi``) starts a new batch after a batch of ``rows`` >= 1 rows."""
    if max_rows > 0 and rows >= max_rows:
        return True
    if greedy:
        if padded:
            m = mx if mx > wi else wi
            if is_float:
                return m * (rows + 1) > lim_gt
            return m > lim_gt // (rows + 1)
        if is_float:
            return tot + wi > lim_gt
        return wi > lim_gt - tot
    if padded:
        if is_float:
            return mx * rows >= lim_ge
        return mx >= -((-lim_ge) // rows)
    return tot >= lim_ge


def walk_batches(w, newgrp, tail, rows, tot, mx, start, greedy, padded, is_float,
                 lim_gt, lim_ge, max_rows, multiple, spec, out, ids, base):
    """Walk the greedy/fill rule over one partition from a carried batch state.

    ``rows, tot, mx`` describe the open batch before row 0 (``rows == 0``: none, so row 0
    starts one); ``start`` is its first row's position relative to row 0 (<= 0) and ``tail``
    its last ``min(rows, multiple - 1)`` weights (only read by a ``multiple`` cut-back).
    ``newgrp[i]`` forces a start at row i (group change). If ``spec`` is non-empty the walk
    stops at the first start it shares with ``spec`` (the paths have met). Starts in
    the first ``len(out)`` rows are written to ``out``, and batch ids (``base`` - 1 + starts so far) to
    ``ids`` when it is non-empty.

    Returns ``(n_starts, backdated, rows, tot, mx, start, met, overflow)``: ``backdated`` is
    the (negative) position of a start a cut-back placed before row 0, ``met`` the row where
    the paths met, ``overflow`` the row whose int64 sum overflowed (``NO_POSITION``/-1 when none).

    >>> import numpy as np
    >>> w = np.array([3.0, 3.0, 3.0, 3.0]); out = np.zeros(4, np.bool_)
    >>> ids = np.zeros(4, np.int64)
    >>> r = walk_batches(w, np.zeros(4, np.bool_), w[:0], 0, 0.0, 0.0, 0, True, False, True,
    ...                  6.0, 6.0, 0, 0, np.zeros(0, np.bool_), out, ids, 0)
    >>> int(r[0]), out.tolist(), ids.tolist()
    (2, [True, False, True, False], [0, 0, 1, 1])
    """
    n = w.shape[0]
    nt = tail.shape[0]
    check_spec = spec.shape[0] > 0
    n_record = out.shape[0]
    write = ids.shape[0] > 0
    zero = tot - tot
    n_starts = 0
    backdated = NO_POSITION
    met = -1
    for i in range(n):
        wi = w[i]
        cut = rows == 0 or newgrp[i]
        if not cut:
            cut = _cuts(tot, rows, mx, wi, greedy, padded, is_float, lim_gt, lim_ge, max_rows)
            if cut and multiple > 1 and rows >= multiple and rows % multiple != 0:
                # Cut back to the last whole multiple; the rest opens the next batch.
                p = start + multiple * (rows // multiple)
                rows = i - p
                tot = zero
                mx = zero
                for j in range(p, i):
                    wj = w[j] if j >= 0 else tail[nt + j]
                    tot += wj
                    if wj > mx:
                        mx = wj
                start = p
                if p >= 0:
                    n_starts += 1
                    if p < n_record:
                        out[p] = True
                    if write:
                        for j in range(p, i):
                            ids[j] += 1
                    if check_spec and spec[p]:
                        return n_starts, backdated, rows, tot, mx, start, p, -1
                else:
                    backdated = p
                cut = _cuts(tot, rows, mx, wi, greedy, padded, is_float, lim_gt, lim_ge, max_rows)
        if cut:
            start = i
            rows = 0
            tot = zero
            mx = zero
            n_starts += 1
            if i < n_record:
                out[i] = True
            if check_spec and spec[i]:
                return n_starts, backdated, rows, tot, mx, start, i, -1
        if write:
            ids[i] = base + n_starts - 1
        if not is_float and wi > I64_MAX - tot:
            return n_starts, backdated, rows, tot, mx, start, met, i
        tot += wi
        rows += 1
        if wi > mx:
            mx = wi
    return n_starts, backdated, rows, tot, mx, start, met, -1


def greedy_walk(w, newgrp, rows, tot, mx, start, is_float, lim_gt, out, ids, base):
    """:func:`walk_batches` for plain greedy batches (no ``padded``, ``max_rows``, ``multiple``
    or ``spec``), with no branch on the running total: the same starts, ids and result.

    The running total is the loop's only long dependency, so nothing else feeds it: a select
    instead of a reset, the open batch's row count and maximum worked out after the loop
    (faster than the general walk: docs/performance.md, "Measured while building").

    >>> import numpy as np
    >>> w = np.array([3.0, 3.0, 3.0, 3.0]); out = np.zeros(4, np.bool_)
    >>> ids = np.zeros(4, np.int64)
    >>> r = greedy_walk(w, np.zeros(4, np.bool_), 0, 0.0, 0.0, 0, True, 6.0, out, ids, 0)
    >>> int(r[0]), out.tolist(), ids.tolist()
    (2, [True, False, True, False], [0, 0, 1, 1])
    """
    n = w.shape[0]
    n_record = out.shape[0]
    write = ids.shape[0] > 0
    zero = tot - tot
    n_starts = 0
    rows_in = rows
    opens = rows == 0  # no batch is carried in: row 0 starts one
    for i in range(n):
        wi = w[i]
        cut, after = _greedy_step(tot, wi, newgrp[i] | (opens & (i == 0)), is_float, lim_gt, zero)
        start = i if cut else start
        n_starts += cut
        if i < n_record:
            out[i] = cut
        if write:
            ids[i] = base + n_starts - 1
        held = zero if cut else tot  # the open batch's total before row i
        if not is_float and wi > I64_MAX - held:  # as the general walk (a limit in int64 cuts first)
            rows = i - start if n_starts else rows_in + i
            return n_starts, NO_POSITION, rows, held, _open_max(w, start, i, mx, n_starts > 0, zero), start, -1, i
        tot = after
    rows = n - start if n_starts else rows_in + n
    return n_starts, NO_POSITION, rows, tot, _open_max(w, start, n, mx, n_starts > 0, zero), start, -1, -1


def _greedy_step(tot, wi, cut_anyway, is_float, lim_gt, zero):
    """One row of plain greedy batching: (whether the row starts a batch, the open total after
    it). A select, not a reset: one add on the running total's dependency, as in a plain sum."""
    if is_float:
        s = tot + wi
        over = s > lim_gt
    else:
        over = wi > lim_gt - tot
        s = wi if over else tot + wi  # tot + wi <= lim_gt when not over: no overflow
    cut = over | cut_anyway
    return cut, (zero + wi) if cut else s


def _plain_float(tot, w, i, lim_gt, out):
    """:func:`_greedy_step` of row ``i``'s float weight without a forced cut, in a form that
    compiles without a branch (the compiler made one of the select there, mispredicted at every
    start): whether the row starts a batch goes to ``out[i]``; returns the open total after it.

    The new total is ``min(s, wi + keep * lim_gt)`` with ``s = tot + wi``: where the row joins
    (``s <= lim_gt``, so ``tot <= lim_gt``), ``wi + lim_gt >= wi + tot = s`` and the minimum
    is ``s``; where it starts a batch, ``s >= wi`` and the minimum is ``wi + 0.0``, as there
    (``keep`` is false only where ``s`` exceeds the limit, so ``lim_gt`` is finite then).
    """
    wi = w[i]
    s = tot + wi
    keep = s <= lim_gt
    out[i] = not keep
    return min(s, wi + keep * lim_gt)


def _plain_int(tot, w, i, lim_gt, out):
    """:func:`_greedy_step` of row ``i``'s integer weight without a forced cut, as a conditional
    move: whether the row starts a batch goes to ``out[i]``; returns the open total after it."""
    wi = w[i]
    over = wi > lim_gt - tot
    out[i] = over
    return wi + tot * (1 - over)


PLAIN_STRETCHES = 8  # stretches walked at once without group changes (four with them)


def greedy_starts(w, newgrp, grouped, is_float, lim_gt, out):
    """:func:`greedy_walk` from an empty batch over a whole partition, recording every start
    in ``out`` (``len(out) == len(w)``): the same flags and result, faster where paths meet.

    The walk is one long chain of dependent steps. Here several stretches of the partition are
    walked at once, each from an empty batch of its own (independent chains the CPU overlaps):
    where ``grouped`` is false (``newgrp`` holds no group change) and the partition has 16 rows
    or more, eight float stretches by :func:`_plain_float` or four integer ones by
    :func:`_plain_int`, without a branch; else four by :func:`_greedy_step`, which read the
    group flags. Then each stretch after the first is walked again from the true state at its
    start, until that path starts a batch on a row where the stretch's own walk did: the state
    after a start does not depend on the past, so from there on the stretch's flags and end
    total are the true ones (float sums included). The starts are counted after the walks, in
    a loop that vectorises (the chain counts: docs/performance.md, "Measured while building").
    Where paths never meet (constant weights) stretches are walked twice.

    >>> import numpy as np
    >>> w = np.array([3.0, 3.0, 3.0, 3.0, 5.0, 1.0, 2.0, 4.0, 4.0]); out = np.zeros(9, np.bool_)
    >>> r = greedy_starts(w, np.zeros(9, np.bool_), False, True, 6.0, out)
    >>> int(r[0]), out.astype(int).tolist()
    (5, [1, 0, 1, 0, 1, 0, 1, 0, 1])
    """
    n = w.shape[0]
    zero = w[0] - w[0] if n else lim_gt - lim_gt
    plain = not grouped and n >= 2 * PLAIN_STRETCHES
    k = PLAIN_STRETCHES if plain and is_float else 4
    q = n // k
    ends = np.zeros(k, w.dtype)  # each stretch's end total, walked from its own first row
    if plain and is_float:
        _eight_float_stretches(w, lim_gt, zero, q, out, ends)
    elif plain:
        _four_int_stretches(w, lim_gt, zero, q, out, ends)
    else:
        _four_stretches(w, newgrp, grouped, is_float, lim_gt, zero, q, out, ends)
    tot = ends[0]
    for s in range(1, k):
        lo = s * q
        hi = n if s == k - 1 else lo + q
        met = False
        for i in range(lo, hi):
            cut, tot = _greedy_step(tot, w[i], newgrp[i] | (i == 0), is_float, lim_gt, zero)
            if cut and out[i]:
                met = True
                break
            out[i] = cut
        if met:
            tot = ends[s]
    n_starts = 0
    for i in range(n):
        n_starts += out[i]
    start = n - 1 if n else 0
    while start > 0 and not out[start]:  # row 0 always starts a batch
        start -= 1
    mx = _open_max(w, start, n, zero, True, zero)
    return n_starts, NO_POSITION, n - start, tot, mx, start, -1, -1


def _four_stretches(w, newgrp, grouped, is_float, lim_gt, zero, q, out, ends):
    """:func:`greedy_starts`' walk of four stretches of ``q`` rows (the last takes the rest),
    each from an empty batch, reading the group flags where ``grouped``."""
    n = w.shape[0]
    b1 = q
    b2 = 2 * q
    b3 = 3 * q
    t0 = zero
    t1 = zero
    t2 = zero
    t3 = zero
    for j in range(q):
        first = j == 0
        g0 = newgrp[j] if grouped else False  # the test on ``grouped`` is hoisted out of the loop
        g1 = newgrp[b1 + j] if grouped else False
        g2 = newgrp[b2 + j] if grouped else False
        g3 = newgrp[b3 + j] if grouped else False
        c0, t0 = _greedy_step(t0, w[j], g0 | first, is_float, lim_gt, zero)
        c1, t1 = _greedy_step(t1, w[b1 + j], g1 | first, is_float, lim_gt, zero)
        c2, t2 = _greedy_step(t2, w[b2 + j], g2 | first, is_float, lim_gt, zero)
        c3, t3 = _greedy_step(t3, w[b3 + j], g3 | first, is_float, lim_gt, zero)
        out[j] = c0
        out[b1 + j] = c1
        out[b2 + j] = c2
        out[b3 + j] = c3
    for i in range(b3 + q, n):  # the last stretch takes the rows left over
        c3, t3 = _greedy_step(t3, w[i], newgrp[i] | (i == b3), is_float, lim_gt, zero)
        out[i] = c3
    ends[0] = t0
    ends[1] = t1
    ends[2] = t2
    ends[3] = t3


def _stretch_heads(w, zero, q, out, ends):
    """The first row of each of the ``len(ends)`` stretches of ``q >= 1`` rows starts its batch:
    flagged in ``out``, its weight the stretch's opening total in ``ends`` (``zero +``: as
    :func:`_greedy_step`). Shared by the branch-free walks, which read their totals from there."""
    for s in range(ends.shape[0]):
        out[s * q] = True
        ends[s] = zero + w[s * q]


def _eight_float_stretches(w, lim_gt, zero, q, out, ends):
    """:func:`greedy_starts`' walk of eight stretches of ``q >= 1`` float rows (the last takes
    the rest) by :func:`_plain_float`, each from an empty batch: no group flags, no branch."""
    n = w.shape[0]
    _stretch_heads(w, zero, q, out, ends)
    t0, t1, t2, t3, t4, t5, t6, t7 = ends[0], ends[1], ends[2], ends[3], ends[4], ends[5], ends[6], ends[7]
    for j in range(1, q):
        t0 = _plain_float(t0, w, j, lim_gt, out)
        t1 = _plain_float(t1, w, q + j, lim_gt, out)
        t2 = _plain_float(t2, w, 2 * q + j, lim_gt, out)
        t3 = _plain_float(t3, w, 3 * q + j, lim_gt, out)
        t4 = _plain_float(t4, w, 4 * q + j, lim_gt, out)
        t5 = _plain_float(t5, w, 5 * q + j, lim_gt, out)
        t6 = _plain_float(t6, w, 6 * q + j, lim_gt, out)
        t7 = _plain_float(t7, w, 7 * q + j, lim_gt, out)
    for i in range(8 * q, n):  # the last stretch takes the rows left over
        t7 = _plain_float(t7, w, i, lim_gt, out)
    ends[0], ends[1], ends[2], ends[3], ends[4], ends[5], ends[6], ends[7] = t0, t1, t2, t3, t4, t5, t6, t7


def _four_int_stretches(w, lim_gt, zero, q, out, ends):
    """:func:`greedy_starts`' walk of four stretches of ``q >= 1`` integer rows (the last takes
    the rest) by :func:`_plain_int`, each from an empty batch (with eight, the compiler ran
    out of registers and made branches again)."""
    n = w.shape[0]
    _stretch_heads(w, zero, q, out, ends)
    t0, t1, t2, t3 = ends[0], ends[1], ends[2], ends[3]
    for j in range(1, q):
        t0 = _plain_int(t0, w, j, lim_gt, out)
        t1 = _plain_int(t1, w, q + j, lim_gt, out)
        t2 = _plain_int(t2, w, 2 * q + j, lim_gt, out)
        t3 = _plain_int(t3, w, 3 * q + j, lim_gt, out)
    for i in range(4 * q, n):
        t3 = _plain_int(t3, w, i, lim_gt, out)
    ends[0], ends[1], ends[2], ends[3] = t0, t1, t2, t3


def _open_max(w, start, stop, mx_in, started_here, zero):
    """The open batch's maximum weight over rows ``max(start, 0)..stop-1``, as
    :func:`walk_batches` tracks it: from zero when the batch started in this partition
    (``started_here``), else from the carried ``mx_in``."""
    mx = zero if started_here else mx_in
    for j in range(max(start, 0), stop):
        if w[j] > mx:
            mx = w[j]
    return mx


def chain_table(w, newgrp, greedy, padded, lim_gt, lim_ge, max_rows, nxt, cnt, dq):
    """Where every fresh start leads, for integer weights (the summary's chain table).

    For each row s, the batch that starts fresh at s ends before ``nxt[s]`` (the rule of
    :func:`walk_batches`, ``multiple`` aside). Non-negative weights make ``nxt``
    non-decreasing, so one two-pointer sweep with an exact int64 window sum (and a
    monotone deque for the window maximum when ``padded``) finds all of them in O(n).
    A backward pass then replaces ``nxt[s]`` by the last start of the path from s
    and sets ``cnt[s]`` to the number of starts on it. ``dq`` is scratch of n ints.
    Returns False when a window sum would overflow int64 (``nxt``/``cnt`` are then invalid).

    >>> import numpy as np
    >>> w = np.array([2, 2, 2, 1, 3]); n = len(w)
    >>> nxt, cnt, dq = (np.zeros(n, np.int64) for _ in range(3))
    >>> chain_table(w, np.zeros(n, np.bool_), True, False, 4, 4, 0, nxt, cnt, dq)
    True
    >>> nxt.tolist(), cnt.tolist()  # from 0: [2 2][2 1][3]; from 1: [2 2][1 3]
    ([4, 3, 4, 3, 4], [3, 2, 2, 1, 1])
    """
    n = w.shape[0]
    zero = w[0] - w[0] if n else 0
    e = 0
    tot = zero
    head = 0
    tail = 0
    for s in range(n):
        if e <= s:
            e = s + 1
            tot = w[s]
            head = 0
            tail = 0
            if padded:
                dq[0] = s
                tail = 1
        while e < n and not newgrp[e]:
            we = w[e]
            mx = w[dq[head]] if padded else zero
            if _cuts(tot, e - s, mx, we, greedy, padded, False, lim_gt, lim_ge, max_rows):
                break
            if we > I64_MAX - tot:
                return False
            tot += we
            if padded:
                while tail > head and w[dq[tail - 1]] <= we:
                    tail -= 1
                dq[tail] = e
                tail += 1
            e += 1
        nxt[s] = e
        tot -= w[s]
        if padded and dq[head] == s:
            head += 1
    for s in range(n - 1, -1, -1):
        t = nxt[s]
        if t >= n:
            nxt[s] = s
            cnt[s] = 1
        else:
            nxt[s] = nxt[t]
            cnt[s] = cnt[t] + 1
    return True


def greedy_chain(w, lim_gt, m, P, pos, first, run_first, run_cnt, run_last):
    """The runs of a chain (see ``Chain`` in the greedy mode) for plain greedy over integer
    weights: for the paths whose first start is a row j < ``m``, the number of starts to the
    end of the partition and the last start, one run per range of j with the same outcome.

    :func:`chain_table` finds where the batch from *every* row ends, then follows the chains
    back. Only the rows on the paths from j < m matter, and those paths merge as they go:
    here they are followed together, one batch at a time, each batch's end found from the
    prefix sums ``P`` (:func:`_last_within`), and paths that reach the same row at the same
    step become one. The live paths stay sorted (the batch end never decreases with its
    start), so a merge is always with the previous path. On the export benchmark's token
    counts about one row in six is visited, against every row twice (sweep and back).

    ``P`` is int64 scratch of ``n + 1`` (the prefix sums), ``pos`` and ``first`` of ``m``
    (the live paths: where each is, and the smallest j on it), ``run_*`` of ``m`` (the runs'
    smallest j, starts and last start, in the order their paths end). Returns the number of
    runs, or -1 when ``P + lim_gt`` would leave int64 (then :func:`chain_table` decides).

    >>> import numpy as np
    >>> w = np.array([2, 2, 2, 1, 3]); z = lambda k: np.zeros(k, np.int64)
    >>> runs = greedy_chain(w, 4, 2, z(6), z(2), z(2), *(out := (z(2), z(2), z(2))))
    >>> runs, [a.tolist() for a in out]  # from 0: [2 2][2 1][3]; from 1: [2 2][1 3]
    (2, [[1, 0], [2, 3], [3, 4]])
    """
    n = w.shape[0]
    if not _prefix_sums(w, lim_gt, P):
        return -1
    live = min(m, n)
    for i in range(live):
        pos[i] = i
        first[i] = i
    starts = 0
    runs = 0
    while live > 0:
        starts += 1
        kept = 0
        c = 0
        for i in range(live):
            x = pos[i]
            c, e = _batch_end(P, c, x, lim_gt, n)
            if e >= n:  # x starts the path's last batch
                run_first[runs] = first[i]
                run_cnt[runs] = starts
                run_last[runs] = x
                runs += 1
            elif kept == 0 or pos[kept - 1] != e:
                pos[kept] = e
                first[kept] = first[i]
                kept += 1
        live = kept
    return runs


def greedy_sums_ids(w, tot, opens, lim_gt, P, ids, base):
    """:func:`greedy_walk`'s ids for plain greedy over integer weights without group changes,
    found batch by batch from the prefix sums ``P`` (int64 scratch of ``n + 1``) instead of
    row by row: for batches of hundreds of rows and more, a search per batch and a fill.

    The carried batch (total ``tot``; ``opens``: none is carried and row 0 starts one) takes
    the rows up to the first where ``tot + P[i + 1] > lim_gt``; then each batch from s ends
    before the first row e > s with ``P[e + 1] > P[s] + lim_gt``. Ids count from ``base``
    (the carried batch is ``base - 1``). Returns the number of starts, or -1 (``ids``
    untouched) when ``P + lim_gt`` would leave int64.

    >>> import numpy as np
    >>> ids = np.zeros(6, np.int64)
    >>> greedy_sums_ids(np.array([2, 2, 2, 1, 3, 9]), 1, False, 4, np.zeros(7, np.int64), ids, 5), ids.tolist()
    (3, [4, 5, 5, 6, 6, 7])
    """
    n = w.shape[0]
    if not _prefix_sums(w, lim_gt, P):
        return -1
    s = _carried_rows(P, tot, opens, lim_gt)
    k = base - 1
    for i in range(min(s, n)):
        ids[i] = k
    count = 0
    c = 0
    while s < n:
        k += 1
        count += 1
        c, e = _batch_end(P, c, s, lim_gt, n)
        for i in range(s, e):
            ids[i] = k
        s = e
    return count


def greedy_sums_end(w, tot, opens, lim_gt, P):
    """Where :func:`greedy_sums_ids` leaves a partition, without the ids: ``(starts, last)``,
    ``last`` the first row of the batch open at the end (-1: no row starts a batch, the
    carried one is still open), or ``(-1, -1)`` when ``P + lim_gt`` would leave int64. The
    scan's walk over a partition kept whole in its summary, where batches are long.

    >>> import numpy as np
    >>> greedy_sums_end(np.array([2, 2, 2, 1, 3, 9]), 1, False, 4, np.zeros(7, np.int64))
    (3, 5)
    """
    n = w.shape[0]
    if not _prefix_sums(w, lim_gt, P):
        return -1, -1
    s = _carried_rows(P, tot, opens, lim_gt)
    count = 0
    last = -1
    c = 0
    while s < n:
        count += 1
        last = s
        c, s = _batch_end(P, c, s, lim_gt, n)
    return count, last


def _carried_rows(P, tot, opens, lim_gt):
    """The rows the carried batch (total ``tot``; ``opens``: none is carried) takes: up to the
    first row i where ``tot + P[i + 1] > lim_gt``."""
    if opens:
        return 0
    room = lim_gt - tot  # the carried batch takes the rows while their sum stays within
    return 0 if room < 0 else _last_within(P, 0, room)


def greedy_sums_starts(w, lim_gt, P, out):
    """:func:`greedy_starts` for plain greedy over integer weights without group changes,
    found batch by batch from the prefix sums ``P`` (int64 scratch of ``n + 1``): the same
    flags in ``out`` (which must hold zeros) and the same result, or ``-1`` starts (``out``
    untouched) when ``P + lim_gt`` would leave int64. Faster where batches are long (a search
    per batch), slower where they hold a dozen rows (see ``_walk`` in the greedy mode).

    >>> import numpy as np
    >>> out = np.zeros(5, np.bool_)
    >>> r = greedy_sums_starts(np.array([2, 2, 2, 1, 3]), 4, np.zeros(6, np.int64), out)
    >>> [int(x) for x in r[:6] if x != NO_POSITION], out.astype(int).tolist()
    ([3, 1, 3, 3, 4], [1, 0, 1, 0, 1])
    """
    n = w.shape[0]
    zero = w[0] - w[0] if n else lim_gt - lim_gt
    if n == 0 or not _prefix_sums(w, lim_gt, P):
        return -1, NO_POSITION, 0, zero, zero, 0, -1, -1
    s = 0
    count = 0
    c = 0
    while True:
        out[s] = True
        count += 1
        c, e = _batch_end(P, c, s, lim_gt, n)
        if e >= n:
            break
        s = e
    return count, NO_POSITION, n - s, P[n] - P[s], _open_max(w, s, n, zero, True, zero), s, -1, -1


def _prefix_sums(w, lim_gt, P):
    """``P[k]`` = the sum of the first k weights; False when some ``P + lim_gt`` would leave int64."""
    n = w.shape[0]
    room = I64_MAX - lim_gt  # every P[s] + lim_gt stays within int64
    acc = w[0] - w[0] if n else 0
    P[0] = acc
    for i in range(n):
        x = w[i]
        if x > room - acc:
            return False
        acc += x
        P[i + 1] = acc
    return True


def _batch_end(P, c, s, lim_gt, n):
    """Where the batch fresh at row ``s`` ends, from the prefix sums ``P`` of ``n`` weights:
    ``(c, e)``, ``e`` the first row after it (at least s + 1, at most n: the first row e > s
    with ``P[e + 1] > P[s] + lim_gt``) and ``c`` the search's answer, from which the search
    for a later start may go on (``c``: a previous answer, for a start at or before ``s``)."""
    c = _last_within(P, max(c, s), P[s] + lim_gt)
    return c, min(max(c, s + 1), n)


def _last_within(P, c, t):
    """The largest ``k >= c`` with ``P[k] <= t``, given ``P[c] <= t`` and ``P`` sorted:
    steps of 1, 2, 4, ... from ``c``, then halving (short when the answer is near ``c``)."""
    hi = P.shape[0]
    step = 1
    while c + step < hi and P[c + step] <= t:
        c += step
        step += step
    while step > 1:
        step //= 2
        if c + step < hi and P[c + step] <= t:
            c += step
    return c


def grid_cell(s, lim_f, lim_i):
    """``floor(s / limit)`` as int64: exact integer division when ``lim_i`` > 0.

    ``math.floor`` rather than ``np.floor``: device code has no NumPy ufuncs (the quotient
    reaches ``CELL_MAX`` exactly when its floor does, so the test may come first).

    >>> int(grid_cell(7.5, 2.0, 0)), int(grid_cell(7, 2.0, 2)), int(grid_cell(1e300, 1e-300, 0)) == CELL_MAX
    (3, 3, True)
    """
    if lim_i > 0:
        return np.int64(s // lim_i)
    q = s / lim_f
    if q >= CELL_MAX:
        return np.int64(CELL_MAX)
    return np.int64(math.floor(q))


# A constant, not an expression: on a device a multiply-add in it could be fused (see .cuda_kernels).
CELL_SAFE_SHRINK = 1.0 - 4.0 * 2.0**-52  # exactly 1 - 2**-50


def floor_walk(w, newgrp, s_in, cell_prev, has_prev, lim_f, lim_i, is_int, out, ids, base):
    """Mark the starts of ``floor`` mode: group changes and changes of ``floor(S / limit)``.

    ``S`` is the exclusive running sum within the group: before the partition's first group
    change it is ``s_in + P`` (``P`` the partition's own running sum from row 0), after it
    the group's own running sum. ``cell_prev`` is the previous row's cell (ignored when
    ``has_prev`` is false: row 0 then starts a batch). Integer sums against an integer limit
    use exact integer cells (``lim_i`` > 0); ``is_int`` turns on the int64 overflow check.
    Start flags go to ``out`` and ids (``base`` - 1 + starts so far) to ``ids`` when non-empty.

    Returns ``(n_starts, s_out, cell_last, overflow)``: S for the row after the partition,
    the last row's cell, and the row whose int64 sum overflowed or -1.

    >>> import numpy as np
    >>> out = np.zeros(4, np.bool_)
    >>> ids = np.zeros(4, np.int64)
    >>> r = floor_walk(np.array([3, 3, 3, 3]), np.zeros(4, np.bool_), 0, 0, False, 6.0, 6, True, out, ids, 0)
    >>> int(r[0]), out.tolist(), ids.tolist()
    (2, [True, False, True, False], [0, 0, 1, 1])
    """
    n = w.shape[0]
    record = out.shape[0] > 0
    write = ids.shape[0] > 0
    zero = s_in - s_in
    s_base = s_in
    p = zero
    c = cell_prev
    n_starts = 0
    below_next = -np.inf  # recomputed at each start
    for i in range(n):
        if newgrp[i] or not has_prev:
            s_base = zero
            p = zero
            c_new = grid_cell(zero, lim_f, lim_i)
            start = True
            has_prev = True
        elif lim_i == 0 and s_base + p < below_next:
            c_new = c  # safely inside the current cell: no division needed
            start = False
        else:
            c_new = grid_cell(s_base + p, lim_f, lim_i)
            start = c_new != c
        if start:
            n_starts += 1
            if record:
                out[i] = True
            if lim_i == 0:
                # Below this sum, fl(S / limit) < cell + 1 whatever the rounding.
                below_next = (c_new + 1) * lim_f * CELL_SAFE_SHRINK if c_new < CELL_MAX else -np.inf
        if write:
            ids[i] = base + n_starts - 1
        c = c_new
        wi = w[i]
        if is_int and wi > I64_MAX - (s_base + p):
            return n_starts, s_base + p, c, i
        p += wi
    return n_starts, s_base + p, c, -1


def floor_risky(w, seg_len, threshold, is_int, p_out, w_out):
    """Record the rows of the first segment whose weight may skip a whole grid cell.

    Within a group segment a row of weight <= ``threshold`` (a safe fraction of the limit)
    moves the cell by at most one, so the number of cell changes follows from the first and
    last cells alone; heavier rows are kept (the running sum before them, and their weight)
    so the scan can count their changes exactly. ``seg_len`` is the segment's length (rows
    before the first group change).

    Returns ``(count, p_last, total, overflow)``: how many rows were recorded, the running
    sum before the segment's last row, the segment's total, and the row whose int64 sum
    overflowed (or -1).
    """
    p = w[0] - w[0]
    overflow, p, p_last, k = _floor_rows(w, 0, seg_len, seg_len, p, p, 0, threshold, is_int, p_out, w_out)
    return k, p_last, p, overflow


def _block_float(w, lo, hi, threshold):
    """``(sum, invalid, fractional, above threshold)`` of the float weights ``w[lo:hi]``: the
    sum in any order (it is compiled with reassociation, to vectorise), the rest counted by
    selects, so that no reassociation can touch a test: counts of 0s and 1s are exact in any
    order. NaN counts as fractional, infinity as invalid."""
    block = w[lo:hi]  # indices from 0: no test for negative ones in the loop, which vectorises
    s = 0.0
    bad = 0.0
    frac = 0.0
    risky = 0.0
    for i in range(block.shape[0]):
        x = block[i]
        s += x
        bad += 0.0 if (x >= 0.0) & (x < np.inf) else 1.0
        frac += 0.0 if np.floor(x) == x else 1.0
        risky += 1.0 if x > threshold else 0.0
    return s, bad, frac, risky


def _block_int(w, lo, hi, threshold):
    """``(sum, valid, none above threshold and below INT_BLOCK_SAFE)`` of the int64 weights
    ``w[lo:hi]`` (the sum wraps around where it leaves int64: only a block with a weight of at
    least ``INT_BLOCK_SAFE`` can make it)."""
    block = w[lo:hi]
    s = block[0] - block[0]
    bits = s
    risky = s
    for i in range(block.shape[0]):
        x = block[i]
        s += x
        bits |= x  # negative: the sign bit; >= INT_BLOCK_SAFE: a bit above 53
        risky += x > threshold
    return s, bits >= 0, bits < INT_BLOCK_SAFE and risky == 0


def _floor_rows(w, lo, hi, seg_len, p, p_last, k, threshold, is_int, p_out, w_out):
    """The walk of :func:`floor_risky` over rows ``lo..hi`` of a segment of ``seg_len`` valid
    weights (its last row is never recorded), from running sum ``p`` and ``k`` recorded rows:
    ``(overflow, p, p_last, k)``, ``overflow`` the row whose int64 sum overflowed or -1."""
    for i in range(lo, hi):
        wi = w[i]
        p_last = p
        if i < seg_len - 1 and wi > threshold:
            p_out[k] = p
            w_out[k] = wi
            k += 1
        if is_int and wi > I64_MAX - p:
            return i, p, p_last, k
        p += wi
    return -1, p, p_last, k


def floor_summary_float(w, threshold, p_out, w_out):
    """:func:`floor_risky` of a whole partition (no group change) of unchecked float weights
    that are all valid and integer-valued, with running sums below ``EXACT_SUMS``: such sums
    are exact in any order, so blocks of ``FLOOR_BLOCK`` weights without a risky row are
    summed by a vectorised helper and the rest walked in row order, giving a walk's sums bit
    for bit. Returns ``(done, count, p_last, total)``; not done where a weight is invalid or
    fractional or the sums grow too large (the caller then takes the checked path).

    >>> import numpy as np
    >>> p, wo = np.zeros(4), np.zeros(4)
    >>> r = floor_summary_float(np.array([1.0, 5.0, 1.0, 2.0]), 4.0, p, wo)
    >>> r[0], int(r[1]), float(r[2]), float(r[3]), p[:1].tolist()
    (True, 1, 7.0, 9.0, [1.0])
    >>> floor_summary_float(np.array([1.0, 0.5]), 4.0, p, wo)[0]
    False
    """
    n = w.shape[0]
    p = 0.0
    p_last = p
    k = 0
    for lo in range(0, n, FLOOR_BLOCK):
        hi = min(n, lo + FLOOR_BLOCK)
        s, bad, frac, risky = _block_float(w, lo, hi, threshold)
        if bad or frac or not p + s < EXACT_SUMS:
            return False, k, p_last, p
        if not risky:
            p_last = p + (s - w[hi - 1])
            p += s
        else:
            _, p, p_last, k = _floor_rows(w, lo, hi, n, p, p_last, k, threshold, False, p_out, w_out)
    return True, k, p_last, p


def floor_summary_int(w, threshold, p_out, w_out):
    """:func:`floor_summary_float` for unchecked int64 weights: ``(done, count, p_last,
    total)``; not done where a weight is negative or the running sum overflows int64 (the
    checked path then reports either). Integer sums are exact in any order.

    >>> import numpy as np
    >>> p, wo = np.zeros(3, np.int64), np.zeros(3, np.int64)
    >>> r = floor_summary_int(np.array([1, 5, 1]), 4, p, wo)
    >>> r[0], int(r[1]), int(r[2]), int(r[3])
    (True, 1, 6, 7)
    """
    n = w.shape[0]
    p = w[0] - w[0] if n else 0
    p_last = p
    k = 0
    for lo in range(0, n, FLOOR_BLOCK):
        hi = min(n, lo + FLOOR_BLOCK)
        s, valid, quiet = _block_int(w, lo, hi, threshold)
        if not valid:
            return False, k, p_last, p
        if quiet and s <= I64_MAX - p:
            p_last = p + (s - w[hi - 1])
            p += s
            continue
        overflow, p, p_last, k = _floor_rows(w, lo, hi, n, p, p_last, k, threshold, True, p_out, w_out)
        if overflow >= 0:
            return False, k, p_last, p
    return True, k, p_last, p


def cap_walk(flags, rows, max_rows, out):
    """Add row-cap starts: a start wherever the open batch already holds ``max_rows`` rows.

    ``flags`` are the mode's own starts, ``rows`` the open batch's rows before row 0 (0: row 0
    starts). Writes the union into ``out`` and returns ``(n_starts, rows, first_flag)``, where
    ``first_flag`` is the first row flagged by ``flags`` (``len(flags)`` when none).

    >>> import numpy as np
    >>> out = np.zeros(5, np.bool_)
    >>> r = cap_walk(np.array([True, False, False, False, False]), 0, 2, out)
    >>> int(r[0]), out.tolist()
    (3, [True, False, True, False, True])
    """
    n = flags.shape[0]
    first = n
    n_starts = 0
    for i in range(n):
        if flags[i] and first == n:
            first = i
        if flags[i] or rows == 0 or rows >= max_rows:
            n_starts += 1
            out[i] = True
            rows = 0
        rows += 1
    return n_starts, rows, first


def _valid_and_bits(w):
    """``(every float64 weight is finite and >= 0, the wrapping uint64 sum of their bits)``.

    Validity by the weights' bits read as int64: those of finite non-negative floats lie from 0
    up to below infinity's; negative floats' (and -0.0's: the answer is False there) are
    negative, NaNs' and infinities' not below it. A minimum, a maximum and a sum of integers
    vectorise, and the sum costs nothing beside them (the loop waits on memory)."""
    bits = w.view(np.int64)
    ubits = w.view(np.uint64)
    lo = np.int64(0)
    hi = np.int64(0)
    total = np.uint64(0)
    for i in range(bits.shape[0]):
        x = bits[i]
        lo = min(lo, x)
        hi = max(hi, x)
        total += ubits[i]
    return lo >= 0 and hi < INF_BITS, total


def count_invalid(w):
    """How many weights are NaN, infinite or negative: 0 from a quick test of their bits where
    all are valid (:func:`_valid_and_bits`), else a branch-free count (both vectorise).

    >>> import numpy as np
    >>> int(count_invalid(np.array([1.0, -1.0, np.nan, 2.0])))
    2
    """
    n = w.shape[0]
    if _valid_and_bits(w)[0]:  # the usual case, found at about twice the speed of a count
        return 0
    valid = 0
    for lo in range(0, n, 4096):  # int32 counts per block: twice the lanes of int64 ones
        block = np.int32(0)
        for i in range(lo, min(n, lo + 4096)):
            x = w[i]
            block += np.int32((x >= 0.0) & (x < np.inf))
        valid += block
    return n - valid


def valid_bits_total(w):
    """``(every float64 weight is finite and >= 0, the wrapping uint64 sum of their bits)`` in
    one pass: the validity test of :func:`count_invalid` (False: count them with it) and, beside
    it, a fingerprint of the weights that a later pass can check exactly. Integer addition
    modulo 2**64 gives the same sum in any order, on any backend.

    >>> import numpy as np
    >>> ok, total = valid_bits_total(np.array([1.0, 2.0]))
    >>> bool(ok), int(total) == int(np.array([1.0, 2.0]).view(np.uint64).sum())
    (True, True)
    """
    return _valid_and_bits(w)


def starts_to_ids(starts, base):
    """Dense ids from start flags: ``base - 1 + cumsum(starts)``.

    >>> import numpy as np
    >>> starts_to_ids(np.array([False, True, False, True]), 5).tolist()
    [4, 5, 5, 6]
    """
    n = starts.shape[0]
    ids = np.empty(n, np.int64)
    acc = base - 1
    for i in range(n):
        acc += starts[i]
        ids[i] = acc
    return ids


def batch_stats(ids, w, positions):
    """Per-batch rows, total, max, lowest and highest position, for sorted ``ids``.

    Returns arrays ``(batch, rows, total, max, first, last)``, one entry per distinct id.
    """
    n = ids.shape[0]
    k = 0
    for i in range(n):
        if i == 0 or ids[i] != ids[i - 1]:
            k += 1
    batch = np.empty(k, np.int64)
    rows = np.zeros(k, np.int64)
    total = np.zeros(k, w.dtype)
    mx = np.zeros(k, w.dtype)
    first = np.empty(k, np.int64)
    last = np.empty(k, np.int64)
    j = -1
    for i in range(n):
        if i == 0 or ids[i] != ids[i - 1]:
            j += 1
            batch[j] = ids[i]
            first[j] = positions[i]
            last[j] = positions[i]
        rows[j] += 1
        total[j] += w[i]
        if w[i] > mx[j]:
            mx[j] = w[i]
        first[j] = min(first[j], positions[i])
        last[j] = max(last[j], positions[i])
    return batch, rows, total, mx, first, last


def flags_to_ids(flags, start, acc, ids):
    """Ids from row ``start`` on: ``acc`` plus the start flags counted from ``start`` to each row.

    The finish of a partition whose speculative start flags were kept: the true path's ids
    up to where it met the speculative one, then the flags' running count from there.

    >>> import numpy as np
    >>> ids = np.array([7, 7, 0, 0, 0])
    >>> flags_to_ids(np.array([True, False, True, False, True]), 2, 7, ids); ids.tolist()
    [7, 7, 8, 8, 9]
    """
    n = flags.shape[0]
    i = start
    while i < n and (i % 8 or not LITTLE_ENDIAN):
        acc += flags[i]
        ids[i] = acc
        i += 1
    # Eight flags (0/1 bytes) read as one word: its in-word prefix sums by shifts and adds (a
    # byte never exceeds 8, so nothing carries between bytes), for a chunk of words at a time
    # into a small buffer; then each id is ``acc`` plus its byte, with one add on ``acc``'s
    # chain per word. Both loops vectorise (one loop doing both ran at half the speed).
    words = flags[i:i + (n - i) // 8 * 8].view(np.uint64)
    out = ids[i:i + 8 * words.shape[0]]
    prefix = np.empty(FLAG_CHUNK, np.uint8)
    prefix_words = prefix.view(np.uint64)
    for c in range(0, words.shape[0], FLAG_CHUNK // 8):
        m = min(words.shape[0] - c, FLAG_CHUNK // 8)
        for k in range(m):
            x = words[c + k]
            x += x << np.uint64(8)
            x += x << np.uint64(16)
            x += x << np.uint64(32)  # byte j: flags 0..j of the word (little-endian)
            prefix_words[k] = x
        chunk = out[8 * c:8 * (c + m)]
        for k in range(m):
            base = acc
            for j in range(8):
                chunk[8 * k + j] = base + np.int64(prefix[8 * k + j])
            acc += np.int64(prefix[8 * k + 7])
    for j in range(i + 8 * words.shape[0], n):
        acc += flags[j]
        ids[j] = acc


def floor_ids_quick(w, s_in, cell_prev, has_prev, lim_f, lim_i, is_int, base, ids):
    """:func:`floor_walk`'s ids for a partition without group changes, branch-free.

    The cells of ``S = s_in + P`` (``P`` the partition's running sum from row 0, as in
    :func:`floor_walk`) never decrease, so a row starts a batch exactly when its cell
    exceeds the previous row's: ``ids[i] = base - 1 + starts so far``, with no per-row
    branch to mispredict. Without ``has_prev`` (``s_in`` is then 0) row 0 starts a batch.
    Returns ``(overflow, total)``: the row whose int64 sum overflowed (or -1), and ``P`` after
    the last row, the partition's total summed in row order (as :func:`floor_risky` sums it).

    >>> import numpy as np
    >>> ids = np.zeros(4, np.int64)
    >>> overflow, total = floor_ids_quick(np.array([3.0, 3.0, 9.0, 3.0]), 0.0, 0, False, 6.0, 0, False, 0, ids)
    >>> overflow, float(total), ids.tolist()
    (-1, 18.0, [0, 0, 1, 2])
    """
    p = s_in - s_in
    c_prev = grid_cell(s_in, lim_f, lim_i) if not has_prev else cell_prev
    count = base if not has_prev else base - 1
    # A power-of-two float limit: s / limit is the same real number as s * (1 / limit),
    # rounded once either way, so the multiplication gives the division's bits (and costs
    # a fraction of a division).
    inv = 1.0 / lim_f if lim_i == 0 else 0.0
    by_inv = lim_i == 0 and math.frexp(lim_f)[0] == 0.5 and inv < np.inf
    for i in range(w.shape[0]):
        if by_inv:
            q = np.floor((s_in + p) * inv)
            c = np.int64(CELL_MAX) if q >= CELL_MAX else np.int64(q)
        else:
            c = grid_cell(s_in + p, lim_f, lim_i)
        count += c > c_prev
        c_prev = c
        ids[i] = count
        x = w[i]
        if is_int and x > I64_MAX - (s_in + p):
            return i, p
        p += x
    return -1, p


# --------------------------------------------------------------------------- exact floor
# Floor cells of fractional weights are floor(S / limit) with S the exact sum (docs/design.md,
# "Exactness"). The partition's own running sum is kept as a double-double (hi + lo, exact
# while every TwoSum's error fits: else the kernels say so and the caller walks in Python);
# a row's cell is read off the float quotient unless that lies within its error bound of an
# integer, and then decided exactly by the sign of S - k * limit as an expansion.
EXACT_CELLS = 2.0**52  # beyond this many cells k * limit is no longer exact as two floats
SPLITTER = 134217729.0  # 2**27 + 1: Veltkamp's split of a float into two 26-bit halves
SPLIT_SAFE = 2.0**990  # products below this split and multiply without overflow
LIMIT_TINY = 2.0**-960  # limits above this keep k * limit's error term a normal float


def _two_sum(a, b):
    """``(s, e)`` with ``s = fl(a + b)`` and ``s + e = a + b`` exactly (Knuth's TwoSum)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _two_prod(a, b):
    """``(p, e)`` with ``p = fl(a * b)`` and ``p + e = a * b`` exactly (Dekker), for products
    that neither overflow nor underflow (see ``SPLIT_SAFE``, ``LIMIT_TINY``)."""
    p = a * b
    t = SPLITTER * a
    ah = t - (t - a)
    al = a - ah
    t = SPLITTER * b
    bh = t - (t - b)
    bl = b - bh
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def _grow(e, m, b):
    """Add ``b`` to the expansion ``e[:m]`` (non-overlapping floats, increasing magnitude) in
    place, exactly, dropping zeros (Shewchuk's Grow-Expansion); returns its new length."""
    q = b
    k = 0
    for i in range(m):
        q, h = _two_sum(q, e[i])
        if h != 0.0:
            e[k] = h
            k += 1
    if q != 0.0:
        e[k] = q
        k += 1
    return k


def _at_or_above(b_exp, nb, ph, pl, c, lim, scratch):
    """Whether ``B + ph + pl >= c * lim`` exactly (``B`` the expansion ``b_exp[:nb]``)."""
    th, tl = _two_prod(float(c), lim)
    for i in range(nb):
        scratch[i] = b_exp[i]
    m = _grow(scratch, nb, ph)
    m = _grow(scratch, m, pl)
    m = _grow(scratch, m, -th)
    m = _grow(scratch, m, -tl)
    return m == 0 or scratch[m - 1] > 0.0


def _exact_cell(b_exp, nb, ph, pl, lo, hi, lim, scratch):
    """``floor(S / lim)`` of ``S = B + ph + pl`` exactly, known to lie in ``lo..hi``."""
    c = hi
    while c > lo and not _at_or_above(b_exp, nb, ph, pl, c, lim, scratch):
        c -= 1.0
    return np.int64(c)


def _dd_add(ph, pl, x):
    """``(hi, lo, exact)``: the double-double ``ph + pl`` plus ``x``, and whether it held the sum."""
    s, e = _two_sum(ph, x)
    t, e2 = _two_sum(pl, e)
    s, t = _two_sum(s, t)
    return s, t, e2 == 0.0


def _dd_sum(w, lo, hi, ph, pl):
    """``ph + pl`` plus ``w[lo:hi]`` as a double-double, summed in four interleaved lanes (the
    exact sum does not depend on the order; the lanes keep four additions in flight):
    ``(hi, lo, exact)``."""
    a0, a1, a2, a3 = ph, 0.0, 0.0, 0.0
    b0, b1, b2, b3 = pl, 0.0, 0.0, 0.0
    ok = True
    i = lo
    while i + 4 <= hi:
        a0, b0, e0 = _dd_add(a0, b0, w[i])
        a1, b1, e1 = _dd_add(a1, b1, w[i + 1])
        a2, b2, e2 = _dd_add(a2, b2, w[i + 2])
        a3, b3, e3 = _dd_add(a3, b3, w[i + 3])
        ok = ok & e0 & e1 & e2 & e3
        i += 4
    for t in range(i, hi):
        a0, b0, e0 = _dd_add(a0, b0, w[t])
        ok = ok & e0
    a0, b0, e0 = _dd_add(a0, b0, a1)
    a0, b0, e1 = _dd_add(a0, b0, b1)
    a0, b0, e2 = _dd_add(a0, b0, a2)
    a0, b0, e3 = _dd_add(a0, b0, b2)
    ok = ok & e0 & e1 & e2 & e3
    a0, b0, e0 = _dd_add(a0, b0, a3)
    a0, b0, e1 = _dd_add(a0, b0, b3)
    return a0, b0, ok & e0 & e1


def floor_exact_sum(w, lo, hi):
    """The exact sum of ``w[lo:hi]`` as a double-double: ``(hi, lo, exact)`` (not exact: it
    needs more than two floats).

    >>> import numpy as np
    >>> h, l, ok = floor_exact_sum(np.array([0.1, 0.2, 0.3]), 0, 3)
    >>> from fractions import Fraction
    >>> ok and Fraction(h) + Fraction(l) == Fraction(0.1) + Fraction(0.2) + Fraction(0.3)
    True
    """
    return _dd_sum(w, lo, hi, 0.0, 0.0)


def floor_exact_walk(w, newgrp, b_exp, nb, b_f, cell_prev, has_prev, lim, out, ids, base, scratch, want_sum):
    """:func:`floor_walk` with exact cells: ``S`` is the exact sum ``B + P`` (``B`` the carried
    exact sum as the expansion ``b_exp[:nb]``, ``b_f`` its nearest float; ``P`` the partition's
    running sum), restarted at 0 at each group change. ``scratch`` holds ``nb + 4`` floats.

    Each row's cell is the floor of the float quotient ``q`` of ``b_f + p`` (``p`` the float
    running sum, with a running bound on its error) unless ``q`` lies within its error bound of
    an integer; only then is ``P`` summed exactly as a double-double (from the last row where it
    was, so the exact sums cost what they walk) and the cell decided by the sign of
    ``S - k * lim``. ``want_sum`` completes the exact sum at the end.

    Returns ``(n_starts, hi, lo, reset, cell_last, ok, p)``: ``hi + lo`` is S after the last
    row minus B where no group started (``reset`` false), the last group's own sum otherwise
    (with ``want_sum``); ``ok`` is false where the exact sum left two floats or the cells
    ``EXACT_CELLS`` (the caller then walks exactly in Python); ``p`` the float running sum.

    >>> import numpy as np
    >>> out, ids, sc = np.zeros(4, np.bool_), np.zeros(4, np.int64), np.zeros(8)
    >>> r = floor_exact_walk(np.array([0.3, 0.7, 0.1, 0.1]), np.zeros(4, np.bool_), np.zeros(1), 0, 0.0, 0, False, 0.1, out, ids, 0, sc, True)
    >>> ids.tolist(), bool(r[5])
    ([0, 1, 2, 3], True)
    """
    n = w.shape[0]
    record = out.shape[0] > 0
    write = ids.shape[0] > 0
    inv = 1.0 / lim
    inv_up = inv * (1.0 + 2.0**-40)
    p = 0.0
    err = 0.0  # |P - p| <= err: each addition rounds by at most 2**-53 of its result
    eb = b_f * 2.0**-52  # |B - b_f| (rounding to nearest: 2**-53 of it)
    ph = 0.0  # P of rows j.. before, exactly: ph + pl
    pl = 0.0
    j = 0
    c = np.int64(cell_prev)
    n_starts = 0
    reset = False
    for i in range(n):
        if newgrp[i] or not has_prev:
            nb = 0
            b_f = 0.0
            eb = 0.0
            reset = True
            p = 0.0
            err = 0.0
            ph = 0.0
            pl = 0.0
            j = i
            has_prev = True
            start = True
        else:
            start = False
        q = (b_f + p) * inv
        if not q < EXACT_CELLS:
            return n_starts, ph, pl, reset, c, False, p
        # |S / lim - q| <= d: B's and p's errors over lim (with inv's rounding), and 2**-48 of
        # q for the roundings of the sum, the product, q - d and q + d (some 5 ulps)
        d = (eb + err) * inv_up + q * 2.0**-48
        lo = np.floor(q - d)
        hi = np.floor(q + d)
        if lo == hi:
            c_new = np.int64(lo)
        else:
            ph, pl, exact = _dd_sum(w, j, i, ph, pl)
            if not exact:
                return n_starts, ph, pl, reset, c, False, p
            j = i
            c_new = _exact_cell(b_exp, nb, ph, pl, float(lo), float(hi), lim, scratch)
        if not start:
            start = c_new != c
        if start:
            n_starts += 1
            if record:
                out[i] = True
        if write:
            ids[i] = base + n_starts - 1
        c = c_new
        p += w[i]
        err += p * 2.0**-52
    if want_sum:
        ph, pl, exact = _dd_sum(w, j, n, ph, pl)
        if not exact:
            return n_starts, ph, pl, reset, c, False, p
    return n_starts, ph, pl, reset, c, True, p


def _exact_near(w, j, i, ph, pl, b_exp, nb, lo, hi, lim, scratch):
    """A row near a cell boundary: the double-double ``ph + pl`` of rows ``j..`` advanced to row
    ``i``, and the row's exact cell in ``lo..hi``: ``(ph, pl, cell, ok)`` (compiled apart, so
    that the common path's loop stays small)."""
    ph, pl, ok = _dd_sum(w, j, i, ph, pl)
    if not ok:
        return ph, pl, np.int64(-1), False
    return ph, pl, _exact_cell(b_exp, nb, ph, pl, lo, hi, lim, scratch), True


def floor_exact_ids(w, b_exp, nb, b_f, cell_prev, has_prev, lim, base, ids, scratch):
    """:func:`floor_exact_walk`'s ids for a partition without group changes (the finish of
    plain weights), as :func:`floor_ids_quick` is :func:`floor_walk`'s: the same float test and
    exact decisions, in a loop with no other branch. Returns false where the exact sums
    left two floats or the cells ``EXACT_CELLS`` (nothing is then decided).

    >>> import numpy as np
    >>> ids = np.zeros(4, np.int64)
    >>> floor_exact_ids(np.array([0.3, 0.7, 0.1, 0.1]), np.zeros(1), 0, 0.0, 0, False, 0.1, 0, ids, np.zeros(8)), ids.tolist()
    (True, [0, 1, 2, 3])
    """
    if not has_prev:
        nb = 0
        b_f = 0.0
    inv = 1.0 / lim
    inv_up = inv * (1.0 + 2.0**-40)
    eb = b_f * 2.0**-52
    p = 0.0
    err = 0.0
    ph = 0.0
    pl = 0.0
    j = 0
    c_prev = np.int64(cell_prev) if has_prev else np.int64(-1)  # row 0 starts a batch
    count = np.int64(base) - 1
    for i in range(w.shape[0]):
        q = (b_f + p) * inv
        if not q < EXACT_CELLS:
            return False
        d = (eb + err) * inv_up + q * 2.0**-48  # as in floor_exact_walk
        lo = np.floor(q - d)
        hi = np.floor(q + d)
        if lo == hi:
            c = np.int64(lo)
        else:
            ph, pl, c, ok = _exact_near(w, j, i, ph, pl, b_exp, nb, lo, hi, lim, scratch)
            if not ok:
                return False
            j = i
        count += c != c_prev
        c_prev = c
        ids[i] = count
        p += w[i]
        err += p * 2.0**-52
    return True


def floor_exact_risky(w, seg_len, lim, h_out, l_out, w_out):
    """:func:`floor_risky` with exact sums, for :func:`floor_exact_walk`'s cells: the rows of
    the first ``seg_len`` weights (but the last) of at least ``lim`` (only those can skip a
    cell), each with the exact running sum before it as ``hi + lo``.

    Returns ``(count, last_hi, last_lo, total_hi, total_lo, ok)``: the sum before the
    segment's last row and the segment's total, exact; ``ok`` false where a sum left two floats.

    >>> import numpy as np
    >>> h, l, wo = np.zeros(3), np.zeros(3), np.zeros(3)
    >>> r = floor_exact_risky(np.array([0.1, 0.5, 0.2]), 3, 0.3, h, l, wo)
    >>> int(r[0]), h[:1].tolist(), wo[:1].tolist(), bool(r[5])
    (1, [0.1], [0.5], True)
    """
    ph = 0.0
    pl = 0.0
    last_h = 0.0
    last_l = 0.0
    k = 0
    for i in range(seg_len):
        wi = w[i]
        last_h = ph
        last_l = pl
        if i < seg_len - 1 and wi >= lim:
            h_out[k] = ph
            l_out[k] = pl
            w_out[k] = wi
            k += 1
        ph, pl, exact = _dd_add(ph, pl, wi)
        if not exact:
            return k, last_h, last_l, ph, pl, False
    return k, last_h, last_l, ph, pl, True


def floats_integral(w):
    """Whether every weight is integer-valued and their total below ``EXACT_SUMS``: then every
    running sum is exact in float64, whatever the order (summed in blocks that vectorise).

    >>> import numpy as np
    >>> floats_integral(np.array([1.0, 2.0])), floats_integral(np.array([0.5]))
    (True, False)
    """
    n = w.shape[0]
    total = 0.0
    for lo in range(0, n, FLOOR_BLOCK):
        s, bad, frac, _ = _block_float(w, lo, min(n, lo + FLOOR_BLOCK), np.inf)
        total += s
        if frac or not total < EXACT_SUMS:
            return False
    return True
