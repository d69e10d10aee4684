"""Range-vector functions: one kernel call over all (series, step) windows."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from thanostools.core.errors import EvalError
from thanostools.core.kernels import promql as kern
from thanostools.core.labels import METRIC_NAME, Labels, get
from thanostools.core.promql import annotations as ann
from thanostools.core.promql import window_hist as wh
from thanostools.core.promql.floathist import FloatHistogram
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
# Functions whose kernel sees every sample, histograms too: they count samples or read times, or (last/first)
# pick a sample that may be a histogram. The others' kernels see the floats only.
_EVERY_SAMPLE = frozenset({"count_over_time", "present_over_time", "ts_of_last_over_time", "ts_of_first_over_time",
                           "last_over_time", "first_over_time"})
# Functions of floats that skip histograms, with an info where a window holds both.
_IGNORE_HISTOGRAMS = frozenset({
    "min_over_time", "max_over_time", "stddev_over_time", "stdvar_over_time", "quantile_over_time", "mad_over_time",
    "ts_of_max_over_time", "ts_of_min_over_time", "deriv", "predict_linear", "double_exponential_smoothing"})
# Functions that give nothing for a window mixing floats and histograms (with a warning), and compute over
# windows of histograms only.
_HISTOGRAMS_ONLY = frozenset({"rate", "increase", "delta", "sum_over_time", "avg_over_time"})
# Functions that follow the window's samples in time order across floats and histograms.
_SEQUENCE = frozenset({"irate", "idelta", "resets", "changes"})


def _matrix_index(node: Call) -> int:
    for i in range(len(node.args)):
        if node.func.arg_type(i) is ValueType.MATRIX:
            return i
    raise EvalError(f"{node.func.name} has no range vector argument")


@handler(*_CODES, histograms=True)
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
        seen = rv if rv.h is None or name in _EVERY_SAMPLE else rv.floats_only()
        if name in _CHECKED_PARAMS:
            # quantile_over_time checks its parameter where there are floats, the smoothing where there is a sample
            windows = seen if name == "quantile_over_time" else rv
            active |= (windows.hi > windows.lo).any(axis=0)
        out, outp, _ = sink.rows(len(rv))
        kern.range_function(_CODES[name], seen.t, seen.v, seen.lo, seen.hi, rv.ref, rv.eval_ts, rv.range_ms, p1, p2,
                            out, outp)
        hist_out = None
        if rv.h is not None:
            hist_out = _histogram_windows(ev, node, rv, out, outp, sink)
        if name in ("rate", "increase"):
            _counter_info(ev, node.args[mi], rv, outp if hist_out is None else outp & ~hist_out)
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


class _Cells:
    """The histogram results of one batch's rows, written into the sink's histogram cells when there are any."""

    def __init__(self, sink: RowSink, out: np.ndarray, outp: np.ndarray) -> None:
        self.sink, self.out, self.outp = sink, out, outp
        self.hist: np.ndarray | None = None
        self.written = np.zeros(outp.shape, np.bool_)

    def put(self, i: int, k: int, value: FloatHistogram | float | None) -> None:
        if value is None:
            self.outp[i, k] = False
            return
        self.outp[i, k] = True
        if isinstance(value, FloatHistogram):
            if self.hist is None:
                self.hist = self.sink.hist_rows(self.outp.shape[0])
            self.hist[i, k] = value
            self.written[i, k] = True
        else:
            self.out[i, k] = value


def _histogram_windows(ev: Evaluator, node: Call, rv: RangeVector, out: np.ndarray, outp: np.ndarray,
                       sink: RowSink) -> np.ndarray:
    """The results (and annotations) of the windows that hold histograms, over the kernel's; returns the cells
    that got a histogram."""
    assert rv.h is not None
    name = node.func.name
    is_h = rv.h.astype(np.bool_)
    before = np.concatenate([[0], np.cumsum(is_h)])
    nh = before[rv.hi] - before[rv.lo]
    nf = (rv.hi - rv.lo) - nh
    pos = node.args[0].pos
    cells = _Cells(sink, out, outp)

    def note_rows(mask: np.ndarray, kind: str, message: Callable[[str], str]) -> None:
        for i in np.flatnonzero(mask.any(axis=1)).tolist():
            ev.annotations.add(kind, message(get(rv.labels[i], METRIC_NAME)), pos)

    if name in _IGNORE_HISTOGRAMS:
        note_rows((nf > 0) & (nh > 0), ann.INFO, ann.histograms_ignored_in_mixed_range)
    elif name in ("last_over_time", "first_over_time"):
        chosen = rv.hi - 1 if name == "last_over_time" else rv.lo
        picked = (rv.hi > rv.lo) & is_h[np.clip(chosen, 0, max(is_h.shape[0] - 1, 0))]
        for i, k in np.argwhere(picked).tolist():
            cells.put(i, k, rv.h[chosen[i, k]])
    elif name in _HISTOGRAMS_ONLY:
        mixed = (nf > 0) & (nh > 0)
        outp[mixed] = False
        note_rows(mixed, ann.WARNING, ann.mixed_floats_histograms)
        for i, k in np.argwhere((nf == 0) & (nh > 0)).tolist():
            cells.put(i, k, _histogram_window(ev, node, rv, i, k, pos))
    elif name in _SEQUENCE:
        for i, k in np.argwhere(nh > 0).tolist():
            _sequence_window(ev, node, rv, is_h, i, k, pos, cells)
    return cells.written


def _annotate(ev: Evaluator, pos: int) -> Callable[[str, str], None]:
    return lambda kind, message: ev.annotations.add(kind, message, pos)


def _histogram_window(ev: Evaluator, node: Call, rv: RangeVector, i: int, k: int,
                      pos: int) -> FloatHistogram | None:
    """rate/increase/delta/sum_over_time/avg_over_time of a window of histograms only."""
    assert rv.h is not None
    name = node.func.name
    a, b = int(rv.lo[i, k]), int(rv.hi[i, k])
    hs = list(rv.h[a:b])
    metric = get(rv.labels[i], METRIC_NAME)
    note = _annotate(ev, pos)
    if name in ("sum_over_time", "avg_over_time"):
        return wh.sum_histograms(hs, name == "avg_over_time", metric, note)
    if len(hs) < 2:
        return None
    end = int(rv.ref[k])
    return wh.extrapolated_histogram_rate(rv.t[a:b], hs, end - rv.range_ms, end, rv.range_ms, name != "delta",
                                          name == "rate", metric, note)


def _sequence_window(ev: Evaluator, node: Call, rv: RangeVector, is_h: np.ndarray, i: int, k: int, pos: int,
                     cells: _Cells) -> None:
    """irate/idelta/resets/changes of a window holding a histogram: its samples in time order."""
    assert rv.h is not None
    name = node.func.name
    a, b = int(rv.lo[i, k]), int(rv.hi[i, k])
    metric = get(rv.labels[i], METRIC_NAME)
    if name in ("resets", "changes"):
        samples = [rv.h[j] if is_h[j] else float(rv.v[j]) for j in range(a, b)]
        cells.put(i, k, wh.count_changes(samples, name == "resets"))
        return
    if b - a < 2 or not (is_h[b - 2] or is_h[b - 1]):
        return  # the kernel's answer stands: too few samples, or the last two are floats
    if not (is_h[b - 2] and is_h[b - 1]):
        ev.annotations.warn(ann.mixed_floats_histograms(metric), pos)
        cells.put(i, k, None)
        return
    cells.put(i, k, wh.instant_histogram_value(int(rv.t[b - 2]), rv.h[b - 2], int(rv.t[b - 1]), rv.h[b - 1],
                                               name == "irate", metric, _annotate(ev, pos)))


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


@handler("absent_over_time", histograms=True)
def _absent_over_time(ev: Evaluator, node: Call, ts: np.ndarray) -> Value:
    steps = ts.shape[0]
    any_sample = np.zeros(steps, np.bool_)
    for rv in ev.iter_range(node.args[0], ts).batches:
        if len(rv):
            any_sample |= (rv.hi > rv.lo).any(axis=0)
    return Vector([absent_labels(node.args[0])], np.ones((1, steps)), ~any_sample[None, :],
                  np.zeros(1, np.bool_))
