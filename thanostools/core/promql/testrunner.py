"""Runs Prometheus' promqltest scripts against :class:`PromQLEngine`.

Comparison follows Prometheus' own runner: values within a relative tolerance of 1e-6 (NaN equals
NaN), results as sets unless ``expect ordered``, full label sets, ``expect fail``/``warn``/``info``
(with ``msg:``/``regex:``) and ``no_warn``/``no_info``. Native histograms (``{{…}}``) are loaded as float
histograms with the counter-reset hints Prometheus' storage hands its engine (see :func:`storage_hints`) and
compared as Prometheus compares them (schema, count, sum, zero bucket, custom bounds, non-empty buckets).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import re2

from thanostools.core.errors import QueryError, ThanosToolsError
from thanostools.core.histograms import build_batch
from thanostools.core.labels import Labels, format_labels
from thanostools.core.promql.engine import PromQLEngine, QueryOptions, QueryResult, SeriesResult
from thanostools.core.promql.floathist import HINT_GAUGE, HINT_NOT_RESET, HINT_RESET, HINT_UNKNOWN, FloatHistogram
from thanostools.core.promql.histdesc import HistogramResolver
from thanostools.core.promql.memquerier import MemoryQuerier
from thanostools.core.promql.nhcb import NHCBConversionError, classic_to_nhcb
from thanostools.core.promql.promqltest import (
    ClearCmd,
    EvalCmd,
    Expectation,
    ExpectedSeries,
    LoadCmd,
    SeqValue,
    parse_file,
    parse_script,
)
from thanostools.core.series import KIND_FLOAT_HISTOGRAM, HistogramColumns

__all__ = ["EvalOutcome", "ScriptReport", "Summary", "almost_equal", "run_files", "run_script"]

EPSILON = 1e-6
_MIN_NORMAL = 2.2250738585072014e-308
_MAX_FLOAT = 1.7976931348623157e308


def almost_equal(a: float, b: float, epsilon: float = EPSILON) -> bool:
    """Prometheus' ``almost.Equal``: relative tolerance, and NaN equals NaN."""
    if math.isnan(a) and math.isnan(b):
        return True
    if a == b:
        return True
    abs_sum = abs(a) + abs(b)
    diff = abs(a - b)
    if a == 0 or b == 0 or abs_sum < _MIN_NORMAL:
        return diff < epsilon * _MIN_NORMAL
    return diff / min(abs_sum, _MAX_FLOAT) < epsilon


@dataclass
class EvalOutcome:
    line: int
    expr: str
    status: str  # "passed", "failed" or "skipped"
    message: str = ""


@dataclass
class ScriptReport:
    name: str
    outcomes: list[EvalOutcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def passed(self) -> int:
        return self.count("passed")

    @property
    def failed(self) -> int:
        return self.count("failed")

    @property
    def skipped(self) -> int:
        return self.count("skipped")

    @property
    def failures(self) -> list[EvalOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]


@dataclass
class Summary:
    reports: list[ScriptReport]

    @property
    def passed(self) -> int:
        return sum(r.passed for r in self.reports)

    @property
    def failed(self) -> int:
        return sum(r.failed for r in self.reports)

    @property
    def skipped(self) -> int:
        return sum(r.skipped for r in self.reports)

    @property
    def line(self) -> str:
        return f"promqltest: {self.passed} passed, {self.failed} failed, {self.skipped} skipped"

    def __str__(self) -> str:
        return self.line


def run_files(paths: Iterable[str | Path], options: QueryOptions | None = None) -> Summary:
    return Summary([run_script(Path(p), options) for p in paths])


def run_script(path_or_text: str | Path, options: QueryOptions | None = None) -> ScriptReport:
    """Run one script, given as a path or as the script text itself."""
    is_path = isinstance(path_or_text, Path) or ("\n" not in path_or_text and Path(path_or_text).is_file())
    report = ScriptReport(Path(path_or_text).name if is_path else "<script>")
    try:
        if is_path:
            commands = parse_file(Path(path_or_text), parse_exprs=False)
        else:
            commands = parse_script(str(path_or_text), parse_exprs=False)
    except ThanosToolsError as exc:
        report.outcomes.append(EvalOutcome(getattr(exc, "line", 0), "", "failed", f"script error: {exc}"))
        return report
    store = _Store()
    for cmd in commands:
        if isinstance(cmd, ClearCmd):
            store = _Store()
        elif isinstance(cmd, LoadCmd):
            try:
                store.load(cmd)
            except NHCBConversionError as exc:
                report.outcomes.append(EvalOutcome(cmd.line, "", "failed", f"load_with_nhcb: {exc}"))
                return report
        else:
            report.outcomes.append(_run_eval(cmd, store, options or QueryOptions()))
    return report


# -- storage -----------------------------------------------------------------------------------

class _Store:
    """Loaded samples per series and timestamp: float bits or a native histogram."""

    def __init__(self) -> None:
        self.samples: dict[Labels, dict[int, int | FloatHistogram]] = {}
        self.resolver = HistogramResolver()
        self._querier: MemoryQuerier | None = None

    def load(self, cmd: LoadCmd) -> None:
        self._querier = None
        loaded: list[tuple[Labels, dict[int, int | FloatHistogram]]] = []
        for labels, samples in cmd.series:
            points: dict[int, int | FloatHistogram] = {}
            for s in samples:
                if s.histogram is not None:
                    points[s.t_ms] = self.resolver.resolve(s.histogram)
                elif s.value_bits is not None:
                    points[s.t_ms] = s.value_bits
            loaded.append((labels, points))
        converted = classic_to_nhcb(loaded) if cmd.with_nhcb else {}
        merged: list[tuple[Labels, Mapping[int, int | FloatHistogram]]] = [*loaded, *converted.items()]
        for labels, new_points in merged:
            self.samples.setdefault(labels, {}).update(new_points)

    def querier(self) -> MemoryQuerier:
        if self._querier is None:
            labels, ts, vs, hists = [], [], [], []
            for lbls, points in self.samples.items():
                times = sorted(points)
                values = [points[t] for t in times]
                labels.append(lbls)
                ts.append(np.array(times, np.int64))
                vs.append(np.array([_sample_bits(v) for v in values], np.uint64))
                hists.append(_histogram_columns(times, values))
            self._querier = MemoryQuerier(labels, ts, vs, hists)
        return self._querier


def _sample_bits(value: int | FloatHistogram) -> int:
    if isinstance(value, FloatHistogram):
        return int(np.float64(value.sum).view(np.uint64))
    return value


def _histogram_columns(times: list[int], values: list[int | FloatHistogram]) -> HistogramColumns | None:
    rows = [i for i, v in enumerate(values) if isinstance(v, FloatHistogram)]
    if not rows:
        return None
    hints = storage_hints(values)
    samples = [h.with_hint(hints[i]).to_sample(times[i]) for i in rows if isinstance(h := values[i], FloatHistogram)]
    kind = np.zeros(len(values), np.uint8)
    kind[rows] = KIND_FLOAT_HISTOGRAM
    row = np.full(len(values), -1, np.int64)
    row[rows] = np.arange(len(rows))
    empty = HistogramColumns.of_floats(0)
    return HistogramColumns(kind, row, empty.ints, build_batch(samples, is_float=True))


def storage_hints(values: list[int | FloatHistogram]) -> list[int]:
    """The counter-reset hint each histogram gets back from Prometheus' storage (its chunks): a gauge stays a
    gauge; the first histogram of a chunk is "unknown" whatever the chunk's header says (Prometheus cannot trust
    it, prometheus/prometheus#15346), every later one "not a reset". A new chunk starts after a float or stale
    marker, at a reset (given or detected), at a change of gauge-ness, schema, zero width or custom bounds."""
    out = [HINT_UNKNOWN] * len(values)
    prev: FloatHistogram | None = None
    for i, v in enumerate(values):
        if not isinstance(v, FloatHistogram):
            prev = None
            continue
        if v.hint == HINT_GAUGE:
            out[i] = HINT_GAUGE
        elif not _starts_chunk(prev, v):
            out[i] = HINT_NOT_RESET
        prev = v
    return out


def _starts_chunk(prev: FloatHistogram | None, v: FloatHistogram) -> bool:
    if prev is None or prev.hint == HINT_GAUGE or _layout_changed(prev, v):
        return True
    return v.hint == HINT_RESET or v.with_hint(HINT_UNKNOWN).detect_reset(prev)


def _layout_changed(a: FloatHistogram, b: FloatHistogram) -> bool:
    return a.schema != b.schema or a.zero_threshold != b.zero_threshold or \
        not np.array_equal(a.custom_values, b.custom_values)


# -- evaluation ------------------------------------------------------------------------------

def _run_eval(cmd: EvalCmd, store: _Store, options: QueryOptions) -> EvalOutcome:
    outcome = EvalOutcome(cmd.line, cmd.expr_text, "passed")
    engine = PromQLEngine(store.querier(), options)
    try:
        if cmd.is_instant:
            result = engine.instant(cmd.expr_text, cmd.start_ms)
        else:
            result = engine.range(cmd.expr_text, cmd.start_ms, cmd.end_ms, cmd.step_ms)
    except QueryError as exc:
        return _check_failure(outcome, cmd, str(exc))
    if cmd.expect_fail:
        return _fail(outcome, "expected the query to fail, but it succeeded")
    problem = _check_annotations(cmd, result) or _compare(cmd, result, store.resolver)
    return _fail(outcome, problem) if problem else outcome


def _fail(outcome: EvalOutcome, message: str) -> EvalOutcome:
    outcome.status = "failed"
    outcome.message = message
    return outcome


def _check_failure(outcome: EvalOutcome, cmd: EvalCmd, error: str) -> EvalOutcome:
    fails = cmd.expecting("fail")
    if not fails:
        return _fail(outcome, f"unexpected error: {error}")
    if not _matches(fails[0], error):
        return _fail(outcome, f"expected error {_describe(fails[0])}, got: {error}")
    return outcome


def _matches(e: Expectation, text: str) -> bool:
    if e.message is not None:
        return text == e.message
    if e.regex is not None:
        return re2.search(e.regex, text) is not None
    return True


def _describe(e: Expectation) -> str:
    if e.message is not None:
        return f"msg {e.message!r}"
    if e.regex is not None:
        return f"regex {e.regex!r}"
    return "(any)"


def _check_annotations(cmd: EvalCmd, result: QueryResult) -> str | None:
    for kind, got in (("warn", result.warnings), ("info", result.infos)):
        expected = cmd.expecting(kind)
        if expected:
            if not got:
                return f"expected {kind} annotations, got none"
            for e in expected:
                if not any(_matches(e, g) for g in got):
                    return f"expected {kind} annotation {_describe(e)}, got {got}"
            for g in got:
                if not any(_matches(e, g) for e in expected):
                    return f"unexpected {kind} annotation {g!r}"
        if cmd.expecting(f"no_{kind}") and got:
            return f"unexpected {kind} annotations: {got}"
    return None


def _float(bits: int | None) -> float:
    assert bits is not None
    return float(struct.unpack("<d", struct.pack("<Q", bits))[0])


def _compare(cmd: EvalCmd, result: QueryResult, resolver: HistogramResolver) -> str | None:
    if cmd.expected_string is not None:
        if result.result_type != "string" or result.string is None:
            return f"expected string {cmd.expected_string!r}, got {result.result_type}"
        return None if result.string[1] == cmd.expected_string else \
            f"expected string {cmd.expected_string!r}, got {result.string[1]!r}"
    if cmd.expected_scalar_bits is not None:
        if result.result_type != "scalar" or result.scalar is None:
            return f"expected scalar result, got {result.result_type}"
        want = _float(cmd.expected_scalar_bits)
        return None if almost_equal(want, result.scalar[1]) else f"expected scalar {want}, got {result.scalar[1]}"
    if result.result_type == "scalar":
        return f"expected vector or matrix result, got scalar {result.scalar}"
    if result.result_type == "string":
        return f"expected vector or matrix result, got string {result.string}"
    if result.result_type == "matrix":
        if cmd.ordered:
            return "expected ordered result, but query returned a matrix"
        if cmd.is_instant:
            if cmd.range_vector is None:
                return "query returned a range vector; the script lacks 'expect range vector'"
            start, end, step = cmd.range_vector
        else:
            start, end, step = cmd.start_ms, cmd.end_ms, cmd.step_ms
        return _compare_matrix(cmd.expected_series, result, start, end, step, resolver)
    return _compare_vector(cmd, result, resolver)


def _compare_vector(cmd: EvalCmd, result: QueryResult, resolver: HistogramResolver) -> str | None:
    expected = {s.labels: s for s in cmd.expected_series}
    seen: set[Labels] = set()
    for pos, s in enumerate(result.series):
        got = _point(s, 0)
        exp = expected.get(s.labels)
        if exp is None:
            return f"unexpected metric {format_labels(s.labels)} in result, has value {_show(got)}"
        if cmd.ordered and exp.index != pos + 1:
            return f"expected metric {format_labels(s.labels)} at position {exp.index} but was at {pos + 1}"
        problem = _compare_value(_expected_value(exp.values[0], resolver), got)
        if problem:
            return f"{problem} for {format_labels(s.labels)}"
        seen.add(s.labels)
    missing = [format_labels(lbls) for lbls in expected if lbls not in seen]
    return f"expected metric(s) not found: {', '.join(missing)}" if missing else None


def _compare_matrix(expected_series: list[ExpectedSeries], result: QueryResult, start: int, end: int,
                    step: int, resolver: HistogramResolver) -> str | None:
    expected = {s.labels: s for s in expected_series}
    labels = [s.labels for s in result.series]
    if labels != sorted(labels):
        return "range result is not sorted by labels"
    seen: set[Labels] = set()
    for s in result.series:
        exp = expected.get(s.labels)
        if exp is None:
            return f"unexpected metric {format_labels(s.labels)} in result, has {_points(s)}"
        seen.add(s.labels)
        want: list[tuple[int, float | FloatHistogram]] = []
        for i, value in enumerate(exp.values):
            t = start + i * step
            if t > end:
                return f"expected {len(exp.values)} points for {format_labels(s.labels)}, but the time range " \
                       "cannot return this many points"
            if not value.omitted:
                want.append((t, _expected_value(value, resolver)))
        if len(want) != len(s.t):
            return f"expected {len(want)} points for {format_labels(s.labels)}, got {_points(s)}"
        for k, (wt, wv) in enumerate(want):
            gt = int(s.t[k])
            if wt != gt:
                return f"expected a point at t={wt} for {format_labels(s.labels)}, got {_points(s)}"
            problem = _compare_value(wv, _point(s, k))
            if problem:
                return f"{problem} at t={wt} for {format_labels(s.labels)}"
    missing = [format_labels(lbls) for lbls in expected if lbls not in seen]
    return f"expected metric(s) not found: {', '.join(missing)}" if missing else None


def _expected_value(value: SeqValue, resolver: HistogramResolver) -> float | FloatHistogram:
    if value.histogram is not None:
        return resolver.resolve(value.histogram)
    return _float(value.value_bits)


def _point(s: SeriesResult, k: int) -> float | FloatHistogram:
    h = None if s.h is None else s.h[k]
    return h if h is not None else float(s.v[k])


def _show(v: float | FloatHistogram) -> str:
    return v.test_expression() if isinstance(v, FloatHistogram) else str(v)


def _compare_value(want: float | FloatHistogram, got: float | FloatHistogram) -> str | None:
    if isinstance(want, FloatHistogram) != isinstance(got, FloatHistogram):
        return f"expected {_show(want)} but got {_show(got)}"
    if isinstance(want, FloatHistogram):
        assert isinstance(got, FloatHistogram)
        return None if histograms_match(want, got) else f"expected {_show(want)} but got {_show(got)}"
    assert isinstance(got, float)
    return None if almost_equal(want, got) else f"expected {want} but got {got}"


def histograms_match(want: FloatHistogram, got: FloatHistogram) -> bool:
    """Prometheus' comparison: schema, count, sum, custom bounds, zero bucket and the non-empty buckets."""
    a, b = want.compact(), got.compact()
    if a.schema != b.schema or not almost_equal(a.count, b.count) or not almost_equal(a.sum, b.sum):
        return False
    if a.is_custom and not np.array_equal(a.custom_values, b.custom_values):
        return False
    if a.zero_threshold != b.zero_threshold or not almost_equal(a.zero_count, b.zero_count):
        return False
    for wi, wc, gi, gc in ((a.pos_idx, a.pos, b.pos_idx, b.pos), (a.neg_idx, a.neg, b.neg_idx, b.neg)):
        if not np.array_equal(wi, gi):
            return False
        if not all(almost_equal(x, y) for x, y in zip(wc.tolist(), gc.tolist(), strict=True)):
            return False
    return True


def _points(s: SeriesResult) -> str:
    return "[" + ", ".join(f"{_show(_point(s, k))}@{t}" for k, t in enumerate(s.t.tolist())) + "]"
