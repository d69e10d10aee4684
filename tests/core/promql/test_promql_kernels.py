"""Evaluator kernels against straightforward reference versions (ties, NaN, resets, empty groups)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from thanostools.core.kernels import promql as kern


def _matrix(rng: np.random.Generator, n: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    vals = rng.integers(-3, 4, (n, steps)).astype(np.float64)  # many ties
    vals[rng.random((n, steps)) < 0.1] = np.nan
    vals[rng.random((n, steps)) < 0.03] = np.inf
    vals[rng.random((n, steps)) < 0.03] = -np.inf
    return vals, rng.random((n, steps)) < 0.8


def _grouping(rng: np.random.Generator, n: int, ngroups: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    gid = rng.integers(0, ngroups, n)
    order = np.argsort(gid, kind="stable").astype(np.int64)
    gstart = np.searchsorted(gid[order], np.arange(ngroups + 1)).astype(np.int64)
    return gid, order, gstart


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_top_list_selection_equals_sorting(mode: int) -> None:
    rng = np.random.default_rng(mode)
    vals, pres = _matrix(rng, 300, 37)
    _, order, gstart = _grouping(rng, 300, 4)
    k = rng.integers(-1, 12, 37)
    fast = (np.zeros(vals.shape, np.bool_), np.zeros(vals.shape, np.int64))
    slow = (np.zeros(vals.shape, np.bool_), np.zeros(vals.shape, np.int64))
    kern.group_select(mode, vals, pres, order, gstart, k, *fast)
    kern._group_select_sorting(mode, vals, pres, order, gstart, k, *slow)
    assert np.array_equal(fast[0], slow[0])
    assert np.array_equal(np.where(fast[0], fast[1], 0), np.where(slow[0], slow[1], 0))
    big = np.full(37, 10**6)  # the sorting path itself: everything present is selected
    sel = np.zeros(vals.shape, np.bool_)
    kern.group_select(mode, vals, pres, order, gstart, big, sel, np.zeros(vals.shape, np.int64))
    assert np.array_equal(sel, pres)


def _reference_reduce(code: int, column: list[float]) -> float:
    """sum/count/min/max/group the way the per-step kernel did: Kahan-compensated sum, NaN-replacing min/max."""
    if code == kern.AGG_COUNT:
        return float(len(column))
    if code == kern.AGG_GROUP:
        return 1.0
    value, c = column[0], 0.0
    for f in column[1:]:
        if code == kern.AGG_SUM:
            value, c = kern.kahan_inc(f, value, c)
        elif (code == kern.AGG_MAX and (value < f or math.isnan(value))) or (
                code == kern.AGG_MIN and (value > f or math.isnan(value))):
            value = f
    return value + c if code == kern.AGG_SUM else value


@pytest.mark.parametrize("code", [kern.AGG_SUM, kern.AGG_COUNT, kern.AGG_MIN, kern.AGG_MAX, kern.AGG_GROUP])
def test_reductions_in_the_output_follow_row_order(code: int) -> None:
    rng = np.random.default_rng(code)
    vals, pres = _matrix(rng, 200, 21)
    vals[~np.isnan(vals)] *= rng.normal(size=int((~np.isnan(vals)).sum())) * 1e12  # rounding matters
    gid, _, _ = _grouping(rng, 200, 5)
    out = np.zeros((5, 21))
    outp = np.zeros((5, 21), np.bool_)
    kern.group_reduce(code, vals, pres, gid, 5, out, outp)
    for g in range(5):
        for k in range(21):
            column = [float(vals[i, k]) for i in range(200) if gid[i] == g and pres[i, k]]
            assert outp[g, k] == bool(column)
            if column:
                want = _reference_reduce(code, column)
                assert out[g, k] == want or (math.isnan(out[g, k]) and math.isnan(want))


def test_rate_skips_the_reset_scan_only_without_resets() -> None:
    t = np.arange(0, 40 * 15_000, 15_000, dtype=np.int64)
    v = np.cumsum(np.full(40, 2.5))
    v[17:] -= 30.0  # one reset
    v[25] = np.nan
    offsets = np.array([0, 40], np.int64)
    ref = np.arange(60_000, 600_001, 20_000, dtype=np.int64)
    lo = np.zeros((1, ref.shape[0]), np.int64)
    hi = np.zeros((1, ref.shape[0]), np.int64)
    kern.window_bounds(t, offsets, ref, 120_000, lo, hi)
    out = np.zeros((1, ref.shape[0]))
    outp = np.zeros((1, ref.shape[0]), np.bool_)
    zeros = np.zeros(ref.shape[0])
    kern.range_function(kern.FN_INCREASE, t, v, lo, hi, ref, ref, 120_000, zeros, zeros, out, outp)
    for k in range(ref.shape[0]):
        a, b = int(lo[0, k]), int(hi[0, k])
        if b - a < 2:
            assert not outp[0, k]
            continue
        want = kern._extrapolated_rate(t, v, a, b, int(ref[k]) - 120_000, int(ref[k]), 120_000, True, False, True)
        assert out[0, k] == want or (math.isnan(out[0, k]) and math.isnan(want))
