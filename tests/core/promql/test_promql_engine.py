"""API-level tests of the PromQL engine: result shapes, errors, limits, timeouts, stats, hints."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thanostools.core.constants import STALE_NAN_BITS
from thanostools.core.errors import EvalError, ParseError, QueryTimeoutError
from thanostools.core.labels import Labels, from_dict
from thanostools.core.matchers import Matcher
from thanostools.core.promql.engine import PromQLEngine, QueryOptions, QueryResult
from thanostools.core.promql.memquerier import MemoryQuerier
from thanostools.core.promql.parser.parse import parse_expr
from thanostools.core.series import DEFAULT_BATCH_SAMPLES, LabelResult, SelectHints, SeriesStream

MIN = 60_000


Series = tuple[Labels, np.ndarray, np.ndarray]


def _series(name: str, values: Sequence[float] | np.ndarray, step: int = MIN, **labels: str) -> Series:
    t = np.arange(len(values), dtype=np.int64) * step
    return from_dict({"__name__": name, **labels}), t, np.asarray(values, np.float64).view(np.uint64)


@pytest.fixture
def querier() -> MemoryQuerier:
    return MemoryQuerier.from_series([
        _series("req_total", np.arange(0, 61) * 10.0, job="api", instance="a"),
        _series("req_total", np.arange(0, 61) * 20.0, job="api", instance="b"),
        _series("req_total", np.arange(0, 61) * 5.0, job="db", instance="c"),
        _series("temp", np.linspace(10, 20, 61), job="api"),
    ])


def test_instant_vector(querier: MemoryQuerier) -> None:
    res = PromQLEngine(querier).instant("req_total", 10 * MIN)
    assert res.result_type == "vector"
    assert [s.labels for s in res.series] == sorted(s.labels for s in res.series)
    assert [float(s.v[0]) for s in res.series] == [100.0, 200.0, 50.0]
    assert all(int(s.t[0]) == 10 * MIN for s in res.series)


def test_range_matrix_sorted_with_steps(querier: MemoryQuerier) -> None:
    res = PromQLEngine(querier).range("sum by (job) (rate(req_total[5m]))", 10 * MIN, 20 * MIN, MIN)
    assert res.result_type == "matrix"
    assert [s.labels for s in res.series] == [(("job", "api"),), (("job", "db"),)]
    api = res.series[0]
    assert api.t.tolist() == list(range(10 * MIN, 21 * MIN, MIN))
    assert np.allclose(api.v, 0.5)


def test_scalar_and_string_results(querier: MemoryQuerier) -> None:
    engine = PromQLEngine(querier)
    res = engine.instant("1 + 2", 5000)
    assert res.result_type == "scalar" and res.scalar == (5000, 3.0)
    res = engine.instant('"hello"', 5000)
    assert res.result_type == "string" and res.string == (5000, "hello")
    res = engine.range("time()", 0, 2000, 1000)
    assert res.result_type == "matrix"
    assert res.series[0].labels == () and res.series[0].v.tolist() == [0.0, 1.0, 2.0]


def test_range_vector_at_instant(querier: MemoryQuerier) -> None:
    res = PromQLEngine(querier).instant('req_total{instance="a"}[3m]', 10 * MIN)
    assert res.result_type == "matrix"
    assert res.series[0].t.tolist() == [8 * MIN, 9 * MIN, 10 * MIN]


def test_expr_objects_are_accepted(querier: MemoryQuerier) -> None:
    res = PromQLEngine(querier).instant(parse_expr("count(req_total)"), MIN)
    assert float(res.series[0].v[0]) == 3.0


def test_parse_and_type_errors(querier: MemoryQuerier) -> None:
    engine = PromQLEngine(querier)
    with pytest.raises(ParseError):
        engine.instant("sum(", 0)
    with pytest.raises(EvalError, match='invalid expression type "range vector" for range query'):
        engine.range("req_total[5m]", 0, MIN, MIN)
    with pytest.raises(EvalError, match="zero or negative"):
        engine.range("req_total", 0, MIN, 0)


def test_max_samples_limit(querier: MemoryQuerier) -> None:
    engine = PromQLEngine(querier, QueryOptions(max_samples=100))
    with pytest.raises(EvalError) as exc:
        engine.range("req_total", 0, 60 * MIN, MIN)
    assert str(exc.value) == "query processing would load too many samples into memory in query execution"
    assert PromQLEngine(querier, QueryOptions(max_samples=100)).instant("req_total", MIN).series


def test_max_series_limit(querier: MemoryQuerier) -> None:
    engine = PromQLEngine(querier, QueryOptions(max_series=2))
    with pytest.raises(EvalError, match="too many series"):
        engine.instant("req_total", MIN)
    assert len(engine.instant('req_total{job="api"}', MIN).series) == 2


class _SlowQuerier:
    def __init__(self, inner: MemoryQuerier, delay: float) -> None:
        self.inner = inner
        self.delay = delay

    def select(self, matchers: Sequence[Matcher], mint: int, maxt: int, hints: SelectHints | None = None, *,
               batch_samples: int = DEFAULT_BATCH_SAMPLES) -> SeriesStream:
        time.sleep(self.delay)
        return self.inner.select(matchers, mint, maxt, hints, batch_samples=batch_samples)

    def label_names(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> LabelResult:
        return self.inner.label_names(matchers, mint, maxt)

    def label_values(self, name: str, matchers: Sequence[Matcher], mint: int, maxt: int) -> LabelResult:
        return self.inner.label_values(name, matchers, mint, maxt)


def test_timeout(querier: MemoryQuerier) -> None:
    engine = PromQLEngine(_SlowQuerier(querier, 0.05), QueryOptions(timeout_s=0.01))
    with pytest.raises(QueryTimeoutError, match="query timed out in expression evaluation"):
        engine.instant("req_total + req_total + req_total", MIN)


def test_stats(querier: MemoryQuerier) -> None:
    res = PromQLEngine(querier).instant("sum(rate(req_total[5m]))", 30 * MIN)
    assert res.stats.series_loaded == 3
    assert res.stats.samples_loaded == 15
    assert res.stats.peak_samples >= 15


def test_hints_passed_to_querier(querier: MemoryQuerier) -> None:
    engine = PromQLEngine(querier)
    engine.range("sum by (job) (rate(req_total[5m]))", 10 * MIN, 20 * MIN, MIN)
    hint = querier.hints[-1]
    assert hint is not None
    assert (hint.func, hint.range, hint.step) == ("rate", 5 * MIN, MIN)
    assert (hint.start, hint.end) == (5 * MIN + 1, 20 * MIN)
    engine.instant("max without (instance) (req_total)", 10 * MIN)
    hint = querier.hints[-1]
    assert hint is not None
    assert (hint.func, hint.grouping, hint.by, hint.range) == ("max", ("instance",), False, 0)
    assert (hint.start, hint.end) == (5 * MIN + 1, 10 * MIN)
    engine.instant("req_total + 1", 0)
    hint = querier.hints[-1]
    assert hint is not None and hint.func == ""


def test_annotations_have_positions(querier: MemoryQuerier) -> None:
    res = PromQLEngine(querier).instant("sum(rate(temp[5m]))", 10 * MIN)
    assert res.infos == ['PromQL info: metric might not be a counter, name does not end in '
                         '_total/_sum/_count/_bucket: "temp" (1:10)']
    res = PromQLEngine(querier).range("sort(req_total)", 0, MIN, MIN)
    assert res.warnings == ["PromQL warning: sort is ineffective for range queries since results are always "
                            "ordered by labels (1:1)"]


def test_instant_order_is_kept(querier: MemoryQuerier) -> None:
    res = PromQLEngine(querier).instant("sort_desc(req_total)", 10 * MIN)
    assert [float(s.v[0]) for s in res.series] == [200.0, 100.0, 50.0]
    res = PromQLEngine(querier).instant("bottomk(2, req_total)", 10 * MIN)
    assert [float(s.v[0]) for s in res.series] == [50.0, 100.0]


def test_memory_querier_labels(querier: MemoryQuerier) -> None:
    assert querier.label_names([], 0, MIN).values == ["__name__", "instance", "job"]
    assert querier.label_values("job", [Matcher.eq("__name__", "req_total")], 0, MIN).values == ["api", "db"]
    assert querier.label_values("job", [], 10**9, 2 * 10**9).values == []


def test_stale_marker_from_bits() -> None:
    lbls = from_dict({"__name__": "m"})
    t = np.array([0, MIN, 2 * MIN], np.int64)
    v = np.array([1.0, 2.0, 0.0]).view(np.uint64).copy()
    v[2] = STALE_NAN_BITS
    engine = PromQLEngine(MemoryQuerier.from_series([(lbls, t, v)]))
    assert engine.instant("m", 2 * MIN).series == []
    assert float(engine.instant("count_over_time(m[5m])", 2 * MIN).series[0].v[0]) == 2.0


# -- range queries equal their instant queries, step by step -----------------------------------

_EXPRESSIONS = [
    "m", "rate(m[3m])", "increase(m[2m])", "delta(m[4m])", "irate(m[3m])", "resets(m[5m])",
    "changes(m[5m])", "deriv(m[4m])", "predict_linear(m[4m], 60)", "avg_over_time(m[3m])",
    "quantile_over_time(0.3, m[5m])", "stddev_over_time(m[5m])", "last_over_time(m[2m])",
    "sum by (k) (m)", "avg(m)", "max without (k) (m)", "count(m > 0)", "topk(1, m)", "quantile(0.5, m)",
    "m * on(k) group_left m", "m > bool 0", "m or m * 2", "m and m < 5", "m unless m > 2",
    "sum_over_time(m[3m:1m])", "max_over_time(rate(m[2m])[5m:30s])", "m offset 1m", "m @ 180",
    "abs(m) + 1", "clamp(m, -1, 2)", "timestamp(m)", "absent(m)", "scalar(sum(m))", "count_values(\"v\", m)",
    "histogram_quantile(0.9, m)", "label_replace(m, \"x\", \"$1\", \"k\", \"(.*)\")",
]

_values = st.one_of(st.floats(-5, 5, allow_nan=False).map(lambda x: round(x, 1)), st.just(math.nan),
                    st.just("stale"), st.none())


def _random_querier(data: list[list[float | str | None]]) -> MemoryQuerier:
    series = []
    for i, points in enumerate(data):
        t = [j * 30_000 for j, p in enumerate(points) if p is not None]
        bits = [STALE_NAN_BITS if p == "stale" else int(np.float64(p).view(np.uint64))
                for p in points if p is not None]
        lbls = from_dict({"__name__": "m", "k": str(i % 2), "i": str(i), "le": str(i)})
        series.append((lbls, np.asarray(t, np.int64), np.asarray(bits, np.uint64)))
    return MemoryQuerier.from_series(series)


def _as_points(res: QueryResult) -> dict[Labels, dict[int, float]]:
    out: dict[Labels, dict[int, float]] = {}
    for s in res.series:
        out.setdefault(s.labels, {}).update(zip(s.t.tolist(), s.v.tolist(), strict=True))
    if res.scalar is not None:
        out.setdefault((), {})[res.scalar[0]] = res.scalar[1]
    return out


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b or abs(a - b) <= 1e-9 * max(abs(a), abs(b))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(_values, min_size=1, max_size=16), min_size=1, max_size=4))
def test_range_query_equals_instant_queries(data: list[list[float | str | None]]) -> None:
    engine = PromQLEngine(_random_querier(data))
    start, end, step = 60_000, 480_000, 60_000
    for expr in _EXPRESSIONS:
        try:
            ranged = _as_points(engine.range(expr, start, end, step))
        except EvalError as exc:
            ranged_error: str | None = str(exc)
        else:
            ranged_error = None
        merged: dict[Labels, dict[int, float]] = {}
        instant_error = None
        for t in range(start, end + 1, step):
            try:
                for lbls, pts in _as_points(engine.instant(expr, t)).items():
                    merged.setdefault(lbls, {})[t] = next(iter(pts.values()))
            except EvalError as exc:
                instant_error = str(exc)
                break
        if ranged_error or instant_error:
            assert ranged_error == instant_error, expr
            continue
        assert ranged.keys() == merged.keys(), expr
        for lbls, pts in ranged.items():
            assert pts.keys() == merged[lbls].keys(), (expr, lbls)
            assert all(_same(pts[t], merged[lbls][t]) for t in pts), (expr, lbls, pts, merged[lbls])
