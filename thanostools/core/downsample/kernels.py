"""Batch kernels of downsampling: raw → 5m and aggregates → 1h over many series per call (FORMATS.md §7.4, §7.5).

Output layout shared by both kernels: the samples of every output AggrChunk's five sub-chunks are written
back to back into ``out_t``/``out_v`` (count, sum, min, max, counter), and ``bounds[5k + a]`` is where
aggregate ``a`` of output chunk ``k`` starts (``bounds[5K]`` = end). An empty range means "absent".
Per output chunk: ``mint``/``maxt`` (window timestamps) and ``nsamples`` (samples of the count sub-chunk);
per input series: ``series_out[s]:series_out[s+1]`` are its output chunks.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from thanostools.core.downsample.windows import (
    MAX_FLOAT,
    RAW_ASSUMED_INTERVAL,
    target_chunk_count,
    window_end,
)
from thanostools.core.kernels._jit import njit
from thanostools.core.kernels.arrays import grow
from thanostools.core.kernels.binary import put_uvarint
from thanostools.core.kernels.dtypes import F64, I64, U8, U64
from thanostools.core.kernels.stale import STALE_NAN_BITS_U64

ENC_XOR = 1
AGG_COUNT, AGG_SUM, AGG_MIN, AGG_MAX, AGG_COUNTER = 0, 1, 2, 3, 4
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


# --- the output layout: samples out_t/out_v, per output chunk 5 aggregate bounds, mint, maxt, count ---------


@njit
def _new_output(n_in: int) -> tuple[I64, F64, I64, I64, I64, I64]:
    out_t = np.empty(n_in // 4 + 64, dtype=np.int64)
    return (out_t, np.empty(out_t.shape[0], dtype=np.float64), np.empty(64, dtype=np.int64),
            np.empty(16, dtype=np.int64), np.empty(16, dtype=np.int64), np.empty(16, dtype=np.int64))


@njit
def _room(out_t: I64, out_v: F64, bounds: I64, mint: I64, maxt: I64, nsamples: I64, samples: int,
          k: int) -> tuple[I64, F64, I64, I64, I64, I64]:
    """The output arrays grown to hold ``samples`` samples and output chunk ``k``."""
    return (grow(out_t, samples), grow(out_v, samples), grow(bounds, 5 * k + 6),
            grow(mint, k + 1), grow(maxt, k + 1), grow(nsamples, k + 1))


@njit
def _finish(out_t: I64, out_v: F64, bounds: I64, mint: I64, maxt: I64, nsamples: I64, series_out: I64, used: int,
            k: int) -> tuple[I64, F64, I64, I64, I64, I64, I64]:
    """``used`` samples and ``k`` output chunks, trimmed, with the closing bound."""
    bounds = grow(bounds, 5 * k + 1)
    bounds[5 * k] = used
    return (out_t[:used].copy(), out_v[:used].copy(), bounds[: 5 * k + 1].copy(), mint[:k].copy(),
            maxt[:k].copy(), nsamples[:k].copy(), series_out)


@njit
def _count_windows(ft: I64, fv: F64, lo: int, hi: int, res: int, last_t: int, skip_nan: bool) -> int:
    n = 0
    next_t = -1
    for i in range(lo, hi):
        if skip_nan and np.isnan(fv[i]):
            continue
        if ft[i] > next_t:
            n += 1
            next_t = min(window_end(ft[i], res), last_t)
    return n


@njit
def _walk_raw(ft: I64, fv: F64, lo: int, hi: int, res: int, last_t: int, nw: int, out_t: I64, out_v: F64,
              base: int) -> int:
    """Aggregate the non-NaN samples lo:hi window by window into the five sub-chunk ranges that start at
    ``base`` (count, sum, min, max each ``nw`` long, then the counter: first raw, windows, last raw).
    Returns the timestamp of the last window."""
    ctr = base + 4 * nw
    total = 0
    counter = 0.0
    last = 0.0
    cnt = 0
    sm = 0.0
    mn = MAX_FLOAT
    mx = -MAX_FLOAT
    next_t = -1
    w = 0
    for i in range(lo, hi):
        v = fv[i]
        if np.isnan(v):
            continue
        if total == 0:
            out_t[ctr] = ft[i]
            out_v[ctr] = v
        if ft[i] > next_t:
            if next_t != -1:
                _emit_raw(out_t, out_v, base, nw, w, next_t, cnt, sm, mn, mx, counter)
                w += 1
            cnt = 0
            sm = 0.0
            mn = MAX_FLOAT
            mx = -MAX_FLOAT
            next_t = min(window_end(ft[i], res), last_t)
        if total > 0:
            counter += v if v < last else v - last
        else:
            counter = v
        last = v
        sm += v
        cnt += 1
        total += 1
        if v < mn:
            mn = v
        if v > mx:
            mx = v
    _emit_raw(out_t, out_v, base, nw, w, next_t, cnt, sm, mn, mx, counter)
    out_t[ctr + nw + 1] = next_t
    out_v[ctr + nw + 1] = last
    return next_t


@njit
def _emit_raw(out_t: I64, out_v: F64, base: int, nw: int, w: int, t: int, cnt: int, sm: float, mn: float,
              mx: float, counter: float) -> None:
    vals = (float(cnt), sm, mn, mx)
    for a in range(4):
        out_t[base + a * nw + w] = t
        out_v[base + a * nw + w] = vals[a]
    out_t[base + 4 * nw + 1 + w] = t
    out_v[base + 4 * nw + 1 + w] = counter


@njit
def _expand_raw(t: I64, vb: U64, vf: F64, chunk_off: I64, c0: int, c1: int, ft: I64, fv: F64) -> int:
    """Samples of chunks c0:c1 without StaleNaN and without samples older than the last kept one of the same
    chunk (each chunk starts that bound at 0, so negative timestamps go). Returns how many were kept."""
    n = 0
    for c in range(c0, c1):
        last_t = 0
        for i in range(chunk_off[c], chunk_off[c + 1]):
            if vb[i] == STALE_NAN_BITS_U64 or t[i] < last_t:
                continue
            ft[n] = t[i]
            fv[n] = vf[i]
            n += 1
            last_t = t[i]
    return n


@njit
def downsample_raw_kernel(
    t: I64, vb: U64, vf: F64, chunk_off: I64, series_chunks: I64, res: int, fixed_chunks: int
) -> tuple[I64, F64, I64, I64, I64, I64, I64]:
    """Raw → ``res`` for every series: series s owns chunks ``series_chunks[s]:series_chunks[s+1]``, chunk c
    owns samples ``chunk_off[c]:chunk_off[c+1]``. ``fixed_chunks`` > 0 replaces the target chunk count (tests).

    Returns (out_t, out_v, bounds, mint, maxt, nsamples, series_out) in the module's output layout.
    """
    n_series = series_chunks.shape[0] - 1
    ft = np.empty(t.shape[0], dtype=np.int64)
    fv = np.empty(t.shape[0], dtype=np.float64)
    out_t, out_v, bounds, mint, maxt, nsamples = _new_output(t.shape[0])
    series_out = np.zeros(n_series + 1, dtype=np.int64)
    used = 0
    k = 0
    for s in range(n_series):
        n = _expand_raw(t, vb, vf, chunk_off, series_chunks[s], series_chunks[s + 1], ft, fv)
        if n > 0:
            nch = fixed_chunks
            if nch <= 0:
                nch = target_chunk_count(ft[0], ft[n - 1], RAW_ASSUMED_INTERVAL, res, n)
            batch = n // nch + 1
            p = 0
            while p < n:
                j = min(batch, n - p)
                w_end = window_end(ft[p + j - 1], res)
                while p + j < n and ft[p + j] <= w_end:
                    j += 1
                lo = p
                hi = p + j
                p = hi
                while lo < hi and np.isnan(fv[lo]):
                    lo += 1
                if lo == hi:
                    continue  # the batch held only NaNs
                while np.isnan(fv[hi - 1]):
                    hi -= 1
                nw = _count_windows(ft, fv, lo, hi, res, ft[hi - 1], True)
                out_t, out_v, bounds, mint, maxt, nsamples = _room(out_t, out_v, bounds, mint, maxt, nsamples,
                                                                   used + 5 * nw + 2, k)
                maxt[k] = _walk_raw(ft, fv, lo, hi, res, ft[hi - 1], nw, out_t, out_v, used)
                mint[k] = out_t[used]
                nsamples[k] = nw
                for a in range(5):
                    bounds[5 * k + a] = used + a * nw
                used += 5 * nw + 2
                k += 1
        series_out[s + 1] = k
    return _finish(out_t, out_v, bounds, mint, maxt, nsamples, series_out, used, k)


# --- aggregates of aggregates ------------------------------------------------------------------------


@njit
def _expand_aggr(t: I64, vb: U64, vf: F64, off: I64, a: int, c0: int, c1: int, ft: I64, fv: F64) -> int:
    """Aggregate ``a`` of chunks c0:c1, StaleNaN and per-chunk backward samples dropped (Thanos
    expandChunkIterator, called once per chunk)."""
    n = 0
    for c in range(c0, c1):
        last_t = 0
        for i in range(off[a, c], off[a, c + 1]):
            if vb[i] == STALE_NAN_BITS_U64 or t[i] < last_t:
                continue
            ft[n] = t[i]
            fv[n] = vf[i]
            n += 1
            last_t = t[i]
    return n


@njit
def _walk_aggr(ft: I64, fv: F64, n: int, res: int, mode: int, out_t: I64, out_v: F64, o: int) -> int:
    """Window walk over ft/fv[:n] emitting one value per window (sum for count and sum, min, max, or the
    running counter); returns the number of windows written at ``o``."""
    last_t = ft[n - 1]
    counter = 0.0
    last = 0.0
    sm = 0.0
    mn = MAX_FLOAT
    mx = -MAX_FLOAT
    next_t = -1
    w = 0
    for i in range(n):
        v = fv[i]
        if ft[i] > next_t:
            if next_t != -1:
                out_t[o + w] = next_t
                out_v[o + w] = _pick(mode, sm, mn, mx, counter)
                w += 1
            sm = 0.0
            mn = MAX_FLOAT
            mx = -MAX_FLOAT
            next_t = min(window_end(ft[i], res), last_t)
        if i > 0:
            counter += v if v < last else v - last
        else:
            counter = v
        last = v
        sm += v
        if v < mn:
            mn = v
        if v > mx:
            mx = v
    out_t[o + w] = next_t
    out_v[o + w] = _pick(mode, sm, mn, mx, counter)
    return w + 1


@njit
def _pick(mode: int, sm: float, mn: float, mx: float, counter: float) -> float:
    if mode == AGG_MIN:
        return mn
    if mode == AGG_MAX:
        return mx
    if mode == AGG_COUNTER:
        return counter
    return sm


@njit
def _counter_resets(t: I64, vf: F64, off: I64, c0: int, c1: int, ft: I64, fv: F64) -> tuple[int, float]:
    """Counter sub-chunks of chunks c0:c1 through the counter-reset iterator (§7.6), then Thanos'
    expandChunkIterator (drops StaleNaN totals and negative timestamps). Returns (count, true last raw value)."""
    n = 0
    started = False
    total = 0.0
    last_t = 0
    last_v = 0.0
    kept_t = 0
    for c in range(c0, c1):
        for i in range(off[AGG_COUNTER, c], off[AGG_COUNTER, c + 1]):
            v = vf[i]
            if np.isnan(v):
                continue
            ti = t[i]
            if not started:
                started = True
                total = v
            elif ti > last_t:
                total += v - last_v if v >= last_v else v
            else:
                if ti == last_t:
                    last_v = v
                continue
            last_t = ti
            last_v = v
            # Totals are never StaleNaN (only arithmetic NaNs), so of Thanos' filter only the time bound bites.
            if ti < kept_t:
                continue
            ft[n] = ti
            fv[n] = total
            n += 1
            kept_t = ti
    return n, last_v


@njit
def downsample_aggr_kernel(
    t: I64, vb: U64, vf: F64, off: I64, series_chunks: I64, series_mint: I64, series_maxt: I64, in_res: int,
    res: int, fixed_chunks: int,
) -> tuple[I64, F64, I64, I64, I64, I64, I64]:
    """Aggregated chunks → ``res``: aggregate a of input chunk c is ``t/v[off[a, c]:off[a, c+1]]``.
    Series s owns chunks ``series_chunks[s]:series_chunks[s+1]`` and spans series_mint..series_maxt (from its
    chunk metas). Output in the module's layout."""
    n_series = series_chunks.shape[0] - 1
    ft = np.empty(t.shape[0], dtype=np.int64)
    fv = np.empty(t.shape[0], dtype=np.float64)
    out_t, out_v, bounds, mint, maxt, nsamples = _new_output(t.shape[0])
    series_out = np.zeros(n_series + 1, dtype=np.int64)
    used = 0
    k = 0
    for s in range(n_series):
        c0 = series_chunks[s]
        c1 = series_chunks[s + 1]
        if c1 > c0:
            count = 0
            for c in range(c0, c1):
                count += off[AGG_COUNT, c + 1] - off[AGG_COUNT, c]
            nch = fixed_chunks
            if nch <= 0:
                nch = target_chunk_count(series_mint[s], series_maxt[s], in_res, res, count)
            batch = max(1, (c1 - c0) // nch)
            for g0 in range(c0, c1, batch):
                g1 = min(g0 + batch, c1)
                need = used + 2
                for a in range(5):
                    need += off[a, g1] - off[a, g0]
                out_t, out_v, bounds, mint, maxt, nsamples = _room(out_t, out_v, bounds, mint, maxt, nsamples,
                                                                   need, k)
                start = used
                for a in range(4):
                    bounds[5 * k + a] = used
                    n = _expand_aggr(t, vb, vf, off, a, g0, g1, ft, fv)
                    if n > 0:
                        used += _walk_aggr(ft, fv, n, res, a, out_t, out_v, used)
                    if a == AGG_COUNT:
                        nsamples[k] = used - start
                bounds[5 * k + 4] = used
                n, last_raw = _counter_resets(t, vf, off, g0, g1, ft, fv)
                if n > 0:
                    out_t[used] = ft[0]
                    out_v[used] = fv[0]
                    w = _walk_aggr(ft, fv, n, res, AGG_COUNTER, out_t, out_v, used + 1)
                    out_t[used + 1 + w] = out_t[used + w]
                    out_v[used + 1 + w] = last_raw
                    used += w + 2
                if used == start:
                    continue  # nothing at all in this group
                lo = INT64_MAX
                hi = INT64_MIN
                for a in range(5):
                    a0 = bounds[5 * k + a]
                    a1 = bounds[5 * k + a + 1] if a < 4 else used
                    if a == AGG_COUNTER and a1 > a0:
                        a0 += 1  # the first and last counter samples are not windows
                        a1 -= 1
                    for i in range(a0, a1):
                        lo = min(lo, out_t[i])
                        hi = max(hi, out_t[i])
                mint[k] = lo
                maxt[k] = hi
                k += 1
        series_out[s + 1] = k
    return _finish(out_t, out_v, bounds, mint, maxt, nsamples, series_out, used, k)


# --- AggrChunk payloads ----------------------------------------------------------------------------


def assemble_aggr_chunks(sub_buf: U8, sub_off: I64, present: NDArray[np.bool_]) -> tuple[U8, I64]:
    """AggrChunk payloads from five encoded XOR sub-chunks per chunk (sub-chunk i is
    ``sub_buf[sub_off[i]:sub_off[i+1]]``); see :func:`assemble_aggr_payloads`."""
    return assemble_aggr_payloads(sub_buf, sub_off[:-1], sub_off[1:], np.full(present.shape[0], ENC_XOR, np.uint8),
                                  present)


@njit
def assemble_aggr_payloads(data: U8, starts: I64, ends: I64, encodings: U8,
                           present: NDArray[np.bool_]) -> tuple[U8, I64]:
    """AggrChunk payloads from five encoded sub-chunks per chunk (sub-chunk i is ``data[starts[i]:ends[i]]``
    with encoding ``encodings[i]``): ``uvarint(len) ‖ encoding ‖ data`` each, ``uvarint(0)`` for absent ones.
    Returns (buf, offsets) with chunk k at ``buf[offsets[k]:offsets[k+1]]``."""
    k = present.shape[0] // 5
    total = 0
    for i in range(5 * k):
        total += ends[i] - starts[i] + 11 if present[i] else 1
    out = np.empty(total, dtype=np.uint8)
    offsets = np.empty(k + 1, dtype=np.int64)
    p = 0
    for c in range(k):
        offsets[c] = p
        for a in range(5):
            i = 5 * c + a
            if not present[i]:
                out[p] = 0
                p += 1
                continue
            length = ends[i] - starts[i]
            p = put_uvarint(out, p, length)
            out[p] = encodings[i]
            out[p + 1 : p + 1 + length] = data[starts[i] : ends[i]]
            p += 1 + length
    offsets[k] = p
    return out[:p].copy(), offsets
