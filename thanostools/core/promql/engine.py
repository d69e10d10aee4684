"""Public PromQL API: instant and range queries over any :class:`Querier` (Prometheus 3.x semantics)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import numpy as np

from thanostools.core.errors import EvalError
from thanostools.core.labels import Labels
from thanostools.core.promql import annotations as ann
from thanostools.core.promql.evaluator import Evaluator
from thanostools.core.promql.features import PROMQL_FEATURES
from thanostools.core.promql.floathist import FloatHistogram
from thanostools.core.promql.parser.ast import Call, Expr, ValueType, type_of, walk
from thanostools.core.promql.parser.durations import needs_resolving, resolve
from thanostools.core.promql.parser.parse import parse_expr
from thanostools.core.promql.samplestats import QueryTimings, SampleStats
from thanostools.core.promql.value import RangeVector, Scalar, String, Value, Vector
from thanostools.core.promql.vecops import DUPLICATE_LABELSET, without_name
from thanostools.core.series import Querier

__all__ = ["PromQLEngine", "QueryOptions", "QueryResult", "QueryStats", "SeriesResult"]

_SORT_FUNCTIONS = frozenset({"sort", "sort_desc", "sort_by_label", "sort_by_label_desc"})


_EVAL_RECURSION_LIMIT = 10_000


@dataclass(frozen=True)
class QueryOptions:
    lookback_delta_ms: int = 300_000
    timeout_s: float | None = 120.0
    max_samples: int = 50_000_000
    max_series: int = 0
    features: frozenset[str] = PROMQL_FEATURES  # --enable-feature names that change PromQL
    default_subquery_step_ms: int = 60_000  # subqueries without a step use this (Prometheus' evaluation interval)
    batch_samples: int = 500_000  # selections are read and evaluated in batches of about this many samples


@dataclass
class SeriesResult:
    """One result series: point times ``t`` and float values ``v``; ``h`` (None when every point is a float)
    holds per point the native histogram of that point, or None where the point is a float."""

    labels: Labels
    t: np.ndarray
    v: np.ndarray
    h: list[FloatHistogram | None] | None = None

    def histogram_points(self) -> list[tuple[int, FloatHistogram]]:
        if self.h is None:
            return []
        return [(t, h) for t, h in zip(self.t.tolist(), self.h, strict=True) if h is not None]

    def float_points(self) -> tuple[np.ndarray, np.ndarray]:
        if self.h is None:
            return self.t, self.v
        mask = np.array([h is None for h in self.h], np.bool_).reshape(-1)
        return self.t[mask], self.v[mask]


@dataclass
class QueryStats:
    """``samples_loaded``/``peak_samples``: samples decoded and cells held by this evaluator (its own work and
    memory); ``samples``: Prometheus's count of the samples the query reads, and of the peak it would hold."""

    samples_loaded: int = 0
    series_loaded: int = 0
    peak_samples: int = 0
    samples: SampleStats = field(default_factory=SampleStats)
    timings: QueryTimings = field(default_factory=QueryTimings)


@dataclass
class QueryResult:
    result_type: str
    series: list[SeriesResult]
    scalar: tuple[int, float] | None = None
    string: tuple[int, str] | None = None
    warnings: list[str] = field(default_factory=list)
    infos: list[str] = field(default_factory=list)
    stats: QueryStats = field(default_factory=QueryStats)


class PromQLEngine:
    def __init__(self, querier: Querier, options: QueryOptions = QueryOptions()) -> None:
        self.querier = querier
        self.options = options

    def instant(self, query: str | Expr, time_ms: int) -> QueryResult:
        return self._run(query, time_ms, time_ms, 0)

    def range(self, query: str | Expr, start_ms: int, end_ms: int, step_ms: int) -> QueryResult:
        if step_ms <= 0:
            raise EvalError("zero or negative query resolution step widths are not accepted")
        if end_ms < start_ms:
            raise EvalError("end timestamp must not be before start time")
        return self._run(query, start_ms, end_ms, step_ms)

    def _run(self, query: str | Expr, start: int, end: int, step: int) -> QueryResult:
        began = time.perf_counter()
        if isinstance(query, str):
            text, expr = query, parse_expr(query, features=self.options.features)
        else:
            text, expr = "", query
        if needs_resolving(expr):
            try:
                expr = resolve(expr, step, end - start)
            except ValueError as exc:
                raise EvalError(str(exc)) from None
        kind = type_of(expr)
        if step and kind not in (ValueType.SCALAR, ValueType.VECTOR):
            raise EvalError(f'invalid expression type "{kind.documented}" for range query, '
                            "must be Scalar or instant Vector")
        stats = QueryStats()
        ev = Evaluator(self.querier, self.options, expr, text, start, end, step, stats)
        ev.reserve((end - start) // step + 1 if step else 1)  # every step of the output holds a value
        ts = np.arange(start, end + 1, step, dtype=np.int64) if step else np.array([start], np.int64)
        if step:
            for node in walk(expr):
                if isinstance(node, Call) and node.func.name in _SORT_FUNCTIONS:
                    ev.annotations.warn(ann.SORT_IN_RANGE_QUERY, node.pos)
        # The evaluator recurses once per nesting level (a few frames each); the parser allows 128 levels, which
        # Python's default limit of 1,000 frames does not always hold (pytest, thread pools add their own frames).
        if sys.getrecursionlimit() < _EVAL_RECURSION_LIMIT:
            sys.setrecursionlimit(_EVAL_RECURSION_LIMIT)
        eval_began = time.perf_counter()
        try:
            value = ev.eval(expr, ts)
        except RecursionError:
            # The parser bounds nesting so that this does not happen from a normal call depth.
            raise EvalError("expression nested too deeply to evaluate") from None
        sort_began = time.perf_counter()
        result = self._result(ev, value, ts)
        result.warnings = ev.storage_warnings + ev.annotations.warnings
        result.infos = ev.annotations.infos
        per_step = ev.counter.per_step()
        assert per_step is not None
        stats.samples.step_times_ms, stats.samples.per_step = ts, per_step
        stats.samples.total = ev.counter.total
        ended = time.perf_counter()
        _record_timings(stats.timings, began, eval_began, sort_began, ended)
        result.stats = stats
        return result

    def _result(self, ev: Evaluator, value: Value, ts: np.ndarray) -> QueryResult:
        if isinstance(value, String):
            return QueryResult("string", [], string=(int(ts[0]), value.value))
        if isinstance(value, Scalar):
            if ev.is_instant:
                return QueryResult("scalar", [], scalar=(int(ts[0]), float(value.values[0])))
            return QueryResult("matrix", [SeriesResult((), ts.copy(), value.values.copy())])
        if isinstance(value, RangeVector):
            return QueryResult("matrix", _range_series(value))
        series = _vector_series(ev.finalize(value), ts)
        if ev.is_instant:
            return QueryResult("vector", series)
        series.sort(key=lambda s: s.labels)
        return QueryResult("matrix", series)


def _record_timings(t: QueryTimings, began: float, eval_began: float, sort_began: float, ended: float) -> None:
    """Timings from the moments the query started, its evaluation started, its result was sorted and it ended;
    ``t.query_preparation`` (time spent opening series sets, inside the evaluation) is already set."""
    t.inner_eval = max(0.0, sort_began - eval_began - t.query_preparation)
    t.result_sort = ended - sort_began
    t.eval_total = ended - eval_began
    t.exec_total = ended - began


def _vector_series(v: Vector, ts: np.ndarray) -> list[SeriesResult]:
    """Every row with a sample as a series of its present steps."""
    rows = np.flatnonzero(v.present.any(axis=1))
    if v.hist is None and bool(v.present[rows].all()):
        # Every kept row is full (always so for instant queries): the points of all rows in two bulk copies.
        times = list(np.broadcast_to(ts, (rows.shape[0], ts.shape[0])).copy())
        return list(map(SeriesResult, [v.labels[i] for i in rows.tolist()], times, list(v.values[rows])))
    full = np.asarray(v.present.all(axis=1))
    has_hist = np.asarray(v.is_hist.any(axis=1), np.bool_)
    out = []
    for i in rows.tolist():
        mask = slice(None) if full[i] else v.present[i]
        hist = list(v.hist[i][mask]) if v.hist is not None and has_hist[i] else None
        out.append(SeriesResult(v.labels[i], ts[mask].copy(), v.values[i][mask].copy(), hist))
    return out


def _range_series(rv: RangeVector) -> list[SeriesResult]:
    """An instant query's range vector: every series' samples inside its window."""
    rows: list[SeriesResult] = []
    for i, lbls in enumerate(rv.labels):
        a, b = int(rv.lo[i, 0]), int(rv.hi[i, 0])
        if b > a:
            out_labels = without_name(lbls) if rv.drop_name[i] else lbls
            hist = list(rv.h[a:b]) if rv.h is not None and rv.h[a:b].astype(np.bool_).any() else None
            rows.append(SeriesResult(out_labels, rv.t[a:b].copy(), rv.v[a:b].copy(), hist))
    if len({r.labels for r in rows}) != len(rows):
        raise EvalError(DUPLICATE_LABELSET)
    rows.sort(key=lambda s: s.labels)
    return rows
