"""Range-vector functions: one kernel call over all (series, step) windows."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from thanostools.core.errors import EvalError
from thanostools.core.kernels import promql as kern
from thanostools.core.labels import METRIC_NAME, Labels, get
from thanostools.core.promql import annotations as ann
from thanostools.core.promql.handlers import handler
from thanostools.core.promql.parser.ast import Call, Expr, MatrixSelector, ValueType, VectorSelector
from thanostools.core.promql.selection import RowSink
from thanostools.core.promql.value import RangeVector, Value, Vector
from thanostools.core.promql.vecops import unwrap_parens

if TYPE_CHECKING:
    from thanostools.core.promql.evaluator import Evaluator

_CODES = {
    "count_over_time": kern.FN_COUNT, "sum_over_time": kern.FN_SUM, "avg_over_time": kern.FN_AVG,
    "min_over_time": kern.FN_MIN, "max_over_time": kern.FN_MAX, "stddev_over_time": kern.FN_STDDEV,
    "stdvar_over_time": kern.FN_STDVAR, "last_over_time": kern.FN_LAST, "first_over_time": kern.FN_FIRST,
    "present_over_time": kern.FN_PRESENT, "ts_of_last_over_time": kern.FN_TS_LAST,
    "ts_of_first_over_time": kern.FN_TS_FIRST, "ts_of_max_over_time": kern.FN_TS_MAX,
    "ts_of_min_over_time": kern.FN_TS_MIN, "changes": kern.FN_CHANGES, "resets": kern.FN_RESETS,
    "rate": kern.FN_RATE, "increase": kern.FN_INCREASE, "delta": kern.FN_DELTA, "irate": kern.FN_IRATE,
    "idelta": kern.FN_IDELTA, "deriv": kern.FN_DERIV, "predict_linear": kern.FN_PREDICT_LINEAR,
    "quantile_over_time": kern.FN_QUANTILE, "mad_over_time": kern.FN_MAD,
    "double_exponential_smoothing": kern.FN_DES,
}
_KEEP_NAME = frozenset({"last_over_time", "first_over_time"})
_CHECKED_PARAMS = frozenset({"quantile_over_time", "double_exponential_smoothing"})  # checked at active steps
_COUNTER_SUFFIXES = ("_total", "_sum", "_count", "_bucket")


def _matrix_index(node: Call) -> int:
    for i in range(len(node.args)):
        if node.func.arg_type(i) is ValueType.MATRIX:
            return i
    raise EvalError(f"{node.func.name} has no range vector argument")


@handler(*_CODES)
def _range_function(ev: Evaluator, node: Call, ts: np.ndarray) -> Value:
    name = node.func.name
    mi = _matrix_index(node)
    scalars = [ev.eval_scalar(a, ts) for i, a in enumerate(node.args) if i != mi]
    steps = ts.shape[0]
    p1 = np.ascontiguousarray(scalars[0] if scalars else np.zeros(steps), np.float64)
    p2 = np.ascontiguousarray(scalars[1] if len(scalars) > 1 else np.zeros(steps), np.float64)
    active = np.zeros(steps, np.bool_)
    arg = ev.iter_range(node.args[mi], ts)
    sink = RowSink(ev, arg.bound, steps)
    for rv in arg.batches:
        if not len(rv):
            continue
        if name in _CHECKED_PARAMS:
            active |= (rv.hi > rv.lo).any(axis=0)
        out, outp, _ = sink.rows(len(rv))
        kern.range_function(_CODES[name], rv.t, rv.v, rv.lo, rv.hi, rv.ref, rv.eval_ts, rv.range_ms, p1, p2,
                            out, outp)
        if name in ("rate", "increase"):
            _counter_info(ev, node.args[mi], rv, outp)
        drop = rv.drop_name.copy() if name in _KEEP_NAME else np.ones(len(rv), np.bool_)
        ev.account(sink.commit(rv.labels, drop))
    _check_params(ev, node, name, active, p1, p2)
    return sink.vector()


def _check_params(ev: Evaluator, node: Call, name: str, active: np.ndarray, p1: np.ndarray,
                  p2: np.ndarray) -> None:
    if name == "quantile_over_time":
        bad = active & ((p1 < 0) | (p1 > 1) | np.isnan(p1))
        for q in np.unique(p1[bad]):
            ev.annotations.warn(ann.invalid_quantile(float(q)), node.args[0].pos)
    elif name == "double_exponential_smoothing":
        bad_sf = active & ~((p1 > 0) & (p1 < 1))
        if bad_sf.any():
            raise EvalError(f"invalid smoothing factor. Expected: 0 < sf < 1, got: {p1[bad_sf][0]:f}")
        bad_tf = active & ~((p2 > 0) & (p2 < 1))
        if bad_tf.any():
            raise EvalError(f"invalid trend factor. Expected: 0 < tf < 1, got: {p2[bad_tf][0]:f}")


def _counter_info(ev: Evaluator, arg: Expr, rv: RangeVector, outp: np.ndarray) -> None:
    pos = unwrap_parens(arg).pos
    produced = outp.any(axis=1)
    for i in np.flatnonzero(produced).tolist():
        metric = get(rv.labels[i], METRIC_NAME)
        if metric and not metric.endswith(_COUNTER_SUFFIXES):
            ev.annotations.info(ann.possible_non_counter(metric), pos)


def absent_labels(arg: Expr) -> Labels:
    """Labels ``absent``/``absent_over_time`` give their result: the selector's equality matchers,
    except names matched more than once or also by another matcher."""
    node = unwrap_parens(arg)
    if isinstance(node, MatrixSelector):
        node = node.vector_selector
    if not isinstance(node, VectorSelector):
        return ()
    out: dict[str, str] = {}
    seen: set[str] = set()
    for m in node.matchers:
        if m.name == METRIC_NAME:
            continue
        if m.type.value == "=" and m.name not in seen:
            out[m.name] = m.value
            seen.add(m.name)
        else:
            out.pop(m.name, None)
    return tuple(sorted((k, v) for k, v in out.items() if v))


@handler("absent_over_time")
def _absent_over_time(ev: Evaluator, node: Call, ts: np.ndarray) -> Value:
    steps = ts.shape[0]
    any_sample = np.zeros(steps, np.bool_)
    for rv in ev.iter_range(node.args[0], ts).batches:
        if len(rv):
            any_sample |= (rv.hi > rv.lo).any(axis=0)
    return Vector([absent_labels(node.args[0])], np.ones((1, steps)), ~any_sample[None, :],
                  np.zeros(1, np.bool_))
