"""The column-oriented PromQL evaluator: every node is evaluated for all its steps at once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from thanostools.core.errors import EvalError, QueryTimeoutError
from thanostools.core.promql.aggregate import eval_aggregate
from thanostools.core.promql.annotations import Annotations
from thanostools.core.promql.binop import eval_binary, negated
from thanostools.core.promql.calls import eval_call
from thanostools.core.promql.extended import eval_extended_selector, extended_selector
from thanostools.core.promql.parser.ast import (
    AggregateExpr,
    BinaryExpr,
    Call,
    Expr,
    MatrixSelector,
    NumberLiteral,
    ParenExpr,
    StartOrEnd,
    StringLiteral,
    SubqueryExpr,
    UnaryExpr,
    VectorSelector,
    children,
)
from thanostools.core.promql.samplestats import StepCounter, value_points, vector_points, window_points
from thanostools.core.promql.selection import (
    RangeBatches,
    RowSink,
    Selection,
    batch_range_vector,
    lookup_into,
    range_vector,
    row_batches,
    vector_range_vector,
    window_parts,
)
from thanostools.core.promql.value import RangeVector, Scalar, String, Value, Vector, value_size
from thanostools.core.promql.vecops import merge_duplicates, unwrap_parens, without_name
from thanostools.core.series import SampleBatch, SelectHints

if TYPE_CHECKING:
    from thanostools.core.promql.engine import QueryOptions, QueryStats
    from thanostools.core.series import Querier

TOO_MANY_SAMPLES = "query processing would load too many samples into memory in query execution"
DEFAULT_LOOKBACK_MS = 300_000
DEFAULT_SUBQUERY_STEP_MS = 60_000


class Evaluator:
    """Evaluates one query. ``start``/``end``/``step`` are the query's (step 0 for instant queries)."""

    def __init__(self, querier: Querier, options: QueryOptions, expr: Expr, query_text: str,
                 start: int, end: int, step: int, stats: QueryStats) -> None:
        self.querier = querier
        self.options = options
        self.start = start
        self.end = end
        self.step = step
        self.stats = stats
        self.annotations = Annotations(query_text)
        self.storage_warnings: list[str] = []
        self.current = 0
        self.deadline = None if options.timeout_s is None else time.monotonic() + options.timeout_s
        self.hint_paths = _collect_hint_paths(expr)
        self.stats_selectors = _collect_stats_selectors(expr)
        self.bare_subquery = id(unwrap_parens(expr)) if isinstance(unwrap_parens(expr), SubqueryExpr) else None
        # Prometheus's view of the query: samples read per step, and samples held (``points``) for its peak.
        self.counter = StepCounter((end - start) // step + 1 if step else 1)
        self.points = 0
        # Nodes whose value is consumed by an operation that reads floats only: their histogram samples are dropped.
        self.float_only: set[int] = set()

    @property
    def is_instant(self) -> bool:
        return self.step == 0

    @property
    def lookback_ms(self) -> int:
        return self.options.lookback_delta_ms or DEFAULT_LOOKBACK_MS

    # -- bookkeeping ---------------------------------------------------------------------------

    def check_deadline(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise QueryTimeoutError("query timed out in expression evaluation")

    def account(self, samples: int) -> None:
        self.current += samples
        if self.current > self.stats.peak_samples:
            self.stats.peak_samples = self.current
        if self.current > self.options.max_samples:
            raise EvalError(TOO_MANY_SAMPLES)

    def reserve(self, samples: int) -> None:
        """Fail before allocating room for ``samples`` more when holding them would go over the limit.

        Values are dense, so one (series, step) cell counts as a sample whether or not it holds one.
        Sizes are products of Python ints (series x steps, steps x windows): they cannot overflow.
        """
        if self.current + samples > self.options.max_samples:
            raise EvalError(TOO_MANY_SAMPLES)

    @property
    def batch_samples(self) -> int:
        """How much one batch (of samples, windows or rows) may hold: smaller under a small sample limit,
        so that one batch does not crowd out the results."""
        return max(1, min(self.options.batch_samples, self.options.max_samples // 4))

    def affordable_rows(self, steps: int) -> int:
        """How many more ``steps``-wide rows fit under the limit."""
        return max(0, self.options.max_samples - self.current) // max(1, steps)

    def hold_points(self, points: int) -> None:
        """Prometheus's peak: ``points`` samples held on top of those the evaluation holds now."""
        if self.points + points > self.stats.samples.peak:
            self.stats.samples.peak = self.points + points

    def read_windows(self, parts: Iterator[RangeVector]) -> Iterator[RangeVector]:
        """Range-vector parts whose windows count as read at their steps.

        Prometheus goes series by series: it holds the window of the step it is at on top of the outputs of the
        series before it, and once a series is done, its outputs (taken to be one per non-empty window) with its
        last window."""
        done = 0
        for rv in parts:
            if len(rv) and rv.steps:
                sizes = window_points(rv)
                self.counter.add(sizes.sum(axis=0))
                outputs = np.count_nonzero(rv.hi > rv.lo, axis=1)
                until = np.cumsum(outputs) + done
                during = until - outputs + sizes.max(axis=1)
                self.hold_points(int(np.maximum(during, until + sizes[:, -1]).max()))
                done = int(until[-1])
            yield rv

    def held(self, parts: Iterator[RangeVector]) -> Iterator[RangeVector]:
        """Range vectors whose windows count against the limit while their consumer works on them."""
        for rv in parts:
            size = int(rv.lo.size)
            self.account(size)
            self.check_deadline()
            yield rv
            self.current -= size

    # -- dispatch ------------------------------------------------------------------------------

    def eval(self, node: Expr, ts: np.ndarray) -> Value:
        self.check_deadline()
        before, points_before = self.current, self.points
        result = self._dispatch(node, ts)
        if id(node) in self.float_only and isinstance(result, Vector | RangeVector):
            result = result.floats_only()
        if isinstance(result, Vector):
            result = result.nonempty()
        self.current = before
        self.account(value_size(result))
        points = value_points(result)
        if not isinstance(node, SubqueryExpr):  # a subquery's result is the inner result, already held
            self.hold_points(points)  # the operands are still held while the result is made
        self.points = points_before + points
        return result

    def eval_vector(self, node: Expr, ts: np.ndarray) -> Vector:
        v = self.eval(node, ts)
        if not isinstance(v, Vector):
            raise EvalError(f"expected instant vector, got {type(v).__name__.lower()}")
        return v

    def eval_scalar(self, node: Expr, ts: np.ndarray) -> np.ndarray:
        v = self.eval(node, ts)
        if not isinstance(v, Scalar):
            raise EvalError(f"expected scalar, got {type(v).__name__.lower()}")
        return v.values

    def eval_range(self, node: Expr, ts: np.ndarray) -> RangeVector:
        inner = unwrap_parens(node)
        v = self.eval(inner, ts)
        if not isinstance(v, RangeVector):
            raise EvalError(f"expected range vector, got {type(v).__name__.lower()}")
        return v

    def _dispatch(self, node: Expr, ts: np.ndarray) -> Value:
        if isinstance(node, NumberLiteral):
            return Scalar(np.full(ts.shape[0], node.value))
        if isinstance(node, StringLiteral):
            return String(node.value)
        if isinstance(node, ParenExpr):
            return self.eval(node.expr, ts)
        if isinstance(node, UnaryExpr):
            return self._unary(node, ts)
        if isinstance(node, VectorSelector | MatrixSelector) and extended_selector(node):
            return eval_extended_selector(self, node, ts)
        if isinstance(node, VectorSelector):
            return self.select_vector(node, ts)
        if isinstance(node, MatrixSelector):
            return self.select_range(node, ts)
        if isinstance(node, SubqueryExpr):
            return self.subquery(node, ts)
        if isinstance(node, BinaryExpr):
            return eval_binary(self, node, ts)
        if isinstance(node, AggregateExpr):
            return eval_aggregate(self, node, ts)
        assert isinstance(node, Call)
        return eval_call(self, node, ts)

    def _unary(self, node: UnaryExpr, ts: np.ndarray) -> Value:
        v = self.eval(node.expr, ts)
        if node.op == "+":
            return v
        if isinstance(v, Scalar):
            return Scalar(-v.values)
        assert isinstance(v, Vector)
        return Vector(v.labels, -v.values, v.present, np.ones(len(v), np.bool_), hist=negated(v.hist))

    # -- selectors -----------------------------------------------------------------------------

    def ref_times(self, timestamp: int | None, start_or_end: StartOrEnd | None, offset: int,
                  ts: np.ndarray) -> np.ndarray:
        """Per-step times a selector looks at: ``@`` (or the evaluation time) minus the offset."""
        if start_or_end is StartOrEnd.START:
            base = np.full(ts.shape[0], self.start, np.int64)
        elif start_or_end is StartOrEnd.END:
            base = np.full(ts.shape[0], self.end, np.int64)
        elif timestamp is not None:
            base = np.full(ts.shape[0], timestamp, np.int64)
        else:
            base = ts.astype(np.int64)
        return base - offset

    def _selection(self, node: VectorSelector, mint: int, maxt: int, range_ms: int) -> Selection:
        func, grouping, by = self.hint_paths.get(id(node), ("", (), False))
        hints = SelectHints(start=mint, end=maxt, step=self.step, func=func, range=range_ms,
                            grouping=grouping, by=by)
        return Selection(self, list(node.matchers), mint, maxt, hints)

    def too_many_series(self, n: int) -> EvalError:
        return EvalError(f"query would select too many series: {n} series matched by one selector, "
                         f"limit is {self.options.max_series}")

    def select_vector(self, node: VectorSelector, ts: np.ndarray, with_ts: bool = False) -> Vector:
        """The selector at every step; ``with_ts`` keeps the sample times (for ``timestamp()``)."""
        steps = ts.shape[0]
        if steps == 0:
            return Vector.empty(0)
        ref = self.ref_times(node.timestamp, node.start_or_end, node.offset, ts)
        lookback = self.lookback_ms
        selection = self._selection(node, int(ref.min()) - lookback + 1, int(ref.max()), 0)
        sink = RowSink(self, selection.bound, steps, with_ts)
        for batch in selection:
            self.account(lookup_into(sink, batch, ref, lookback, stats=id(node) in self.stats_selectors))
        vec = sink.vector()
        self.counter.add(vector_points(vec))
        return vec

    def iter_range(self, node: Expr, ts: np.ndarray) -> RangeBatches:
        """A range-vector argument as consecutive batches of series (one batch unless it can stream)."""
        batches = self._iter_range(node, ts)
        if id(node) in self.float_only:
            return RangeBatches(batches.bound, (rv.floats_only() for rv in batches.batches))
        return batches

    def _iter_range(self, node: Expr, ts: np.ndarray) -> RangeBatches:
        inner = unwrap_parens(node)
        if isinstance(inner, MatrixSelector) and ts.shape[0]:
            vs = inner.vector_selector
            ref = self.ref_times(vs.timestamp, vs.start_or_end, vs.offset, ts)
            selection = self._selection(vs, int(ref.min()) - inner.range + 1, int(ref.max()), inner.range)
            parts = window_parts(self, selection, ref, ts, inner.range, stats=id(vs) in self.stats_selectors)
            return RangeBatches(selection.bound, self.held(self.read_windows(parts)))
        if isinstance(inner, SubqueryExpr):
            vec, inner_ts, ref, _ = self._subquery_inner(inner, ts)
            parts = self._subquery_batches(vec, inner_ts, ref, ts, inner.range)
            return RangeBatches(len(vec), self.held(self.read_windows(parts)))
        rv = self.eval_range(node, ts)
        return RangeBatches(len(rv), iter([rv]))

    def _subquery_batches(self, vec: Vector, inner_ts: np.ndarray, ref: np.ndarray, ts: np.ndarray,
                          rng: int) -> Iterator[RangeVector]:
        steps = int(ts.shape[0])
        for rows in row_batches(vec, self.batch_samples, steps):
            self.reserve(self._windows_size(vec.present[rows], steps))
            yield vector_range_vector(vec.take(rows), inner_ts, ref, ts, rng)

    @staticmethod
    def _windows_size(present: np.ndarray, steps: int) -> int:
        """What a subquery's range vector over these rows holds: their samples and a window per row and step."""
        return int(np.count_nonzero(present)) + int(present.shape[0]) * steps

    def select_range(self, node: MatrixSelector, ts: np.ndarray) -> RangeVector:
        vs = node.vector_selector
        ref = self.ref_times(vs.timestamp, vs.start_or_end, vs.offset, ts)
        if ts.shape[0] == 0:
            return range_vector([], np.zeros(0, np.int64), np.zeros(0), np.zeros(1, np.int64), ref, ts,
                                node.range, np.zeros(0, np.bool_))
        batches: list[SampleBatch] = []
        # The selection counts a batch until the next is asked for; batches kept are counted here from then on.
        for batch in self._selection(vs, int(ref.min()) - node.range + 1, int(ref.max()), node.range):
            if batches:
                self.account(int(batches[-1].t.shape[0]))
            batches.append(batch)
        if batches:
            self.account(int(batches[-1].t.shape[0]))
        self.reserve(sum(len(b) for b in batches) * int(ts.shape[0]))
        rv = batch_range_vector(SampleBatch.concat(batches), ref, ts, node.range, stats=id(vs) in self.stats_selectors)
        return next(self.read_windows(iter([rv])))

    def _subquery_inner(self, node: SubqueryExpr, ts: np.ndarray) -> tuple[Vector, np.ndarray, np.ndarray, int]:
        """The inner expression evaluated once on the subquery's own step grid, with that grid, ``ref`` and the
        samples the inner evaluation read (which Prometheus counts apart)."""
        ref = self.ref_times(node.timestamp, node.start_or_end, node.offset, ts)
        step = node.step or self.options.default_subquery_step_ms or DEFAULT_SUBQUERY_STEP_MS
        if ts.shape[0] == 0:
            inner_ts = np.zeros(0, np.int64)
        else:
            first = (int(ref.min()) - node.range) // step * step + step
            last = int(ref.max())
            self.reserve(max(0, (last - first) // step + 1))  # the grid holds a value per step
            inner_ts = np.arange(first, last + 1, step, dtype=np.int64)
        outer, self.counter = self.counter, self.counter.child()
        try:
            inner = self.eval(node.expr, inner_ts)
            read = self.counter.total
        finally:
            self.counter = outer
        if not isinstance(inner, Vector):
            raise EvalError("subquery is only allowed on instant vector")
        return inner, inner_ts, ref, read

    def subquery(self, node: SubqueryExpr, ts: np.ndarray) -> RangeVector:
        inner, inner_ts, ref, read = self._subquery_inner(node, ts)
        self.reserve(self._windows_size(inner.present, int(ts.shape[0])))
        rv = vector_range_vector(inner, inner_ts, ref, ts, node.range)
        if id(node) == self.bare_subquery:
            self.counter.add_at_last_step(read)
            return rv
        return next(self.read_windows(iter([rv])))

    # -- output ------------------------------------------------------------------------------

    def finalize(self, v: Vector) -> Vector:
        """Drop names marked for removal, then merge series that now share a label set."""
        labels = [without_name(lbls) if d else lbls for lbls, d in zip(v.labels, v.drop_name, strict=True)]
        out = Vector(labels, v.values, v.present, np.zeros(len(labels), np.bool_), hist=v.hist)
        return merge_duplicates(out, self.check_deadline)


def _collect_hint_paths(expr: Expr) -> dict[int, tuple[str, tuple[str, ...], bool]]:
    """Selector id -> (enclosing function/aggregation, grouping, by), as Prometheus derives hints.

    The enclosing function is the nearest aggregation or call above the selector, unless a binary
    operator comes first; grouping comes from an aggregation directly above it. Both are handed
    down the tree, so deep trees cost one visit per node.
    """
    out: dict[int, tuple[str, tuple[str, ...], bool]] = {}
    stack: list[tuple[Expr, str, Expr | None]] = [(expr, "", None)]
    while stack:
        node, func, parent = stack.pop()
        if isinstance(node, VectorSelector):
            grouping: tuple[str, ...] = ()
            by = False
            if isinstance(parent, AggregateExpr):
                grouping, by = parent.grouping, not parent.without
            out[id(node)] = (func, grouping, by)
        if isinstance(node, AggregateExpr):
            func = node.op
        elif isinstance(node, Call):
            func = node.func.name
        elif isinstance(node, BinaryExpr):
            func = ""
        for child in children(node):
            stack.append((child, func, node))
    return out


_STATS_FUNCTIONS = frozenset({"histogram_count", "histogram_sum", "histogram_avg"})
_BUCKET_FUNCTIONS = frozenset({"histogram_quantile", "histogram_quantiles", "histogram_fraction"})
_TRIM_OPERATORS = frozenset({"</", ">/"})


def _collect_stats_selectors(expr: Expr) -> set[int]:
    """Ids of the vector selectors Prometheus reads for counts and sums only: below ``histogram_count``,
    ``histogram_sum`` or ``histogram_avg``, with no subquery, bucket-reading function or trim operator anywhere
    above them."""
    out: set[int] = set()
    stack: list[tuple[Expr, bool, bool]] = [(expr, False, False)]
    while stack:
        node, wanted, vetoed = stack.pop()
        if isinstance(node, Call):
            wanted = wanted or node.func.name in _STATS_FUNCTIONS
            vetoed = vetoed or node.func.name in _BUCKET_FUNCTIONS
        elif isinstance(node, SubqueryExpr) or (isinstance(node, BinaryExpr) and node.op in _TRIM_OPERATORS):
            vetoed = True
        if isinstance(node, VectorSelector) and wanted and not vetoed:
            out.add(id(node))
        stack.extend((child, wanted, vetoed) for child in children(node))
    return out
