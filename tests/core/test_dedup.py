"""Penalty deduplication (FORMATS.md §8.6): kernel behaviour and a reference model."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from thanostools.core.chunkenc.histogram import HistogramSample, build_batch
from thanostools.core.constants import STALE_NAN_BITS
from thanostools.core.dedup import dedup_pair, dedup_replicas, dedup_runs
from thanostools.core.series import KIND_FLOAT, KIND_INT_HISTOGRAM, HistogramColumns, SampleRun

Replica = tuple[np.ndarray, np.ndarray]


def rep(t: list[int], v: list[float]) -> Replica:
    return np.array(t, np.int64), np.array(v, np.float64).view(np.uint64)


def pairs(r: Replica) -> list[tuple[int, float]]:
    return list(zip(r[0].tolist(), r[1].view(np.float64).tolist(), strict=True))


def reference(a: list[tuple[int, float]], b: list[tuple[int, float]], counter: bool) -> list[tuple[int, float]]:
    """§8.6 written as literally as possible (iterator form, one sample per step)."""
    i = j = 0
    last_t: int | None = None
    pen_a = pen_b = 0
    adj = [0.0, 0.0]
    use_a = False
    out: list[tuple[int, float]] = []
    while True:
        if last_t is not None:
            while i < len(a) and a[i][0] < last_t + 1 + pen_a:
                i += 1
            while j < len(b) and b[j][0] < last_t + 1 + pen_b:
                j += 1
        if i >= len(a) and j >= len(b):
            return out
        prev = use_a
        if i >= len(a):
            use_a = False
        elif j >= len(b):
            use_a = True
        else:
            use_a = a[i][0] <= b[j][0]
            chosen = a[i][0] if use_a else b[j][0]
            penalty = 2 * (chosen - last_t) if last_t is not None else 5000
            pen_a, pen_b = (pen_a, penalty) if use_a else (penalty, pen_b)
        k = 0 if use_a else 1
        t, v = a[i] if use_a else b[j]
        if counter and out and use_a != prev and out[-1][1] > v + adj[k]:
            adj[k] = out[-1][1] - v
        if use_a:
            pen_a = 0
        else:
            pen_b = 0
        last_t = t
        out.append((t, v + adj[k]))


def test_ties_prefer_the_first_replica() -> None:
    t, v = dedup_pair(rep([0, 15000], [1, 1]), rep([0, 15000], [2, 2]))
    assert t.tolist() == [0, 15000] and v.view(np.float64).tolist() == [1.0, 1.0]


def test_initial_penalty_is_5000ms() -> None:
    # B's first sample 4999 ms after A's is skipped, one 5001 ms after is taken (it precedes A's next)
    assert pairs(dedup_pair(rep([0, 30000], [1, 1]), rep([4999, 9000], [2, 2]))) == [(0, 1), (9000, 2), (30000, 1)]
    got = pairs(dedup_pair(rep([0, 30000], [1, 1]), rep([5001, 40000], [2, 2])))
    assert got[:2] == [(0, 1.0), (5001, 2.0)]


def test_switches_replica_only_on_a_gap_of_two_intervals() -> None:
    a = rep([0, 10000, 20000, 30000, 90000, 100000], [1] * 6)
    b = rep([5000 + 10000 * i for i in range(10)], [2] * 10)
    got = pairs(dedup_pair(a, b))
    assert got == [(0, 1), (10000, 1), (20000, 1), (30000, 1), (55000, 2), (65000, 2), (75000, 2), (85000, 2),
                   (95000, 2)]


def test_one_side_empty_or_exhausted() -> None:
    a = rep([0, 1000], [1, 2])
    empty = rep([], [])
    assert pairs(dedup_pair(a, empty)) == pairs(a)
    assert pairs(dedup_pair(empty, a)) == pairs(a)
    assert pairs(dedup_pair(empty, empty)) == []
    assert pairs(dedup_replicas([])) == []
    assert pairs(dedup_replicas([a])) == pairs(a)


def test_counter_adjustment_never_decreases_at_a_switch() -> None:
    a = rep([0, 10000, 20000, 30000], [100, 101, 102, 103])
    b = rep([70000, 80000, 90000], [3, 4, 5])
    assert [v for _, v in pairs(dedup_pair(a, b))] == [100, 101, 102, 103, 3, 4, 5]
    assert [v for _, v in pairs(dedup_pair(a, b, counter=True))] == [100, 101, 102, 103, 103, 104, 105]
    # no adjustment when the new replica is already higher
    c = rep([70000, 80000], [200, 201])
    assert [v for _, v in pairs(dedup_pair(a, c, counter=True))] == [100, 101, 102, 103, 200, 201]


def test_value_bits_survive() -> None:
    a = (np.array([0, 15000], np.int64), np.array([STALE_NAN_BITS, 0x7FF8000000000001], np.uint64))
    b = rep([100000], [1])
    t, v = dedup_pair(a, b, counter=True)
    assert v.tolist()[:2] == [STALE_NAN_BITS, 0x7FF8000000000001]
    assert t.tolist() == [0, 15000, 100000]


def test_folding_is_pairwise_in_order() -> None:
    a = rep([0, 15000, 30000], [1, 1, 1])
    b = rep([6000, 21000, 36000, 51000], [2, 2, 2, 2])
    c = rep([60000, 75000], [3, 3])
    assert pairs(dedup_replicas([a, b, c])) == pairs(dedup_pair(dedup_pair(a, b), c))


def _series(draw: st.DrawFn) -> list[tuple[int, float]]:
    ts = sorted(set(draw(st.lists(st.integers(0, 200_000), max_size=25))))
    return [(t, float(draw(st.integers(0, 50)))) for t in ts]


@settings(max_examples=300, deadline=None)
@given(st.data(), st.booleans())
def test_matches_reference(data: st.DataObject, counter: bool) -> None:
    a = data.draw(st.composite(_series)())
    b = data.draw(st.composite(_series)())
    got = pairs(dedup_pair(rep([t for t, _ in a], [v for _, v in a]), rep([t for t, _ in b], [v for _, v in b]),
                           counter=counter))
    want = reference(a, b, counter)
    assert [t for t, _ in got] == [t for t, _ in want]
    assert all(math.isclose(x, y) for (_, x), (_, y) in zip(got, want, strict=True))


def test_counter_switch_after_a_stale_marker_adjusts_against_the_last_value() -> None:
    # A ends with a stale marker; B lags behind A and has restarted once (35 -> 2).
    a = (np.array([0, 10000, 20000, 30000], np.int64),
         np.array([*np.array([10.0, 20.0, 30.0]).view(np.uint64).tolist(), STALE_NAN_BITS], np.uint64))
    b = rep([60000, 70000, 80000], [25, 35, 2])
    # Monotone replicas: A = 10 20 30 (stale marker skipped), B = 25 35 37. A is used up to 20000;
    # B's 25 at the switch is below 30, so B is raised by 5 from then on.
    assert pairs(dedup_replicas([a, b], counter=True)) == [
        (0, 10.0), (10000, 20.0), (20000, 30.0), (60000, 30.0), (70000, 40.0), (80000, 42.0)]
    # Without the counter semantics the stale marker stays and nothing is adjusted.
    plain = dedup_replicas([a, b])
    assert plain[1].tolist()[3] == STALE_NAN_BITS
    assert [v for _, v in pairs(plain)][4:] == [25.0, 35.0, 2.0]


def _mixed(samples: list[tuple[int, float, bool]]) -> SampleRun:
    """One replica: (t, value or histogram sum, is a histogram) per sample."""
    hists = [HistogramSample(t, count=1, zero_count=1, sum=v) for t, v, is_hist in samples if is_hist]
    kind = np.array([KIND_INT_HISTOGRAM if h else KIND_FLOAT for _, _, h in samples], np.uint8)
    row = np.full(len(samples), -1, np.int64)
    row[kind != KIND_FLOAT] = np.arange(len(hists))
    cols = HistogramColumns(kind, row, build_batch(hists, is_float=False), build_batch([], is_float=True))
    t, v = rep([s[0] for s in samples], [s[1] for s in samples])
    return (("r", "x"),), t, v, cols


def _values(run: SampleRun) -> list[tuple[int, float, bool]]:
    assert run[3] is not None
    return [(int(t), float(v), int(k) != KIND_FLOAT)
            for t, v, k in zip(run[1], run[2].view(np.float64), run[3].kind, strict=True)]


def test_histogram_samples_are_picked_by_time_and_never_adjusted() -> None:
    a = _mixed([(0, 100, False), (10000, 101, False)])
    b = _mixed([(60000, 3, True), (70000, 4, True), (80000, 5, False)])
    got = dedup_runs((), [a, b], counter=True)
    # a float -> histogram switch adjusts nothing; the float after the histograms is not a switch
    assert _values(got) == [(0, 100, False), (10000, 101, False), (60000, 3, True), (70000, 4, True),
                            (80000, 5, False)]
    assert got[3] is not None and got[3].ints.t.tolist() == [60000, 70000]


def test_counter_adjusts_only_float_to_float_switches() -> None:
    a = _mixed([(0, 100, False), (10000, 101, False)])
    b = _mixed([(60000, 3, False), (70000, 4, True), (80000, 5, False)])
    assert _values(dedup_runs((), [a, b], counter=True)) == [
        (0, 100, False), (10000, 101, False), (60000, 101, False), (70000, 4, True), (80000, 103, False)]
    # after a histogram there is no float value to compare with (Thanos' lastFloatVal): no adjustment
    c = _mixed([(0, 100, False), (10000, 500, True)])
    d = _mixed([(60000, 3, False), (70000, 4, False)])
    assert _values(dedup_runs((), [c, d], counter=True)) == [
        (0, 100, False), (10000, 500, True), (60000, 3, False), (70000, 4, False)]
