"""Prometheus head chunk cutting (FORMATS.md §3.6) and fixed-size cutting."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from thanostools.core.chunkenc.cutting import fixed_size_bounds, head_cut_bounds, head_cut_kernel


def reference_cut(ts: list[int], chunk_range: int, spc: int = 120) -> list[int]:
    """The head append path, one sample at a time, with Go integer division."""

    def go_div(a: int, b: int) -> int:
        q = abs(a) // abs(b)
        return -q if (a < 0) != (b < 0) else q

    bounds = [0]
    if not ts:
        return bounds
    first, next_at = 0, go_div(ts[0], chunk_range) * chunk_range + chunk_range
    for i in range(1, len(ts)):
        held = i - first
        if held == spc // 4:
            start, cur = ts[first], ts[i - 1]
            n = (next_at - start) / ((cur - start + 1) * 4)
            if n > 1:
                next_at = int(start + (next_at - start) / math.floor(n))
        if ts[i] >= next_at or held >= 2 * spc:
            bounds.append(i)
            first, next_at = i, go_div(ts[i], chunk_range) * chunk_range + chunk_range
    return [*bounds, len(ts)]


def test_verified_promtool_import() -> None:
    t = 21600000 + 15000 * np.arange(480, dtype=np.int64)
    bounds = head_cut_bounds(t, 7200000 * 2)
    assert bounds.tolist() == [0, 120, 240, 360, 480]
    assert t[bounds[1:] - 1].tolist() == [23385000, 25185000, 26985000, 28785000]


def test_range_boundary_is_a_hard_cut() -> None:
    # 2h range: a series starting 10 min before a boundary is cut at the boundary
    t = 7200000 - 600000 + 15000 * np.arange(100, dtype=np.int64)
    bounds = head_cut_bounds(t, 7200000)
    assert bounds.tolist() == [0, 40, 100]
    assert t[40] == 7200000


def test_rate_increase_hits_the_240_sample_cut() -> None:
    slow = 1000 * np.arange(31, dtype=np.int64)  # predicts a far chunk end
    fast = slow[-1] + 1 + np.arange(600, dtype=np.int64)
    t = np.concatenate([slow, fast])
    bounds = head_cut_bounds(t, 7200000)
    assert bounds[1] == 240
    assert bounds.tolist() == reference_cut(t.tolist(), 7200000)


def test_negative_timestamps_use_go_division() -> None:
    # Go: -1 / 1000 = 0, so the first chunk may run up to 1000 (flooring would cut at 0)
    assert head_cut_bounds(np.array([-1, 500, 999, 1000]), 1000).tolist() == [0, 3, 4]


def test_small_inputs_and_validation() -> None:
    assert head_cut_bounds(np.array([], dtype=np.int64), 1000).tolist() == [0]
    assert head_cut_bounds(np.array([5]), 1000).tolist() == [0, 1]
    with pytest.raises(ValueError):
        head_cut_bounds(np.array([2, 1]), 1000)
    with pytest.raises(ValueError):
        head_cut_bounds(np.array([1, 2]), 0)
    with pytest.raises(ValueError):
        head_cut_bounds(np.array([1, 2]), 1000, samples_per_chunk=3)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(-(10**12), 10**12),
    st.lists(st.one_of(st.integers(0, 3), st.integers(1, 60000), st.sampled_from([15000, 30000])),
             max_size=700),
    st.sampled_from([1000, 7200000, 14400000, 10**9]),
    st.sampled_from([4, 16, 120]),
)
def test_matches_reference(t0: int, deltas: list[int], chunk_range: int, spc: int) -> None:
    t = (t0 + np.cumsum([0, *deltas])).astype(np.int64)
    expected = reference_cut(t.tolist(), chunk_range, spc)
    assert head_cut_bounds(t, chunk_range, spc).tolist() == expected
    py = getattr(head_cut_kernel, "py_func", head_cut_kernel)
    assert py(t, chunk_range, spc).tolist() == expected


def test_fixed_size_bounds() -> None:
    assert fixed_size_bounds(0).tolist() == [0]
    assert fixed_size_bounds(1).tolist() == [0, 1]
    assert fixed_size_bounds(240).tolist() == [0, 120, 240]
    assert fixed_size_bounds(250, 120).tolist() == [0, 120, 240, 250]
    assert fixed_size_bounds(5, 2).dtype == np.int64
    with pytest.raises(ValueError):
        fixed_size_bounds(5, 0)
