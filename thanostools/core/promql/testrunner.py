"""Runs Prometheus' promqltest scripts against :class:`PromQLEngine`.

Comparison follows Prometheus' own runner: values within a relative tolerance of 1e-6 (NaN equals
NaN), results as sets unless ``expect ordered``, full label sets, ``expect fail``/``warn``/``info``
(with ``msg:``/``regex:``) and ``no_warn``/``no_info``. Native histograms are not supported: evals
that expect histogram values, or whose selections read native histogram samples (including the
custom-bucket histograms ``load_with_nhcb`` derives), are skipped and counted as such.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import re2

from thanostools.core.errors import QueryError, ThanosToolsError
from thanostools.core.labels import METRIC_NAME, Labels, format_labels, get
from thanostools.core.matchers import Matcher, matches_all
from thanostools.core.promql.engine import PromQLEngine, QueryOptions, QueryResult
from thanostools.core.promql.memquerier import MemoryQuerier
from thanostools.core.promql.promqltest import (
    ClearCmd,
    EvalCmd,
    Expectation,
    ExpectedSeries,
    LoadCmd,
    parse_file,
    parse_script,
)
from thanostools.core.series import DEFAULT_BATCH_SAMPLES, LabelResult, Querier, SelectHints, SeriesStream

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
            store.load(cmd)
        else:
            report.outcomes.append(_run_eval(cmd, store, options or QueryOptions()))
    return report


# -- storage -----------------------------------------------------------------------------------

class _Store:
    """Loaded samples: floats as raw bits, native histogram samples only as timestamps."""

    def __init__(self) -> None:
        self.floats: dict[Labels, dict[int, int]] = {}
        self.histograms: dict[Labels, set[int]] = {}
        self._querier: MemoryQuerier | None = None

    def load(self, cmd: LoadCmd) -> None:
        self._querier = None
        for labels, samples in cmd.series:
            for s in samples:
                if s.is_histogram or s.value_bits is None:
                    self.histograms.setdefault(labels, set()).add(s.t_ms)
                else:
                    self.floats.setdefault(labels, {})[s.t_ms] = s.value_bits
            if cmd.with_nhcb:
                self._add_nhcb(labels, [s.t_ms for s in samples])

    def _add_nhcb(self, labels: Labels, times: list[int]) -> None:
        name = get(labels, METRIC_NAME)
        if not name.endswith("_bucket") or not get(labels, "le"):
            return
        base = tuple(sorted([(n, v) for n, v in labels if n not in (METRIC_NAME, "le")]
                            + [(METRIC_NAME, name.removesuffix("_bucket"))]))
        self.histograms.setdefault(base, set()).update(times)

    def querier(self) -> MemoryQuerier:
        if self._querier is None:
            series = []
            for labels, points in self.floats.items():
                t = np.fromiter(points.keys(), np.int64, len(points))
                v = np.fromiter(points.values(), np.uint64, len(points))
                series.append((labels, t, v))
            self._querier = MemoryQuerier.from_series(series)
        return self._querier


class _TrackingQuerier(Querier):
    """Delegates to the float store and notes whether a selection covers native histogram samples."""

    def __init__(self, store: _Store) -> None:
        self.inner = store.querier()
        self.histograms = {lbls: np.array(sorted(ts), np.int64) for lbls, ts in store.histograms.items()}
        self.touched = False

    def select(self, matchers: Sequence[Matcher], mint: int, maxt: int, hints: SelectHints | None = None, *,
               batch_samples: int = DEFAULT_BATCH_SAMPLES) -> SeriesStream:
        for lbls, ts in self.histograms.items():
            if matches_all(matchers, lbls):
                a, b = np.searchsorted(ts, mint, "left"), np.searchsorted(ts, maxt, "right")
                if b > a:
                    self.touched = True
        return self.inner.select(matchers, mint, maxt, hints, batch_samples=batch_samples)

    def label_names(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> LabelResult:
        return self.inner.label_names(matchers, mint, maxt)

    def label_values(self, name: str, matchers: Sequence[Matcher], mint: int, maxt: int) -> LabelResult:
        return self.inner.label_values(name, matchers, mint, maxt)


# -- evaluation ------------------------------------------------------------------------------

def _run_eval(cmd: EvalCmd, store: _Store, options: QueryOptions) -> EvalOutcome:
    outcome = EvalOutcome(cmd.line, cmd.expr_text, "passed")
    if any(v.is_histogram for s in cmd.expected_series for v in s.values):
        return _skip(outcome, "expects native histogram values")
    querier = _TrackingQuerier(store)
    engine = PromQLEngine(querier, options)
    try:
        if cmd.is_instant:
            result = engine.instant(cmd.expr_text, cmd.start_ms)
        else:
            result = engine.range(cmd.expr_text, cmd.start_ms, cmd.end_ms, cmd.step_ms)
    except QueryError as exc:
        if querier.touched:
            return _skip(outcome, "reads native histogram samples")
        return _check_failure(outcome, cmd, str(exc))
    if querier.touched:
        return _skip(outcome, "reads native histogram samples")
    if cmd.expect_fail:
        return _fail(outcome, "expected the query to fail, but it succeeded")
    problem = _check_annotations(cmd, result) or _compare(cmd, result)
    return _fail(outcome, problem) if problem else outcome


def _skip(outcome: EvalOutcome, reason: str) -> EvalOutcome:
    outcome.status = "skipped"
    outcome.message = reason
    return outcome


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


def _compare(cmd: EvalCmd, result: QueryResult) -> str | None:
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
        return _compare_matrix(cmd.expected_series, result, start, end, step)
    return _compare_vector(cmd, result)


def _compare_vector(cmd: EvalCmd, result: QueryResult) -> str | None:
    expected = {s.labels: s for s in cmd.expected_series}
    seen: set[Labels] = set()
    for pos, s in enumerate(result.series):
        exp = expected.get(s.labels)
        if exp is None:
            return f"unexpected metric {format_labels(s.labels)} in result, has value {float(s.v[0])}"
        if cmd.ordered and exp.index != pos + 1:
            return f"expected metric {format_labels(s.labels)} at position {exp.index} but was at {pos + 1}"
        want = _float(exp.values[0].value_bits)
        if not almost_equal(want, float(s.v[0])):
            return f"expected {want} for {format_labels(s.labels)} but got {float(s.v[0])}"
        seen.add(s.labels)
    missing = [format_labels(lbls) for lbls in expected if lbls not in seen]
    return f"expected metric(s) not found: {', '.join(missing)}" if missing else None


def _compare_matrix(expected_series: list[ExpectedSeries], result: QueryResult, start: int, end: int,
                    step: int) -> str | None:
    expected = {s.labels: s for s in expected_series}
    labels = [s.labels for s in result.series]
    if labels != sorted(labels):
        return "range result is not sorted by labels"
    seen: set[Labels] = set()
    for s in result.series:
        exp = expected.get(s.labels)
        if exp is None:
            return f"unexpected metric {format_labels(s.labels)} in result, has {_points(s.t, s.v)}"
        seen.add(s.labels)
        want_t: list[int] = []
        want_v: list[float] = []
        for i, value in enumerate(exp.values):
            t = start + i * step
            if t > end:
                return f"expected {len(exp.values)} points for {format_labels(s.labels)}, but the time range " \
                       "cannot return this many points"
            if not value.omitted:
                want_t.append(t)
                want_v.append(_float(value.value_bits))
        if len(want_t) != len(s.t):
            return f"expected {len(want_t)} points for {format_labels(s.labels)}, got {_points(s.t, s.v)}"
        for wt, wv, gt, gv in zip(want_t, want_v, s.t.tolist(), s.v.tolist(), strict=True):
            if wt != gt:
                return f"expected a point at t={wt} for {format_labels(s.labels)}, got {_points(s.t, s.v)}"
            if not almost_equal(wv, gv):
                return f"expected {wv} at t={wt} for {format_labels(s.labels)}, got {gv}"
    missing = [format_labels(lbls) for lbls in expected if lbls not in seen]
    return f"expected metric(s) not found: {', '.join(missing)}" if missing else None


def _points(t: np.ndarray, v: np.ndarray) -> str:
    return "[" + ", ".join(f"{v_}@{t_}" for t_, v_ in zip(t.tolist(), v.tolist(), strict=True)) + "]"
