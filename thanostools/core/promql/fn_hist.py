"""Histogram functions over native histograms and classic (``le``-bucketed) histograms.

At every step Prometheus splits the argument vector: histogram samples are native histograms, float samples
are buckets of classic histograms grouped by their labels without ``le``. A native histogram and a classic one
with the same labels at the same step conflict: both are dropped with a warning. ``histogram_count``, ``_sum``,
``_avg``, ``_stddev`` and ``_stdvar`` read native histograms only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from thanostools.core.kernels import promql as kern
from thanostools.core.labels import METRIC_NAME, Labels, get
from thanostools.core.promql import annotations as ann
from thanostools.core.promql import histmath
from thanostools.core.promql.floathist import FloatHistogram
from thanostools.core.promql.fn_labels import string_arg
from thanostools.core.promql.handlers import handler
from thanostools.core.promql.parser.ast import Call
from thanostools.core.promql.parser.parse import _go_parse_float as go_parse_float
from thanostools.core.promql.value import Value, Vector
from thanostools.core.promql.vecops import merge_duplicates

if TYPE_CHECKING:
    from thanostools.core.promql.evaluator import Evaluator

BUCKET_LABEL = "le"

_NAN_NOTES = {histmath.NAN_RESULT: ann.quantile_nan_result, histmath.NAN_SKEW: ann.quantile_nan_skew,
              histmath.NAN_EXCLUDED: ann.fraction_nans}


@dataclass
class Buckets:
    """Bucket rows of a vector grouped into histograms, rows sorted by upper bound per group."""

    vec: Vector
    bounds: np.ndarray
    order: np.ndarray
    gstart: np.ndarray
    labels: list[Labels]


@dataclass
class HistogramInput:
    """The argument of a histogram function split into native histograms (rows of ``native`` that hold one,
    ``present`` only where they do) and classic histograms, conflicting steps removed from both."""

    native: Vector
    classic: Buckets


def classic_buckets(ev: Evaluator, vec: Vector, pos: int) -> Buckets:
    bounds = np.zeros(len(vec))
    usable = np.zeros(len(vec), np.bool_)
    keys: dict[Labels, int] = {}
    gid = np.full(len(vec), -1, np.int64)
    parsed: dict[str, float | None] = {}
    for i, lbls in enumerate(vec.labels):
        le = get(lbls, BUCKET_LABEL)
        if le not in parsed:
            parsed[le] = _bucket_bound(le)
        bound = parsed[le]
        if bound is None:
            ev.annotations.warn(ann.bad_bucket_label(get(lbls, METRIC_NAME), le), pos)
            continue
        bounds[i] = bound
        usable[i] = True
        key = tuple(p for p in lbls if p[0] != BUCKET_LABEL)
        gid[i] = keys.setdefault(key, len(keys))
    rows = np.flatnonzero(usable)
    order = rows[np.lexsort((bounds[rows], gid[rows]))].astype(np.int64)
    gstart = np.searchsorted(gid[order], np.arange(len(keys) + 1)).astype(np.int64)
    return Buckets(vec, bounds, order, gstart, list(keys))


def _bucket_bound(le: str) -> float | None:
    try:
        return float(go_parse_float(le))
    except (ValueError, IndexError):
        return None


def split_histograms(ev: Evaluator, vec: Vector, pos: int) -> HistogramInput:
    is_hist = vec.is_hist
    native = vec.take(np.flatnonzero(is_hist.any(axis=1)))
    native.present = native.present & native.is_hist
    floats = vec.floats_only().nonempty()
    # conflicts are removed from this copy of the presence, never from the argument's
    floats = Vector(floats.labels, floats.values, floats.present.copy(), floats.drop_name)
    classic = classic_buckets(ev, floats, pos)
    if len(native) and classic.labels:
        _drop_conflicts(ev, native, classic, pos)
    return HistogramInput(native, classic)


def _drop_conflicts(ev: Evaluator, native: Vector, classic: Buckets, pos: int) -> None:
    group_of = {labels: g for g, labels in enumerate(classic.labels)}
    for r, labels in enumerate(native.labels):
        g = group_of.get(labels)
        if g is None:
            continue
        rows = classic.order[classic.gstart[g]:classic.gstart[g + 1]]
        clash = native.present[r] & classic.vec.present[rows].any(axis=0)
        if clash.any():
            ev.annotations.warn(ann.mixed_classic_native(get(labels, METRIC_NAME)), pos)
            native.present[r] &= ~clash
            classic.vec.present[rows] &= ~clash


def _run(b: Buckets, steps: int, q: np.ndarray, fraction: bool, lower: np.ndarray,
         upper: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ngroups = len(b.labels)
    out = np.zeros((ngroups, steps))
    outp = np.zeros((ngroups, steps), np.bool_)
    forced = np.zeros(ngroups, np.bool_)
    if ngroups:
        kern.bucket_quantile(q, b.bounds, b.vec.values, b.vec.present, b.order, b.gstart, fraction,
                             lower, upper, out, outp, forced)
    return out, outp, forced


def _per_histogram(ev: Evaluator, native: Vector, compute: Callable[[FloatHistogram, int], tuple[float, str | None]],
                   pos: int) -> Vector:
    """A value per native histogram cell (same labels, name dropped at the end); notes become infos."""
    out = np.zeros(native.present.shape)
    assert native.hist is not None or not native.present.any()
    rows, cols = np.nonzero(native.present)
    for r, k in zip(rows.tolist(), cols.tolist(), strict=True):
        assert native.hist is not None
        value, note = compute(native.hist[r, k], k)
        out[r, k] = value
        if note is not None:
            ev.annotations.info(_NAN_NOTES[note](get(native.labels[r], METRIC_NAME)), pos)
    return Vector(native.labels, out, native.present, np.ones(len(native), np.bool_))


def _simple(fn: Callable[[FloatHistogram], float]) -> Callable[[FloatHistogram, int], tuple[float, str | None]]:
    return lambda h, _k: (fn(h), None)


def _classic_vector(b: Buckets, out: np.ndarray, outp: np.ndarray) -> Vector:
    return Vector(b.labels, out, outp, np.ones(len(b.labels), np.bool_))


def _concat(parts: list[Vector], steps: int) -> Vector:
    parts = [p for p in parts if len(p)]
    if not parts:
        return Vector.empty(steps)
    return Vector([lbls for p in parts for lbls in p.labels], np.concatenate([p.values for p in parts]),
                  np.concatenate([p.present for p in parts]), np.concatenate([p.drop_name for p in parts]))


def _warn_quantiles(ev: Evaluator, q: np.ndarray, pos: int) -> None:
    for value in np.unique(q[(q < 0) | (q > 1) | np.isnan(q)]):
        ev.annotations.warn(ann.invalid_quantile(float(value)), pos)


def _forced_info(ev: Evaluator, b: Buckets, forced: np.ndarray, pos: int) -> None:
    for g in np.flatnonzero(forced).tolist():
        ev.annotations.info(ann.forced_monotonicity(get(b.labels[g], METRIC_NAME)), pos)


def _quantiles(ev: Evaluator, inp: HistogramInput, q: np.ndarray, hist_pos: int, forced_pos: int) -> Vector:
    """``histogram_quantile(q, …)`` rows: native histograms first, then classic groups (labels may repeat)."""
    steps = q.shape[0]
    native = _per_histogram(ev, inp.native, lambda h, k: histmath.quantile(float(q[k]), h), hist_pos)
    zeros = np.zeros(steps)
    out, outp, forced = _run(inp.classic, steps, q, False, zeros, zeros)
    _forced_info(ev, inp.classic, forced, forced_pos)
    return _concat([native, _classic_vector(inp.classic, out, outp)], steps)


@handler("histogram_quantile", histograms=True)
def _histogram_quantile(ev: Evaluator, node: Call, ts: np.ndarray) -> Value:
    q = np.ascontiguousarray(ev.eval_scalar(node.args[0], ts), np.float64)
    vec = ev.eval_vector(node.args[1], ts)
    _warn_quantiles(ev, q, node.args[0].pos)
    inp = split_histograms(ev, vec, node.args[1].pos)
    ev.reserve((len(inp.native) + len(inp.classic.labels)) * ts.shape[0])
    return merge_duplicates(_quantiles(ev, inp, q, node.args[1].pos, node.args[1].pos), ev.check_deadline)


@handler("histogram_quantiles", histograms=True)
def _histogram_quantiles(ev: Evaluator, node: Call, ts: np.ndarray) -> Value:
    vec = ev.eval_vector(node.args[0], ts)
    label = string_arg(node, 1)
    qs = [np.ascontiguousarray(ev.eval_scalar(a, ts), np.float64) for a in node.args[2:]]
    for arg, q in zip(node.args[2:], qs, strict=True):
        _warn_quantiles(ev, q, arg.pos)
    pos = node.args[0].pos
    inp = split_histograms(ev, vec, pos)
    steps = ts.shape[0]
    # a row per series and distinct quantile: a quantile that changes at every step gives series x steps rows
    ev.reserve(sum(int(np.unique(q).shape[0]) for q in qs) * (len(inp.native) + len(inp.classic.labels)) * steps)
    parts: list[Vector] = []
    for q in qs:
        result = _quantiles(ev, inp, q, pos, pos)
        for qv in np.unique(q):
            steps_mask = (q == qv) | (np.isnan(q) & np.isnan(qv))
            text = ann.openmetrics_float(float(qv))
            labels = [tuple(sorted({**dict(lbls), label: text}.items())) for lbls in result.labels]
            parts.append(Vector(labels, result.values, result.present & steps_mask, result.drop_name))
    return merge_duplicates(_concat(parts, steps), ev.check_deadline)


@handler("histogram_fraction", histograms=True)
def _histogram_fraction(ev: Evaluator, node: Call, ts: np.ndarray) -> Value:
    lower = np.ascontiguousarray(ev.eval_scalar(node.args[0], ts), np.float64)
    upper = np.ascontiguousarray(ev.eval_scalar(node.args[1], ts), np.float64)
    vec = ev.eval_vector(node.args[2], ts)
    pos = node.args[2].pos
    inp = split_histograms(ev, vec, pos)
    steps = ts.shape[0]
    ev.reserve((len(inp.native) + len(inp.classic.labels)) * steps)
    native = _per_histogram(ev, inp.native, lambda h, k: histmath.fraction(float(lower[k]), float(upper[k]), h),
                            pos)
    out, outp, _ = _run(inp.classic, steps, np.zeros(steps), True, lower, upper)
    return merge_duplicates(_concat([native, _classic_vector(inp.classic, out, outp)], steps), ev.check_deadline)


def _avg(h: FloatHistogram) -> float:
    with np.errstate(all="ignore"):
        return float(np.float64(h.sum) / np.float64(h.count))


_NATIVE_ONLY: dict[str, Callable[[FloatHistogram], float]] = {
    "histogram_count": lambda h: h.count,
    "histogram_sum": lambda h: h.sum,
    "histogram_avg": _avg,
    "histogram_stdvar": histmath.variance,
    "histogram_stddev": lambda h: float(np.sqrt(histmath.variance(h))),
}


@handler(*_NATIVE_ONLY, histograms=True)
def _native_only(ev: Evaluator, node: Call, ts: np.ndarray) -> Value:
    vec = ev.eval_vector(node.args[0], ts)
    native = vec.take(np.flatnonzero(vec.is_hist.any(axis=1)))
    native.present = native.present & native.is_hist
    ev.reserve(len(native) * ts.shape[0])
    return _per_histogram(ev, native, _simple(_NATIVE_ONLY[node.func.name]), node.args[0].pos)
