"""Numba kernels of the PromQL evaluator.

Every kernel works on whole batches: all series of a selection (concatenated samples plus
``offsets``) and all evaluation steps at once. Window bounds are indices into the concatenated
sample arrays; a window is ``t[lo:hi]``.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from thanostools.core.kernels._jit import njit
from thanostools.core.kernels.dtypes import F64, I64, U64
from thanostools.core.kernels.stale import STALE_NAN_BITS_U64 as STALE_NAN_BITS

Flags = NDArray[np.bool_]  # presence / selection

# Range-function codes understood by :func:`range_function`.
FN_COUNT, FN_SUM, FN_AVG, FN_MIN, FN_MAX, FN_STDDEV, FN_STDVAR = 0, 1, 2, 3, 4, 5, 6
FN_LAST, FN_FIRST, FN_PRESENT, FN_TS_LAST, FN_TS_FIRST, FN_TS_MAX, FN_TS_MIN = 7, 8, 9, 10, 11, 12, 13
FN_CHANGES, FN_RESETS, FN_RATE, FN_INCREASE, FN_DELTA, FN_IRATE, FN_IDELTA = 14, 15, 16, 17, 18, 19, 20
FN_DERIV, FN_PREDICT_LINEAR, FN_QUANTILE, FN_MAD, FN_DES = 21, 22, 23, 24, 25

# Aggregation codes understood by :func:`group_reduce`.
AGG_SUM, AGG_AVG, AGG_COUNT, AGG_MIN, AGG_MAX, AGG_GROUP, AGG_STDDEV, AGG_STDVAR = 0, 1, 2, 3, 4, 5, 6, 7


@njit
def kahan_inc(inc: float, total: float, c: float) -> tuple[float, float]:
    """One step of Neumaier-compensated summation; returns the new sum and compensation."""
    t = total + inc
    if math.isinf(t):
        c = 0.0
    elif abs(total) >= abs(inc):
        c += (total - t) + inc
    else:
        c += (inc - t) + total
    return t, c


@njit
def instant_lookup(t: I64, v: F64, vbits: U64, offsets: I64, ref: I64,
                   lookback: int, with_ts: bool, out_v: F64, out_p: Flags, out_t: I64) -> None:
    """Newest sample in ``(ref - lookback, ref]`` per series and step; a StaleNaN there means absent.

    ``ref`` must be non-decreasing (evaluation times are). ``out_t`` gets the sample times when ``with_ts``.
    """
    n = offsets.shape[0] - 1
    steps = ref.shape[0]
    for i in range(n):
        a = offsets[i]
        b = offsets[i + 1]
        j = a
        for k in range(steps):
            r = ref[k]
            while j < b and t[j] <= r:
                j += 1
            if j == a:
                continue
            idx = j - 1
            if t[idx] <= r - lookback or vbits[idx] == STALE_NAN_BITS:
                continue
            out_v[i, k] = v[idx]
            out_p[i, k] = True
            if with_ts:
                out_t[i, k] = t[idx]


@njit
def window_bounds(t: I64, offsets: I64, ref: I64, rng: int,
                  lo: I64, hi: I64) -> None:
    """Left-open windows ``(ref - rng, ref]`` as index bounds into ``t`` (``ref`` non-decreasing)."""
    n = offsets.shape[0] - 1
    steps = ref.shape[0]
    for i in range(n):
        b = offsets[i + 1]
        p = offsets[i]
        q = offsets[i]
        for k in range(steps):
            r = ref[k]
            start = r - rng
            while p < b and t[p] <= start:
                p += 1
            if q < p:
                q = p
            while q < b and t[q] <= r:
                q += 1
            lo[i, k] = p
            hi[i, k] = q


@njit
def _sum(v: F64, a: int, b: int) -> float:
    total = 0.0
    c = 0.0
    for j in range(a, b):
        total, c = kahan_inc(v[j], total, c)
    if math.isinf(total):
        return total
    return total + c


@njit
def _avg(v: F64, a: int, b: int) -> float:
    total = v[a]
    count = 1.0
    mean = 0.0
    c = 0.0
    incremental = False
    for j in range(a + 1, b):
        count += 1.0
        f = v[j]
        if not incremental:
            nt, nc = kahan_inc(f, total, c)
            if not math.isinf(nt):
                total = nt
                c = nc
                continue
            incremental = True
            mean = total / (count - 1.0)
            c = c / (count - 1.0)
        q = (count - 1.0) / count
        mean, c = kahan_inc(f / count, q * mean, q * c)
    if incremental:
        return mean + c
    return float(total / count + c / count)


@njit
def _compare(v: F64, t: I64, a: int, b: int, mode: int) -> tuple[float, int]:
    """min (0), max (1), min keeping the last tie (2), max keeping the last tie (3)."""
    best = v[a]
    best_t = t[a]
    for j in range(a, b):
        f = v[j]
        if mode == 0:
            take = f < best or math.isnan(best)
        elif mode == 1:
            take = f > best or math.isnan(best)
        elif mode == 2:
            take = f <= best or math.isnan(best)
        else:
            take = f >= best or math.isnan(best)
        if take:
            best = f
            best_t = t[j]
    return best, best_t


@njit
def _variance(v: F64, a: int, b: int) -> float:
    count = 0.0
    mean = 0.0
    cmean = 0.0
    aux = 0.0
    caux = 0.0
    for j in range(a, b):
        f = v[j]
        count += 1.0
        delta = f - (mean + cmean)
        mean, cmean = kahan_inc(delta / count, mean, cmean)
        aux, caux = kahan_inc(delta * (f - (mean + cmean)), aux, caux)
    return (aux + caux) / count


@njit
def sorted_nan_first(x: F64) -> F64:
    """Ascending order with NaNs first, like Go's sort over Prometheus' value heap."""
    nans = 0
    for f in x:
        if math.isnan(f):
            nans += 1
    out = np.empty(x.shape[0], np.float64)
    out[:nans] = np.nan
    rest = np.sort(x[~np.isnan(x)])
    out[nans:] = rest
    return out


@njit
def quantile_sorted(q: float, s: F64) -> float:
    """Prometheus' quantile over values already sorted NaN-first."""
    n = s.shape[0]
    if n == 0 or math.isnan(q):
        return np.nan
    if q < 0:
        return -np.inf
    if q > 1:
        return np.inf
    rank = q * (n - 1)
    lower = max(0.0, math.floor(rank))
    upper = min(n - 1.0, lower + 1.0)
    weight = rank - math.floor(rank)
    return float(s[int(lower)] * (1 - weight) + s[int(upper)] * weight)


@njit
def _mad(v: F64, a: int, b: int) -> float:
    x = v[a:b]
    for f in x:
        if math.isnan(f):
            return np.nan
    median = quantile_sorted(0.5, np.sort(x))
    return quantile_sorted(0.5, np.sort(np.abs(x - median)))


@njit
def _changes(v: F64, a: int, b: int, resets: bool) -> float:
    count = 0.0
    prev = v[a]
    for j in range(a + 1, b):
        cur = v[j]
        if resets:
            if cur < prev:
                count += 1.0
        elif cur != prev and not (math.isnan(cur) and math.isnan(prev)):
            count += 1.0
        prev = cur
    return count


@njit
def _extrapolated_rate(t: I64, v: F64, a: int, b: int, range_start: int, range_end: int,
                       rng: int, is_counter: bool, is_rate: bool, has_resets: bool) -> float:
    """rate/increase/delta of a window with at least two samples (Prometheus 3.x extrapolation)."""
    n1 = b - a - 1
    first_t = t[a]
    last_t = t[b - 1]
    result = v[b - 1] - v[a]
    if is_counter and has_resets:
        prev = v[a]
        for j in range(a + 1, b):
            if v[j] < prev:
                result += prev
            prev = v[j]
    return float(result * extrapolation_factor(first_t, last_t, n1, range_start, range_end, rng, is_counter,
                                               is_rate, v[a], result))


@njit
def extrapolation_factor(first_t: int, last_t: int, intervals: int, range_start: int, range_end: int, rng: int,
                         is_counter: bool, is_rate: bool, first_value: float, result: float) -> float:
    """What rate/increase/delta multiply the sampled difference by (Prometheus 3.x): extrapolated to the range
    boundaries (at most half an average interval beyond a sample when the series seems to start or end there; a
    counter never below zero), per second for rate. Shared by float and histogram windows."""
    to_start = (first_t - range_start) / 1000.0
    to_end = (range_end - last_t) / 1000.0
    sampled = (last_t - first_t) / 1000.0
    avg_gap = sampled / intervals
    threshold = avg_gap * 1.1
    if to_start >= threshold:
        to_start = avg_gap / 2.0
    if is_counter:
        to_zero = to_start
        if result > 0 and first_value >= 0:
            to_zero = sampled * (first_value / result)
        if to_zero < to_start:
            to_start = to_zero
    if to_end >= threshold:
        to_end = avg_gap / 2.0
    factor = (sampled + to_start + to_end) / sampled
    if is_rate:
        factor /= rng / 1000.0
    return float(factor)


@njit
def _instant_value(t: I64, v: F64, a: int, b: int, is_rate: bool) -> tuple[float, bool]:
    last = v[b - 1]
    prev = v[b - 2]
    interval = t[b - 1] - t[b - 2]
    if interval == 0:
        return 0.0, False
    result = last if is_rate and last < prev else last - prev
    if is_rate:
        result /= interval / 1000.0
    return result, True


@njit
def linear_regression(t: I64, v: F64, a: int, b: int, intercept_time: int) -> tuple[float, float]:
    n = 0.0
    sx = 0.0
    cx = 0.0
    sy = 0.0
    cy = 0.0
    sxy = 0.0
    cxy = 0.0
    sx2 = 0.0
    cx2 = 0.0
    init_y = v[a]
    const_y = True
    for j in range(a, b):
        y = v[j]
        if const_y and j > a and y != init_y:
            const_y = False
        n += 1.0
        x = (t[j] - intercept_time) / 1e3
        sx, cx = kahan_inc(x, sx, cx)
        sy, cy = kahan_inc(y, sy, cy)
        sxy, cxy = kahan_inc(x * y, sxy, cxy)
        sx2, cx2 = kahan_inc(x * x, sx2, cx2)
    if const_y:
        if math.isinf(init_y):
            return np.nan, np.nan
        return 0.0, init_y
    sx += cx
    sy += cy
    sxy += cxy
    sx2 += cx2
    cov = sxy - sx * sy / n
    var = sx2 - sx * sx / n
    slope = cov / var
    return slope, sy / n - slope * sx / n


@njit
def _des(v: F64, a: int, b: int, sf: float, tf: float) -> float:
    s0 = 0.0
    s1 = v[a]
    trend = v[a + 1] - v[a]
    for i in range(1, b - a):
        x = sf * v[a + i]
        if i > 1:
            trend = tf * (s1 - s0) + (1 - tf) * trend
        y = (1 - sf) * (s1 + trend)
        s0 = s1
        s1 = x + y
    return float(s1)


@njit
def _reset_prefix(v: F64) -> I64:
    """``p[j]``: how many ``i < j`` have ``v[i] < v[i-1]``; a window ``[a, b)`` has ``p[b] - p[a+1]`` resets."""
    p = np.zeros(v.shape[0] + 1, np.int64)
    for j in range(1, v.shape[0]):
        p[j + 1] = p[j] + (1 if v[j] < v[j - 1] else 0)
    return p


@njit
def drop_stale(t: I64, vbits: U64, offsets: I64) -> tuple[I64, U64, I64]:
    """Series samples without StaleNaN markers (the inputs themselves when there are none)."""
    stale = 0
    for x in vbits:
        if x == STALE_NAN_BITS:
            stale += 1
    if stale == 0:
        return t, vbits, offsets
    n = offsets.shape[0] - 1
    t2 = np.empty(t.shape[0] - stale, np.int64)
    v2 = np.empty(t.shape[0] - stale, np.uint64)
    off2 = np.zeros(n + 1, np.int64)
    w = 0
    for i in range(n):
        for j in range(offsets[i], offsets[i + 1]):
            if vbits[j] != STALE_NAN_BITS:
                t2[w] = t[j]
                v2[w] = vbits[j]
                w += 1
        off2[i + 1] = w
    return t2, v2, off2


@njit
def range_function(code: int, t: I64, v: F64, lo: I64, hi: I64, ref: I64,
                   ets: I64, rng: int, p1: F64, p2: F64,
                   out: F64, outp: Flags) -> None:
    """Apply one range-vector function to every (series, step) window."""
    n, steps = lo.shape
    resets = _reset_prefix(v) if code in (FN_RATE, FN_INCREASE) else np.zeros(1, np.int64)
    for i in range(n):
        for k in range(steps):
            a = lo[i, k]
            b = hi[i, k]
            cnt = b - a
            if cnt == 0:
                continue
            ok = True
            res = 0.0
            if code == FN_COUNT:
                res = float(cnt)
            elif code == FN_SUM:
                res = _sum(v, a, b)
            elif code == FN_AVG:
                res = _avg(v, a, b)
            elif code == FN_MIN:
                res = _compare(v, t, a, b, 0)[0]
            elif code == FN_MAX:
                res = _compare(v, t, a, b, 1)[0]
            elif code == FN_STDDEV:
                res = math.sqrt(_variance(v, a, b))
            elif code == FN_STDVAR:
                res = _variance(v, a, b)
            elif code == FN_LAST:
                res = v[b - 1]
            elif code == FN_FIRST:
                res = v[a]
            elif code == FN_PRESENT:
                res = 1.0
            elif code == FN_TS_LAST:
                res = t[b - 1] / 1000.0
            elif code == FN_TS_FIRST:
                res = t[a] / 1000.0
            elif code == FN_TS_MAX:
                res = _compare(v, t, a, b, 3)[1] / 1000.0
            elif code == FN_TS_MIN:
                res = _compare(v, t, a, b, 2)[1] / 1000.0
            elif code == FN_CHANGES:
                res = _changes(v, a, b, False)
            elif code == FN_RESETS:
                res = _changes(v, a, b, True)
            elif code in (FN_RATE, FN_INCREASE, FN_DELTA):
                if cnt < 2:
                    ok = False
                else:
                    counter = code != FN_DELTA
                    has_resets = counter and resets[b] - resets[a + 1] > 0
                    res = _extrapolated_rate(t, v, a, b, ref[k] - rng, ref[k], rng, counter, code == FN_RATE,
                                             has_resets)
            elif code in (FN_IRATE, FN_IDELTA):
                if cnt < 2:
                    ok = False
                else:
                    res, ok = _instant_value(t, v, a, b, code == FN_IRATE)
            elif code == FN_DERIV:
                if cnt < 2:
                    ok = False
                else:
                    res = linear_regression(t, v, a, b, t[a])[0]
            elif code == FN_PREDICT_LINEAR:
                if cnt < 2:
                    ok = False
                else:
                    slope, intercept = linear_regression(t, v, a, b, ets[k])
                    res = slope * p1[k] + intercept
            elif code == FN_QUANTILE:
                res = quantile_sorted(p1[k], sorted_nan_first(v[a:b]))
            elif code == FN_MAD:
                res = _mad(v, a, b)
            elif code == FN_DES:
                if cnt < 2:
                    ok = False
                else:
                    res = _des(v, a, b, p1[k], p2[k])
            if ok:
                out[i, k] = res
                outp[i, k] = True


STEP_BLOCK = 16  # steps handled together, so a row's values are read contiguously


@njit
def group_reduce(code: int, vals: F64, pres: Flags, gid: I64, ngroups: int,
                 out: F64, outp: Flags) -> None:
    """sum/avg/count/min/max/group/stddev/stdvar per group and step, rows in input order."""
    if code in (AGG_SUM, AGG_COUNT, AGG_MIN, AGG_MAX, AGG_GROUP):
        _reduce_in_output(code, vals, pres, gid, out, outp)
    else:
        _reduce_blocked(code, vals, pres, gid, ngroups, out, outp)


@njit
def _reduce_in_output(code: int, vals: F64, pres: Flags, gid: I64, out: F64,
                      outp: Flags) -> None:
    """The reductions whose running state is the result itself (plus a compensation for sum), row by row."""
    n, steps = vals.shape
    kc = np.zeros(out.shape) if code == AGG_SUM else np.zeros((1, 1))
    for i in range(n):
        g = gid[i]
        for k in range(steps):
            if not pres[i, k]:
                continue
            f = vals[i, k]
            if not outp[g, k]:
                outp[g, k] = True
                out[g, k] = 1.0 if code in (AGG_COUNT, AGG_GROUP) else f
            elif code == AGG_SUM:
                out[g, k], kc[g, k] = kahan_inc(f, out[g, k], kc[g, k])
            elif code == AGG_COUNT:
                out[g, k] += 1.0
            elif (code == AGG_MAX and (out[g, k] < f or math.isnan(out[g, k]))) or (
                    code == AGG_MIN and (out[g, k] > f or math.isnan(out[g, k]))):
                out[g, k] = f
    if code == AGG_SUM:
        for g in range(out.shape[0]):
            for k in range(steps):
                if outp[g, k]:
                    out[g, k] += kc[g, k]


@njit
def _reduce_blocked(code: int, vals: F64, pres: Flags, gid: I64, ngroups: int,
                    out: F64, outp: Flags) -> None:
    """avg/stddev/stdvar: running state per group for a block of steps at a time."""
    n, steps = vals.shape
    kb = STEP_BLOCK
    value = np.zeros((ngroups, kb))
    kc = np.zeros((ngroups, kb))
    mean = np.zeros((ngroups, kb))
    count = np.zeros((ngroups, kb))
    incremental = np.zeros((ngroups, kb), np.bool_)
    for k0 in range(0, steps, kb):
        k1 = min(k0 + kb, steps)
        count[:] = 0.0
        kc[:] = 0.0
        incremental[:] = False
        for i in range(n):
            g = gid[i]
            for k in range(k0, k1):
                if pres[i, k]:
                    _reduce_step(code, g, k - k0, vals[i, k], value, kc, mean, count, incremental)
        for g in range(ngroups):
            for k in range(k0, k1):
                c = k - k0
                if count[g, c] != 0.0:
                    outp[g, k] = True
                    out[g, k] = _reduce_result(code, value[g, c], kc[g, c], mean[g, c], count[g, c],
                                               incremental[g, c])


@njit
def _reduce_step(code: int, g: int, c: int, f: float, value: F64, kc: F64, mean: F64,
                 count: F64, incremental: Flags) -> None:
    if count[g, c] == 0.0:
        count[g, c] = 1.0
        value[g, c] = f
        mean[g, c] = f
        if code in (AGG_STDDEV, AGG_STDVAR):
            value[g, c] = np.nan if (math.isnan(f) or math.isinf(f)) else 0.0
        elif code == AGG_GROUP:
            value[g, c] = 1.0
        return
    count[g, c] += 1.0
    if code == AGG_SUM:
        value[g, c], kc[g, c] = kahan_inc(f, value[g, c], kc[g, c])
    elif code == AGG_AVG:
        value[g, c], kc[g, c], mean[g, c], incremental[g, c] = _avg_step(
            f, value[g, c], kc[g, c], mean[g, c], count[g, c], incremental[g, c])
    elif code == AGG_MAX:
        if value[g, c] < f or math.isnan(value[g, c]):
            value[g, c] = f
    elif code == AGG_MIN:
        if value[g, c] > f or math.isnan(value[g, c]):
            value[g, c] = f
    elif code in (AGG_STDDEV, AGG_STDVAR):
        delta = f - mean[g, c]
        mean[g, c] += delta / count[g, c]
        value[g, c] += delta * (f - mean[g, c])


@njit
def _reduce_result(code: int, value: float, kc: float, mean: float, count: float, incremental: bool) -> float:
    if code == AGG_SUM:
        return value + kc
    if code == AGG_AVG:
        return mean + kc if incremental else (value + kc) / count
    if code == AGG_COUNT:
        return count
    if code == AGG_STDVAR:
        return value / count
    if code == AGG_STDDEV:
        return math.sqrt(value / count)
    return value


@njit
def _avg_step(f: float, value: float, kc: float, mean: float, count: float,
              incremental: bool) -> tuple[float, float, float, bool]:
    """One more value into a running average: (value, compensation, mean, incremental)."""
    if not incremental:
        nv, nc = kahan_inc(f, value, kc)
        if not math.isinf(nv):
            return nv, nc, mean, False
        incremental = True
        mean = value / (count - 1.0)
        kc = kc / (count - 1.0)
    if math.isinf(mean):
        if math.isinf(f) and (mean > 0) == (f > 0):
            return value, kc, mean, incremental
        if not math.isinf(f) and not math.isnan(f):
            return value, kc, mean, incremental
    cur = mean + kc
    mean, kc = kahan_inc(f / count - cur / count, mean, kc)
    return value, kc, mean, incremental


@njit
def group_quantile(vals: F64, pres: Flags, order: I64, gstart: I64, q: F64,
                   out: F64, outp: Flags) -> None:
    """Quantile per group and step; ``order[gstart[g]:gstart[g+1]]`` are the rows of group g."""
    steps = vals.shape[1]
    ngroups = gstart.shape[0] - 1
    buf = np.empty(order.shape[0], np.float64)
    for k in range(steps):
        for g in range(ngroups):
            m = 0
            for j in range(gstart[g], gstart[g + 1]):
                i = order[j]
                if pres[i, k]:
                    buf[m] = vals[i, k]
                    m += 1
            if m == 0:
                continue
            out[g, k] = quantile_sorted(q[k], sorted_nan_first(buf[:m]))
            outp[g, k] = True


SMALL_K = 64  # topk/bottomk/limitk up to this k keep a running top list instead of sorting each group


@njit
def _select_key(mode: int, f: float, seen: int) -> float:
    if mode == 0:
        return np.inf if math.isnan(f) else -f
    if mode == 1:
        return np.inf if math.isnan(f) else f
    return float(seen)


@njit
def group_select(mode: int, vals: F64, pres: Flags, order: I64, gstart: I64,
                 k_per_step: I64, sel: Flags, rank: I64) -> None:
    """topk (0), bottomk (1) or limitk (2): mark selected rows and their output rank per step.

    Ties keep the earlier row, as Prometheus' heap does; NaN ranks below every number.
    """
    if k_per_step.shape[0] and k_per_step.max() > SMALL_K:
        _group_select_sorting(mode, vals, pres, order, gstart, k_per_step, sel, rank)
        return
    steps = vals.shape[1]
    ngroups = gstart.shape[0] - 1
    kb = STEP_BLOCK
    keys = np.empty((kb, SMALL_K + 1), np.float64)
    rows = np.empty((kb, SMALL_K + 1), np.int64)
    held = np.zeros(kb, np.int64)
    seen = np.zeros(kb, np.int64)
    for g in range(ngroups):
        for k0 in range(0, steps, kb):
            k1 = min(k0 + kb, steps)
            held[:] = 0
            seen[:] = 0
            for j in range(gstart[g], gstart[g + 1]):
                i = order[j]
                for k in range(k0, k1):
                    kk = k_per_step[k]
                    if kk < 1 or not pres[i, k]:
                        continue
                    c = k - k0
                    key = _select_key(mode, vals[i, k], seen[c])
                    seen[c] += 1
                    held[c] = _keep_top(keys[c], rows[c], held[c], kk, key, i)
            for k in range(k0, k1):
                c = k - k0
                for r in range(held[c]):
                    sel[rows[c, r], k] = True
                    rank[rows[c, r], k] = r


@njit
def _keep_top(keys: F64, rows: I64, held: int, kk: int, key: float, row: int) -> int:
    """Insert (key, row) into the ascending list of the ``kk`` best so far (earlier rows win ties)."""
    if held == kk and not key < keys[held - 1]:
        return held
    p = held if held < kk else kk - 1
    while p > 0 and key < keys[p - 1]:
        keys[p] = keys[p - 1]
        rows[p] = rows[p - 1]
        p -= 1
    keys[p] = key
    rows[p] = row
    return held + 1 if held < kk else held


@njit
def _group_select_sorting(mode: int, vals: F64, pres: Flags, order: I64, gstart: I64,
                          k_per_step: I64, sel: Flags, rank: I64) -> None:
    steps = vals.shape[1]
    ngroups = gstart.shape[0] - 1
    idx = np.empty(order.shape[0], np.int64)
    key = np.empty(order.shape[0], np.float64)
    for k in range(steps):
        kk = k_per_step[k]
        if kk < 1:
            continue
        for g in range(ngroups):
            m = 0
            for j in range(gstart[g], gstart[g + 1]):
                i = order[j]
                if pres[i, k]:
                    idx[m] = i
                    key[m] = _select_key(mode, vals[i, k], m)
                    m += 1
            if m == 0:
                continue
            perm = np.argsort(key[:m], kind="mergesort")
            take = min(kk, m)
            for r in range(take):
                i = idx[perm[r]]
                sel[i, k] = True
                rank[i, k] = r


@njit
def bucket_quantile(q: F64, bounds: F64, vals: F64, pres: Flags, order: I64,
                    gstart: I64, fraction: bool, lower: F64, upper: F64,
                    out: F64, outp: Flags, forced: Flags) -> None:
    """Classic histogram_quantile / histogram_fraction per group (rows sorted by upper bound)."""
    steps = vals.shape[1]
    ngroups = gstart.shape[0] - 1
    ub = np.empty(order.shape[0], np.float64)
    cnt = np.empty(order.shape[0], np.float64)
    for k in range(steps):
        for g in range(ngroups):
            m = 0
            for j in range(gstart[g], gstart[g + 1]):
                i = order[j]
                if not pres[i, k]:
                    continue
                b = bounds[i]
                if m > 0 and ub[m - 1] == b:
                    cnt[m - 1] += vals[i, k]
                else:
                    ub[m] = b
                    cnt[m] = vals[i, k]
                    m += 1
            if m == 0:
                continue
            outp[g, k] = True
            if fraction:
                out[g, k] = _bucket_fraction(lower[k], upper[k], ub[:m], cnt[:m])
            else:
                res, fixed = _bucket_quantile(q[k], ub[:m], cnt[:m])
                out[g, k] = res
                if fixed:
                    forced[g] = True


@njit
def _almost_equal(a: float, b: float, eps: float) -> bool:
    min_normal = 2.2250738585072014e-308
    if a == b:
        return True
    abs_sum = abs(a) + abs(b)
    diff = abs(a - b)
    if a == 0 or b == 0 or abs_sum < min_normal:
        return diff < eps * min_normal
    return diff / min(abs_sum, 1.7976931348623157e308) < eps


@njit
def _monotonic(cnt: F64) -> bool:
    forced = False
    prev = cnt[0]
    for i in range(1, cnt.shape[0]):
        cur = cnt[i]
        if cur == prev:
            continue
        if _almost_equal(prev, cur, 1e-12):
            cnt[i] = prev
            continue
        if cur < prev:
            cnt[i] = prev
            forced = True
            continue
        prev = cur
    return forced


@njit
def _bucket_quantile(q: float, ub: F64, cnt: F64) -> tuple[float, bool]:
    if math.isnan(q):
        return np.nan, False
    if q < 0:
        return -np.inf, False
    if q > 1:
        return np.inf, False
    m = ub.shape[0]
    if not (math.isinf(ub[m - 1]) and ub[m - 1] > 0):
        return np.nan, False
    forced = _monotonic(cnt)
    if m < 2:
        return np.nan, False
    total = cnt[m - 1]
    if total == 0:
        return np.nan, False
    rank = q * total
    b = m - 1
    for i in range(m - 1):
        if cnt[i] >= rank:
            b = i
            break
    if b == m - 1:
        return ub[m - 2], forced
    if b == 0 and ub[0] <= 0:
        return ub[0], forced
    start = 0.0
    end = ub[b]
    count = cnt[b]
    if b > 0:
        start = ub[b - 1]
        count -= cnt[b - 1]
        rank -= cnt[b - 1]
    return start + (end - start) * (rank / count), forced


@njit
def _rank_at(x: float, ub: F64, cnt: F64) -> float:
    """Observations at or below ``x``, interpolating linearly inside finite buckets.

    The lowest bucket starts at 0 when its upper bound is positive, else at -Inf; a value inside
    the -Inf bucket ranks above all of it, a value inside the +Inf bucket below all of it.
    """
    m = ub.shape[0]
    prev_count = 0.0
    for i in range(m):
        lower = (0.0 if ub[0] > 0 else -np.inf) if i == 0 else ub[i - 1]
        upper = ub[i]
        c = cnt[i] - prev_count
        if x <= lower:
            return float(prev_count)
        if x < upper:
            if math.isinf(lower):
                return float(cnt[i])
            if math.isinf(upper):
                return float(prev_count)
            return float(prev_count + c * (x - lower) / (upper - lower))
        prev_count = cnt[i]
    return float(cnt[m - 1])


@njit
def _bucket_fraction(lower: float, upper: float, ub: F64, cnt: F64) -> float:
    m = ub.shape[0]
    if not (math.isinf(ub[m - 1]) and ub[m - 1] > 0):
        return np.nan
    _monotonic(cnt)
    total = cnt[m - 1]
    if total == 0 or math.isnan(lower) or math.isnan(upper):
        return np.nan
    if lower >= upper:
        return 0.0
    return float((_rank_at(upper, ub, cnt) - _rank_at(lower, ub, cnt)) / total)


@njit
def compensated_sum(v: F64) -> float:
    """Neumaier-compensated sum of ``v`` (Prometheus' ``kahansum``)."""
    return _sum(v, 0, v.shape[0])


@njit
def neumaier_segments(v: F64, starts: I64) -> tuple[F64, F64]:
    """Per segment ``v[starts[i]:starts[i+1]]``, in order: the Neumaier running total and compensation, element by
    element as a histogram sum adds them (the compensation restarts at 0 where the total is infinite)."""
    n = starts.shape[0] - 1
    totals = np.zeros(n)
    comps = np.zeros(n)
    for i in range(n):
        total = 0.0
        comp = 0.0
        for j in range(starts[i], starts[i + 1]):
            inc = v[j]
            t = total + inc
            step = ((total - t) + inc) if abs(total) >= abs(inc) else ((inc - t) + total)
            comp = 0.0 if math.isinf(t) else comp + step
            total = t
        totals[i] = total
        comps[i] = comp
    return totals, comps
