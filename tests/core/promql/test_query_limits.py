"""The sample limit holds before memory is allocated: subquery grids, range windows, dense outputs.

Every bomb here would need far more memory than the test machine has (or at least far more than
the limit) if it were allocated before being counted; each fails with Prometheus' message instead,
and the same shapes just under the limit give the right answers.
"""

from __future__ import annotations

import numpy as np
import pytest

from thanostools.core.errors import EvalError
from thanostools.core.labels import Labels
from thanostools.core.promql.engine import PromQLEngine, QueryOptions, QueryStats
from thanostools.core.promql.evaluator import TOO_MANY_SAMPLES, Evaluator
from thanostools.core.promql.memquerier import MemoryQuerier
from thanostools.core.promql.parser.ast import NumberLiteral
from thanostools.core.promql.selection import RowSink

MIN = 60_000
DAY = 24 * 60 * MIN
LIMIT = 100_000


def _lab(**kw: str) -> Labels:
    return tuple(sorted(kw.items()))


def _querier(series: int, minutes: int = 60) -> MemoryQuerier:
    """``x{i}``: a sample a minute, value i + minute; ``y``: one series, a sample a minute."""
    t = np.arange(minutes, dtype=np.int64) * MIN
    labels = [_lab(__name__="x", i=str(i)) for i in range(series)] + [_lab(__name__="y")]
    values = [np.arange(minutes, dtype=np.float64) + i for i in range(series)] + [np.ones(minutes)]
    return MemoryQuerier(labels, [t] * len(labels), [v.view(np.uint64) for v in values])


def _engine(q: MemoryQuerier, max_samples: int = LIMIT) -> PromQLEngine:
    return PromQLEngine(q, QueryOptions(max_samples=max_samples))


def _too_many(fn: object, *args: object) -> None:
    assert callable(fn)
    with pytest.raises(EvalError) as exc:
        fn(*args)
    assert str(exc.value) == TOO_MANY_SAMPLES


# --- subqueries ------------------------------------------------------------------------------------


@pytest.mark.parametrize("query", [
    "max_over_time(y[10000d:1s])",  # 864 million inner steps
    "y[1000d:1ms]",  # 86.4 billion inner steps, an instant range-vector result
    "max_over_time(max_over_time(y[1m:1s])[10000d:1s])",  # the outer grid fails before the inner runs
    "sum_over_time(y[292y:1ms])",  # 9.2e12 steps
])
def test_subquery_grids_are_counted_before_they_exist(query: str) -> None:
    _too_many(_engine(_querier(1)).instant, query, 60 * MIN)


def test_subquery_just_under_the_limit() -> None:
    # 90 000 one-second steps of one series: under 100 000, and the answer is exact.
    res = _engine(_querier(1)).instant("count_over_time(y[25h:1s])", 60 * MIN)
    # y has a sample every minute from 0: every second from 0 to 60 min sees one
    assert [float(v) for v in res.series[0].v] == [3601.0]
    _too_many(_engine(_querier(2)).instant, "count_over_time({__name__=~'x|y'}[25h:1s])", 60 * MIN)


def test_range_query_over_a_subquery() -> None:
    q = _querier(3)
    res = _engine(q).range("max_over_time(x[10m:1m])", 0, 59 * MIN, MIN)
    assert [s.v.tolist() for s in res.series] == [[float(i + k) for k in range(60)] for i in range(3)]
    _too_many(_engine(q).range, "max_over_time(x[10000d:1m])", 0, 59 * MIN, MIN)


# --- range vectors ---------------------------------------------------------------------------------


def test_range_vector_windows_count() -> None:
    # 10 000 steps x 20 series of windows and results: 200 000 > 100 000
    _too_many(_engine(_querier(20)).range, "count_over_time(x[10000d])", 0, 9_999 * MIN, MIN)
    # five series: 50 000 result cells, windows made a few rows at a time
    res = _engine(_querier(5)).range("count_over_time(x[10000d])", 0, 9_999 * MIN, MIN)
    counts = np.minimum(np.arange(10_000) + 1, 60).astype(np.float64)
    assert len(res.series) == 5 and all(s.v.tolist() == counts.tolist() for s in res.series)


def test_range_vector_result_counts_its_samples() -> None:
    _too_many(_engine(_querier(1), max_samples=50).instant, "y[10000d]", 60 * MIN)  # 60 samples
    res = _engine(_querier(1), max_samples=70).instant("y[10000d]", 60 * MIN)
    assert res.series[0].t.tolist() == (np.arange(60) * MIN).tolist()


# --- dense outputs ---------------------------------------------------------------------------------


def test_range_query_output_matrix() -> None:
    q = _querier(20)
    _too_many(_engine(q).range, "x", 0, 9_999 * MIN, MIN)  # 20 series x 10 000 steps
    res = _engine(q).range("x", 0, 3_999 * MIN, MIN)  # 80 000 cells
    by_labels = {s.labels: s.v.tolist() for s in res.series}
    assert len(by_labels) == 20 and by_labels[_lab(__name__="x", i="3")] == [3.0 + k for k in range(60)] + [62.0] * 4
    assert res.stats.peak_samples <= LIMIT


def test_range_query_steps_are_counted_before_the_grid_exists() -> None:
    engine = _engine(_querier(1))
    _too_many(engine.range, "1", 0, 200_000 * MIN, MIN)
    _too_many(engine.range, "1", -(2**62), 2**62, 1)  # 2^63 steps: no arange of that size is attempted
    assert len(engine.range("1", 0, 99_999 * MIN, MIN).series[0].v) == 100_000


def test_count_values_rows_per_distinct_value() -> None:
    # y + time(): a new value at every step, so a row per step, each 3 000 steps wide
    engine = _engine(_querier(0, 3_000))
    _too_many(engine.range, 'count_values("v", y + time())', 0, 2_999 * MIN, MIN)
    res = engine.range('count_values("v", y + time())', 0, 29 * MIN, MIN)
    assert len(res.series) == 30 and all(s.v.tolist() == [1.0] for s in res.series)


def _pairs_querier(many: int, one: int, steps: int) -> MemoryQuerier:
    """``a{i}`` (value i) at every step; ``b{j}`` (value 1000 j) only at step j, so no two ``b`` meet."""
    t = np.arange(steps, dtype=np.int64) * MIN
    labels = [_lab(__name__="a", i=str(i)) for i in range(many)] + [_lab(__name__="b", j=str(j)) for j in range(one)]
    ts = [t] * many + [t[j : j + 1] for j in range(one)]
    vs = [np.full(steps, float(i)) for i in range(many)] + [np.full(1, 1000.0 * j) for j in range(one)]
    return MemoryQuerier(labels, ts, [v.view(np.uint64) for v in vs])


def test_binary_matching_pairs_are_counted() -> None:
    # every a pairs with every b: 100 x 100 rows of 100 steps from inputs of 20 000 cells
    opts = QueryOptions(max_samples=LIMIT, lookback_delta_ms=1)
    query = "a + on() group_left b"
    with pytest.raises(EvalError, match="too many samples"):
        PromQLEngine(_pairs_querier(100, 100, 100), opts).range(query, 0, 99 * MIN, MIN)
    res = PromQLEngine(_pairs_querier(10, 10, 100), opts).range(query, 0, 99 * MIN, MIN)
    assert [s.labels for s in res.series] == [_lab(i=str(i)) for i in range(10)]
    for i, s in enumerate(res.series):
        assert s.t.tolist() == [j * MIN for j in range(10)]
        assert s.v.tolist() == [i + 1000.0 * j for j in range(10)]


def test_row_sink_reserves_before_growing() -> None:
    ev = Evaluator(MemoryQuerier([], [], []), QueryOptions(max_samples=100), NumberLiteral(1.0), "1", 0, 0, 0,
                   QueryStats())
    sink = RowSink(ev, 10**9, 10)  # a huge bound: only what fits is allocated
    assert sink.rows(10)[0].shape == (10, 10)
    assert sink.values.shape[0] == 10
    ev.account(sink.commit([_lab(i=str(i)) for i in range(10)], np.zeros(10, np.bool_)))  # nothing present
    with pytest.raises(EvalError, match="too many samples"):
        sink.rows(11)
