"""Kernels for PromQL's ``anchored`` and ``smoothed`` selector modifiers (promql-extended-range-selectors).

A window ``(ref - rng, ref]`` of one series is extended at its edges: ``anchored`` takes the last sample
at or before the window start (within the lookback delta) as the value at the start and the last sample
in the window as the value at the end; ``smoothed`` interpolates linearly at both edges between the
samples around them (within the lookback delta on either side). No extrapolation follows.
"""

from __future__ import annotations

import math

import numpy as np

from thanostools.core.kernels._jit import njit
from thanostools.core.kernels.dtypes import F64, I64

RATE, INCREASE, DELTA, CHANGES, RESETS = 0, 1, 2, 3, 4  # the ones up to DELTA are differences of values


@njit
def _after(t: I64, a: int, b: int, x: int) -> int:
    """First index in ``[a, b)`` whose time is after ``x`` (``b`` if none)."""
    return a + int(np.searchsorted(t[a:b], x, side="right"))


@njit
def _interpolate(t: I64, v: F64, p1: int, p2: int, at: int, counter: bool) -> float:
    y1 = float(v[p1])
    y2 = float(v[p2])
    if counter and y2 < y1:
        y1 = 0.0  # a counter reset between the two: the counter restarted from zero
    return y1 + (y2 - y1) * float(at - t[p1]) / float(t[p2] - t[p1])


@njit
def _anchored(t: I64, v: F64, a: int, b: int, mint: int, maxt: int, func: int, range_s: float) -> float:
    """``a``: the first sample within the lookback delta before the window, ``b``: the first after the window."""
    lo = _after(t, a, b, mint)
    # With only samples before the window (changes/resets), Prometheus' search for the start sample
    # leaves out the last one, so the last two samples are compared.
    start = max(a, b - 2) if lo == b else max(a, lo - 1)
    hi = b
    if func > DELTA:
        count = 0
        for j in range(start + 1, hi):
            cur = v[j]
            prev = v[j - 1]
            changed = cur != prev and not (math.isnan(cur) and math.isnan(prev))
            count += int(changed if func == CHANGES else cur < prev)
        return float(count)
    result = float(v[hi - 1] - v[start])
    if func != DELTA:
        for j in range(start + 1, hi):
            if v[j] < v[j - 1]:
                result += v[j - 1]
    return result / range_s if func == RATE else result


@njit
def _smoothed(t: I64, v: F64, a: int, b: int, mint: int, maxt: int, func: int, range_s: float,
              outp_ok: np.ndarray) -> float:
    counter = func != DELTA
    first = max(a, _after(t, a, b - 1, mint) - 1)
    last = b - 1
    for j in range(a, b - 1):
        if t[j] >= maxt:
            last = j
            break
    if t[last] <= mint or t[first] > maxt:
        outp_ok[0] = False
        return 0.0
    left = _interpolate(t, v, first, first + 1, mint, counter) if t[first] < mint else float(v[first])
    right = _interpolate(t, v, last - 1, last, maxt, counter) if last > a and t[last] > maxt else float(v[last])
    result = right - left
    if counter:
        f1 = first + 1 if t[first] <= mint else first
        l1 = last - 1 if t[last] >= maxt else last
        prev = left
        for j in range(f1, l1 + 1):
            if v[j] < prev:
                result += prev
            prev = v[j]
        if right < prev:
            result += prev
    outp_ok[0] = True
    return result / range_s if func == RATE else result


@njit
def extended_windows(t: I64, v: F64, offsets: I64, ref: I64, rng: int, lookback: int, smoothed: bool,
                     func: int, out: F64, outp: np.ndarray) -> None:
    """``func`` over every series' extended window at every step; ``t``/``v`` hold each series' samples
    from ``lookback`` before its earliest window to ``lookback`` after its latest (for ``smoothed``)."""
    range_s = rng / 1000.0
    ok = np.zeros(1, np.bool_)
    for i in range(offsets.shape[0] - 1):
        a = offsets[i]
        b = offsets[i + 1]
        for k in range(ref.shape[0]):
            maxt = ref[k]
            mint = maxt - rng
            lo = _after(t, a, b, mint - lookback)
            hi = _after(t, lo, b, maxt + lookback if smoothed else maxt)
            if hi == lo:
                continue
            if smoothed:
                value = _smoothed(t, v, lo, hi, mint, maxt, func, range_s, ok)
                if not ok[0]:
                    continue
            else:
                if func <= DELTA and _after(t, lo, hi, mint) == hi:
                    continue  # rate, increase and delta need a sample in the window
                value = _anchored(t, v, lo, hi, mint, maxt, func, range_s)
            out[i, k] = value
            outp[i, k] = True


@njit
def smoothed_instant(t: I64, v: F64, offsets: I64, ref: I64, lookback: int, out: F64, outp: np.ndarray) -> None:
    """An instant selector's value at each step interpolated between the samples around it (the last
    one at or before the step within the lookback delta and the first after it within the same delta)."""
    for i in range(offsets.shape[0] - 1):
        a = offsets[i]
        b = offsets[i + 1]
        for k in range(ref.shape[0]):
            r = ref[k]
            nxt = _after(t, a, b, r)
            prev = nxt - 1
            if prev < a or t[prev] <= r - lookback:
                continue
            if nxt < b and t[nxt] <= r + lookback and t[prev] < r:
                out[i, k] = _interpolate(t, v, prev, nxt, r, False)
            else:
                out[i, k] = v[prev]
            outp[i, k] = True
