"""Batch kernels of native-histogram downsampling (FORMATS.md §7.4 step 5, §7.5 for histogram AggrChunks).

Histograms arrive as float histograms already reduced to their group's smallest schema, buckets as sorted
absolute indices with values (positive and negative side each: ``*_off`` per sample, ``*_idx``/``*_val``).
A group is the input of one output AggrChunk. Within a group the aggregator keeps three histograms — the
running counter, the window sum and the previous sample — as dense arrays over the group's index range, with
a presence flag per bucket: Prometheus' Add/Sub keep every bucket either operand had (no compaction), so
"present" is not "non-zero".
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from thanostools.core.downsample.windows import RAW_ASSUMED_INTERVAL, target_chunk_count, window_end
from thanostools.core.kernels._jit import njit
from thanostools.core.kernels.arrays import grow
from thanostools.core.kernels.dtypes import F64, I64

# in-memory counter-reset hints (chunkenc.histogram.HINT_*)
HINT_UNKNOWN, HINT_RESET, HINT_NOT_RESET, HINT_GAUGE = 0, 1, 2, 3
U8s = NDArray[np.uint8]
Bools = NDArray[np.bool_]


@njit
def raw_batches(t: I64, run_off: I64, resolution: int) -> I64:
    """Where Thanos' DownsampleRaw cuts each run of samples into batches (one AggrChunk each): bounds over
    ``t``, runs ``run_off[r]:run_off[r+1]`` (§7.4 step 3; NaNs are still in, as in Go)."""
    out = np.zeros(1, dtype=np.int64)
    n_out = 1
    for r in range(run_off.shape[0] - 1):
        lo, hi = run_off[r], run_off[r + 1]
        if hi == lo:
            continue
        num = target_chunk_count(t[lo], t[hi - 1], RAW_ASSUMED_INTERVAL, resolution, hi - lo)
        size = (hi - lo) // num + 1
        p = lo
        while p < hi:
            j = min(p + size, hi)
            w = window_end(t[j - 1], resolution)
            while j < hi and t[j] <= w:
                j += 1
            out = grow(out, n_out + 1)
            out[n_out] = j
            n_out += 1
            p = j
    return out[:n_out].copy()


@njit
def reduce_buckets(off: I64, idx: I64, val: F64, delta: I64) -> tuple[I64, I64, F64]:
    """Each sample's buckets at ``delta[s]`` schema steps lower: index ``((i - 1) >> delta) + 1``, values of
    merged buckets added in index order (Prometheus' reduceResolution)."""
    n = off.shape[0] - 1
    out_off = np.zeros(n + 1, dtype=np.int64)
    out_idx = np.empty(idx.shape[0], dtype=np.int64)
    out_val = np.empty(val.shape[0], dtype=np.float64)
    w = 0
    for s in range(n):
        d = delta[s]
        first = w
        for j in range(off[s], off[s + 1]):
            k = ((idx[j] - 1) >> d) + 1
            if w > first and out_idx[w - 1] == k:
                out_val[w - 1] += val[j]
            else:
                out_idx[w] = k
                out_val[w] = val[j]
                w += 1
        out_off[s + 1] = w
    return out_off, out_idx[:w].copy(), out_val[:w].copy()


@njit
def _combine_hints(h: int, other: int) -> int:
    """The counter-reset hint of ``h + other`` (Prometheus FloatHistogram.Add)."""
    if h == HINT_GAUGE:
        return h
    if h == other:
        return h
    if other == HINT_GAUGE:
        return HINT_GAUGE
    return HINT_UNKNOWN


@njit
def _load(v: F64, has: Bools, base: int, off: I64, idx: I64, val: F64, s: int) -> None:
    v[:] = 0.0
    has[:] = False
    for j in range(off[s], off[s + 1]):
        v[idx[j] - base] = val[j]
        has[idx[j] - base] = True


@njit
def _buckets_reset(cur: F64, cur_has: Bools, prev: F64, prev_has: Bools) -> bool:
    """A populated bucket of ``prev`` is missing from ``cur`` or holds less (Prometheus detectReset)."""
    for i in range(prev.shape[0]):  # noqa: SIM110 (numba compiles no generators)
        if prev_has[i] and prev[i] != 0.0 and (not cur_has[i] or cur[i] < prev[i]):
            return True
    return False


@njit
def _add_into(acc: F64, acc_has: Bools, x: F64, x_has: Bools) -> None:
    for i in range(acc.shape[0]):
        if x_has[i]:
            acc[i] = acc[i] + x[i] if acc_has[i] else x[i]
            acc_has[i] = True


@njit
def _sub_into(acc: F64, acc_has: Bools, x: F64, x_has: Bools) -> None:
    for i in range(acc.shape[0]):
        if x_has[i]:
            acc[i] = acc[i] - x[i] if acc_has[i] else -x[i]
            acc_has[i] = True


@njit
def _copy(pv: NDArray[np.float64], ph: NDArray[np.bool_], nv: NDArray[np.float64], nh: NDArray[np.bool_],
          src: int, dst: int) -> None:
    pv[dst, :] = pv[src]
    ph[dst, :] = ph[src]
    nv[dst, :] = nv[src]
    nh[dst, :] = nh[src]


@njit
def _emit(v: F64, has: Bools, base: int, o_idx: I64, o_val: F64, w: int) -> tuple[I64, F64, int]:
    o_idx = grow(o_idx, w + v.shape[0])
    o_val = grow(o_val, w + v.shape[0])
    for i in range(v.shape[0]):
        if has[i]:
            o_idx[w] = base + i
            o_val[w] = v[i]
            w += 1
    return o_idx, o_val, w


@njit
def _side_range(off: I64, idx: I64, lo: int, hi: int) -> tuple[int, int]:
    if off[hi] == off[lo]:
        return 0, 0
    mn = idx[off[lo]]
    mx = idx[off[lo]]
    for j in range(off[lo], off[hi]):
        mn = min(mn, idx[j])
        mx = max(mx, idx[j])
    return mn, mx - mn + 1


@njit
def aggregate_histograms(
    group_off: I64, group_schema: I64, resolution: int, t: I64, hint: U8s, schema: I64, count: F64, zc: F64,
    total: F64, p_off: I64, p_idx: I64, p_val: F64, n_off: I64, n_idx: I64, n_val: F64,
) -> tuple[I64, I64, I64, F64, F64, F64, I64, I64, F64, I64]:
    """Thanos' window walk with the histogram aggregator over every group.

    Per emitted window (``win_off[g]:win_off[g+1]`` of group g): its timestamp, sample count, and two
    histograms — ``h = 0`` the running counter, ``h = 1`` the window sum — with count/zero count/sum at
    ``[2w + h]`` and buckets ``b_idx/b_val[b_off[2 * (2w + h) + side] : b_off[2 * (2w + h) + side + 1]]``
    (side 0 positive, 1 negative). ``counter_hint[g]``: the counter's hint at its first window.
    """
    n_groups = group_off.shape[0] - 1
    win_off = np.zeros(n_groups + 1, dtype=np.int64)
    win_t = np.zeros(16, dtype=np.int64)
    win_n = np.zeros(16, dtype=np.int64)
    h_cnt = np.zeros(32, dtype=np.float64)
    h_zc = np.zeros(32, dtype=np.float64)
    h_sum = np.zeros(32, dtype=np.float64)
    b_off = np.zeros(65, dtype=np.int64)
    b_idx = np.zeros(64, dtype=np.int64)
    b_val = np.zeros(64, dtype=np.float64)
    counter_hint = np.zeros(n_groups, dtype=np.int64)
    nw = 0
    nb = 0
    for g in range(n_groups):
        lo, hi = group_off[g], group_off[g + 1]
        win_off[g + 1] = nw
        if hi == lo:
            continue
        pbase, plen = _side_range(p_off, p_idx, lo, hi)
        nbase, nlen = _side_range(n_off, n_idx, lo, hi)
        # state: [0] counter, [1] window sum, [2] previous, [3] current sample, [4] delta
        pv = np.zeros((5, plen), dtype=np.float64)
        ph = np.zeros((5, plen), dtype=np.bool_)
        nv = np.zeros((5, nlen), dtype=np.float64)
        nh = np.zeros((5, nlen), dtype=np.bool_)
        c_cnt = c_zc = c_sum = 0.0
        s_cnt = s_zc = s_sum = 0.0
        prev_cnt = prev_zc = prev_sum = 0.0
        c_hint = HINT_UNKNOWN
        in_window = 0
        seen = 0
        next_t = -1
        last_t = t[hi - 1]
        for s in range(lo, hi + 1):
            if s == hi or t[s] > next_t:
                if next_t != -1 and seen > 0:
                    win_t = grow(win_t, nw + 1)
                    win_n = grow(win_n, nw + 1)
                    h_cnt = grow(h_cnt, 2 * nw + 2)
                    h_zc = grow(h_zc, 2 * nw + 2)
                    h_sum = grow(h_sum, 2 * nw + 2)
                    b_off = grow(b_off, 4 * nw + 5)
                    win_t[nw] = next_t
                    win_n[nw] = in_window
                    h_cnt[2 * nw], h_zc[2 * nw], h_sum[2 * nw] = c_cnt, c_zc, c_sum
                    h_cnt[2 * nw + 1], h_zc[2 * nw + 1], h_sum[2 * nw + 1] = s_cnt, s_zc, s_sum
                    q = 4 * nw
                    b_idx, b_val, nb = _emit(pv[0], ph[0], pbase, b_idx, b_val, nb)
                    b_off[q + 1] = nb
                    b_idx, b_val, nb = _emit(nv[0], nh[0], nbase, b_idx, b_val, nb)
                    b_off[q + 2] = nb
                    b_idx, b_val, nb = _emit(pv[1], ph[1], pbase, b_idx, b_val, nb)
                    b_off[q + 3] = nb
                    b_idx, b_val, nb = _emit(nv[1], nh[1], nbase, b_idx, b_val, nb)
                    b_off[q + 4] = nb
                    if win_off[g + 1] == nw:
                        counter_hint[g] = c_hint
                    nw += 1
                if s == hi:
                    break
                in_window = 0
                pv[1, :] = 0.0
                ph[1, :] = False
                nv[1, :] = 0.0
                nh[1, :] = False
                next_t = min(window_end(t[s], resolution), last_t)
            _load(pv[3], ph[3], pbase, p_off, p_idx, p_val, s)
            _load(nv[3], nh[3], nbase, n_off, n_idx, n_val, s)
            if seen == 0:
                _copy(pv, ph, nv, nh, 3, 0)
                c_cnt, c_zc, c_sum = count[s], zc[s], total[s]
                c_hint = int(hint[s])
            else:
                reset = False
                if hint[s] == HINT_RESET:
                    reset = True
                elif hint[s] == HINT_UNKNOWN:
                    # the sample's own schema: a higher one than the group's is a reset (Thanos compares the
                    # histogram before its reduction with the reduced previous one)
                    reset = (count[s] < prev_cnt or schema[s] > group_schema[g] or zc[s] < prev_zc
                             or _buckets_reset(pv[3], ph[3], pv[2], ph[2])
                             or _buckets_reset(nv[3], nh[3], nv[2], nh[2]))
                if reset:
                    c_cnt += count[s]
                    c_zc += zc[s]
                    c_sum += total[s]
                    _add_into(pv[0], ph[0], pv[3], ph[3])
                    _add_into(nv[0], nh[0], nv[3], nh[3])
                else:
                    c_cnt += count[s] - prev_cnt
                    c_zc += zc[s] - prev_zc
                    c_sum += total[s] - prev_sum
                    # delta = sample - previous first, then counter += delta (the order of Go's float ops)
                    _copy(pv, ph, nv, nh, 3, 4)
                    _sub_into(pv[4], ph[4], pv[2], ph[2])
                    _sub_into(nv[4], nh[4], nv[2], nh[2])
                    _add_into(pv[0], ph[0], pv[4], ph[4])
                    _add_into(nv[0], nh[0], nv[4], nh[4])
                c_hint = _combine_hints(c_hint, int(hint[s]))
            if in_window == 0:
                s_cnt, s_zc, s_sum = count[s], zc[s], total[s]
                _copy(pv, ph, nv, nh, 3, 1)
            else:
                s_cnt += count[s]
                s_zc += zc[s]
                s_sum += total[s]
                _add_into(pv[1], ph[1], pv[3], ph[3])
                _add_into(nv[1], nh[1], nv[3], nh[3])
            _copy(pv, ph, nv, nh, 3, 2)
            prev_cnt, prev_zc, prev_sum = count[s], zc[s], total[s]
            in_window += 1
            seen += 1  # noqa: SIM113 (a count of samples aggregated, not of loop steps)
        win_off[g + 1] = nw
    return (win_off, win_t[:nw].copy(), win_n[:nw].copy(), h_cnt[: 2 * nw].copy(), h_zc[: 2 * nw].copy(),
            h_sum[: 2 * nw].copy(), b_off[: 4 * nw + 1].copy(), b_idx[:nb].copy(), b_val[:nb].copy(),
            counter_hint)


@njit
def window_sums(t: I64, v: F64, group_off: I64, resolution: int) -> tuple[I64, I64, F64]:
    """The window walk summing values per window in every group (the count aggregate of 5m → 1h):
    (win_off per group, window timestamps, sums)."""
    n_groups = group_off.shape[0] - 1
    win_off = np.zeros(n_groups + 1, dtype=np.int64)
    out_t = np.zeros(max(1, t.shape[0]), dtype=np.int64)
    out_v = np.zeros(max(1, t.shape[0]), dtype=np.float64)
    w = 0
    for g in range(n_groups):
        lo, hi = group_off[g], group_off[g + 1]
        if hi > lo:
            last_t = t[hi - 1]
            next_t = -1
            acc = 0.0
            for s in range(lo, hi):
                if t[s] > next_t:
                    if next_t != -1:
                        out_t[w] = next_t
                        out_v[w] = acc
                        w += 1
                    acc = 0.0
                    next_t = min(window_end(t[s], resolution), last_t)
                acc += v[s]
            out_t[w] = next_t
            out_v[w] = acc
            w += 1
        win_off[g + 1] = w
    return win_off, out_t[:w].copy(), out_v[:w].copy()


@njit
def _add_delta(acc: F64, acc_has: Bools, cur: F64, cur_has: Bools, last: F64, last_has: Bools) -> None:
    """acc += cur - last, keeping every bucket any of them has."""
    for i in range(acc.shape[0]):
        if cur_has[i] or last_has[i]:
            d = (cur[i] if cur_has[i] else 0.0) - (last[i] if last_has[i] else 0.0)
            acc[i] = acc[i] + d if acc_has[i] else d
            acc_has[i] = True


@njit
def counter_totals(
    group_off: I64, t: I64, hint: U8s, schema: I64, count: F64, zc: F64, total: F64, p_off: I64, p_idx: I64,
    p_val: F64, n_off: I64, n_idx: I64, n_val: F64,
) -> tuple[I64, F64, F64, F64, U8s, I64, I64, F64]:
    """The counter-reset iterator (FORMATS.md §7.6) over histogram counters: per group (one series' counter
    histograms in time order, buckets already in one schema; ``schema`` is each sample's own) the running total.

    A sample is a reset when its hint says so, its own schema is finer than the previous one's, or a count or a
    populated bucket dropped (Prometheus detectReset); a reset adds the sample, anything else its difference to
    the previous sample. Earlier timestamps are skipped, an equal one replaces the previous sample. Gauge samples
    pass unchanged. Returns the emitted rows, their count, zero count, sum and hints, and buckets
    ``b_idx/b_val[b_off[2e + side] : b_off[2e + side + 1]]`` (side 0 positive, 1 negative).
    """
    n = t.shape[0]
    rows = np.empty(n, dtype=np.int64)
    o_cnt = np.empty(n, dtype=np.float64)
    o_zc = np.empty(n, dtype=np.float64)
    o_sum = np.empty(n, dtype=np.float64)
    o_hint = np.empty(n, dtype=np.uint8)
    b_off = np.zeros(2 * n + 1, dtype=np.int64)
    b_idx = np.zeros(16, dtype=np.int64)
    b_val = np.zeros(16, dtype=np.float64)
    m = 0
    nb = 0
    for g in range(group_off.shape[0] - 1):
        lo, hi = group_off[g], group_off[g + 1]
        if hi == lo:
            continue
        pbase, plen = _side_range(p_off, p_idx, lo, hi)
        nbase, nlen = _side_range(n_off, n_idx, lo, hi)
        # [0] running total, [1] previous sample, [2] current sample
        pv = np.zeros((3, plen), dtype=np.float64)
        ph = np.zeros((3, plen), dtype=np.bool_)
        nv = np.zeros((3, nlen), dtype=np.float64)
        nh = np.zeros((3, nlen), dtype=np.bool_)
        tot_c = tot_z = tot_s = 0.0
        last_c = last_z = last_s = 0.0
        last_t = 0
        last_schema = 0
        first = True
        for s in range(lo, hi):
            _load(pv[2], ph[2], pbase, p_off, p_idx, p_val, s)
            _load(nv[2], nh[2], nbase, n_off, n_idx, n_val, s)
            gauge = hint[s] == HINT_GAUGE
            if not first and not gauge and t[s] <= last_t:
                if t[s] == last_t:
                    _copy(pv, ph, nv, nh, 2, 1)
                    last_c, last_z, last_s, last_schema = count[s], zc[s], total[s], schema[s]
                continue
            if first or gauge:
                _copy(pv, ph, nv, nh, 2, 0)
                tot_c, tot_z, tot_s = count[s], zc[s], total[s]
            elif (hint[s] == HINT_RESET or schema[s] > last_schema or count[s] < last_c or zc[s] < last_z
                  or _buckets_reset(pv[2], ph[2], pv[1], ph[1]) or _buckets_reset(nv[2], nh[2], nv[1], nh[1])):
                _add_into(pv[0], ph[0], pv[2], ph[2])
                _add_into(nv[0], nh[0], nv[2], nh[2])
                tot_c += count[s]
                tot_z += zc[s]
                tot_s += total[s]
            else:
                _add_delta(pv[0], ph[0], pv[2], ph[2], pv[1], ph[1])
                _add_delta(nv[0], nh[0], nv[2], nh[2], nv[1], nh[1])
                tot_c += count[s] - last_c
                tot_z += zc[s] - last_z
                tot_s += total[s] - last_s
            _copy(pv, ph, nv, nh, 2, 1)
            last_c, last_z, last_s, last_schema, last_t = count[s], zc[s], total[s], schema[s], t[s]
            rows[m] = s
            o_cnt[m], o_zc[m], o_sum[m] = tot_c, tot_z, tot_s
            o_hint[m] = HINT_GAUGE if gauge else (HINT_UNKNOWN if first else HINT_NOT_RESET)
            b_idx, b_val, nb = _emit(pv[0], ph[0], pbase, b_idx, b_val, nb)
            b_off[2 * m + 1] = nb
            b_idx, b_val, nb = _emit(nv[0], nh[0], nbase, b_idx, b_val, nb)
            b_off[2 * m + 2] = nb
            m += 1
            first = False
    return (rows[:m].copy(), o_cnt[:m].copy(), o_zc[:m].copy(), o_sum[:m].copy(), o_hint[:m].copy(),
            b_off[: 2 * m + 1].copy(), b_idx[:nb].copy(), b_val[:nb].copy())
