"""The column-oriented PromQL evaluator: every node is evaluated for all its steps at once."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from thanostools.core.errors import EvalError, QueryTimeoutError
from thanostools.core.kernels import promql as kern
from thanostools.core.labels import Labels
from thanostools.core.promql.aggregate import eval_aggregate
from thanostools.core.promql.annotations import Annotations
from thanostools.core.promql.ast import (
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
from thanostools.core.promql.binop import eval_binary
from thanostools.core.promql.calls import eval_call
from thanostools.core.promql.value import RangeVector, Scalar, String, Value, Vector, value_size
from thanostools.core.promql.vecops import merge_duplicates, unwrap_parens, without_name
from thanostools.core.series import STALE_NAN_BITS, SampleBatch, SelectHints

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

    @property
    def is_instant(self) -> bool:
        return self.step == 0

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

    # -- dispatch ------------------------------------------------------------------------------

    def eval(self, node: Expr, ts: np.ndarray) -> Value:
        self.check_deadline()
        before = self.current
        result = self._dispatch(node, ts)
        if isinstance(result, Vector):
            result = result.nonempty()
        self.current = before
        self.account(value_size(result))
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
        return Vector(v.labels, -v.values, v.present, np.ones(len(v), np.bool_))

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

    def _select(self, node: VectorSelector, mint: int, maxt: int, range_ms: int) -> SampleBatch:
        func, grouping, by = self.hint_paths.get(id(node), ("", (), False))
        hints = SelectHints(start=mint, end=maxt, step=self.step, func=func, range=range_ms,
                            grouping=grouping, by=by)
        res = self.querier.select(list(node.matchers), mint, maxt, hints)
        self.storage_warnings.extend(res.warnings)
        batch = res.batch
        if self.options.max_series and len(batch) > self.options.max_series:
            raise EvalError(f"query would select too many series: {len(batch)} series matched by one selector, "
                            f"limit is {self.options.max_series}")
        self.stats.series_loaded += len(batch)
        self.stats.samples_loaded += int(batch.t.shape[0])
        self.account(int(batch.t.shape[0]))
        return batch

    def select_vector(self, node: VectorSelector, ts: np.ndarray) -> Vector:
        steps = ts.shape[0]
        if steps == 0:
            return Vector.empty(0)
        ref = self.ref_times(node.timestamp, node.start_or_end, node.offset, ts)
        lookback = self.options.lookback_delta_ms or DEFAULT_LOOKBACK_MS
        batch = self._select(node, int(ref.min()) - lookback + 1, int(ref.max()), 0)
        n = len(batch)
        vals = np.zeros((n, steps))
        pres = np.zeros((n, steps), np.bool_)
        sts = np.zeros((n, steps), np.int64)
        vbits = np.ascontiguousarray(batch.v, np.uint64)
        kern.instant_lookup(np.ascontiguousarray(batch.t, np.int64), vbits.view(np.float64), vbits,
                            np.ascontiguousarray(batch.offsets, np.int64), ref, lookback, vals, pres, sts)
        return Vector(list(batch.labels), vals, pres, np.zeros(n, np.bool_), sts)

    def select_range(self, node: MatrixSelector, ts: np.ndarray) -> RangeVector:
        vs = node.vector_selector
        ref = self.ref_times(vs.timestamp, vs.start_or_end, vs.offset, ts)
        if ts.shape[0] == 0:
            return _range_vector([], np.zeros(0, np.int64), np.zeros(0), np.zeros(1, np.int64), ref, ts,
                                 node.range, np.zeros(0, np.bool_))
        batch = self._select(vs, int(ref.min()) - node.range + 1, int(ref.max()), node.range)
        vbits = np.ascontiguousarray(batch.v, np.uint64)
        keep = vbits != np.uint64(STALE_NAN_BITS)
        csum = np.concatenate([[0], np.cumsum(keep)]).astype(np.int64)
        offsets = csum[np.asarray(batch.offsets, np.int64)]
        t = np.ascontiguousarray(batch.t, np.int64)[keep]
        v = vbits.view(np.float64)[keep]
        return _range_vector(list(batch.labels), t, v, offsets, ref, ts, node.range,
                             np.zeros(len(batch), np.bool_))

    def subquery(self, node: SubqueryExpr, ts: np.ndarray) -> RangeVector:
        ref = self.ref_times(node.timestamp, node.start_or_end, node.offset, ts)
        step = node.step or self.options.default_subquery_step_ms or DEFAULT_SUBQUERY_STEP_MS
        if ts.shape[0] == 0:
            inner_ts = np.zeros(0, np.int64)
        else:
            first = (int(ref.min()) - node.range) // step * step + step
            inner_ts = np.arange(first, int(ref.max()) + 1, step, dtype=np.int64)
        inner = self.eval(node.expr, inner_ts)
        if not isinstance(inner, Vector):
            raise EvalError("subquery is only allowed on instant vector")
        mask = inner.present
        t = np.broadcast_to(inner_ts, mask.shape)[mask]
        v = inner.values[mask]
        offsets = np.concatenate([[0], np.cumsum(mask.sum(axis=1))]).astype(np.int64)
        return _range_vector(inner.labels, np.ascontiguousarray(t), np.ascontiguousarray(v), offsets, ref, ts,
                             node.range, inner.drop_name)

    # -- output ------------------------------------------------------------------------------

    def finalize(self, v: Vector) -> Vector:
        """Drop names marked for removal, then merge series that now share a label set."""
        labels = [without_name(lbls) if d else lbls for lbls, d in zip(v.labels, v.drop_name, strict=True)]
        out = Vector(labels, v.values, v.present, np.zeros(len(labels), np.bool_))
        return merge_duplicates(out, self.check_deadline)


def _range_vector(labels: list[Labels], t: np.ndarray, v: np.ndarray, offsets: np.ndarray, ref: np.ndarray,
                  ts: np.ndarray, rng: int, drop_name: np.ndarray) -> RangeVector:
    n = len(labels)
    lo = np.zeros((n, ref.shape[0]), np.int64)
    hi = np.zeros((n, ref.shape[0]), np.int64)
    if n and ref.shape[0]:
        kern.window_bounds(t, offsets, ref.astype(np.int64), rng, lo, hi)
    return RangeVector(labels, t, v, offsets, lo, hi, ref, ts.astype(np.int64), rng, drop_name)


def _collect_hint_paths(expr: Expr) -> dict[int, tuple[str, tuple[str, ...], bool]]:
    """Selector id -> (enclosing function/aggregation, grouping, by), as Prometheus derives hints."""
    out: dict[int, tuple[str, tuple[str, ...], bool]] = {}
    stack: list[tuple[Expr, tuple[Expr, ...]]] = [(expr, ())]
    while stack:
        node, path = stack.pop()
        if isinstance(node, VectorSelector):
            func = ""
            for anc in reversed(path):
                if isinstance(anc, AggregateExpr):
                    func = anc.op
                    break
                if isinstance(anc, Call):
                    func = anc.func.name
                    break
                if isinstance(anc, BinaryExpr):
                    break
            grouping: tuple[str, ...] = ()
            by = False
            if path and isinstance(path[-1], AggregateExpr):
                grouping, by = path[-1].grouping, not path[-1].without
            out[id(node)] = (func, grouping, by)
        for child in children(node):
            stack.append((child, (*path, node)))
    return out
