"""Histogram functions over classic (``le``-bucketed) histograms.

Native histograms are not stored by this engine; ``histogram_count`` and friends, which only
read native histograms, therefore return nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from thanostools.core.kernels import promql as kern
from thanostools.core.labels import METRIC_NAME, Labels, get
from thanostools.core.promql import annotations as ann
from thanostools.core.promql.fn_labels import string_arg
from thanostools.core.promql.handlers import handler
from thanostools.core.promql.parser.ast import Call
from thanostools.core.promql.parser.parse import _go_parse_float as go_parse_float
from thanostools.core.promql.value import Value, Vector
from thanostools.core.promql.vecops import merge_duplicates

if TYPE_CHECKING:
    from thanostools.core.promql.evaluator import Evaluator

BUCKET_LABEL = "le"


@dataclass
class Buckets:
    """Bucket rows of a vector grouped into histograms, rows sorted by upper bound per group."""

    vec: Vector
    bounds: np.ndarray
    order: np.ndarray
    gstart: np.ndarray
    labels: list[Labels]


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


def _warn_quantiles(ev: Evaluator, q: np.ndarray, pos: int) -> None:
    for value in np.unique(q[(q < 0) | (q > 1) | np.isnan(q)]):
        ev.annotations.warn(ann.invalid_quantile(float(value)), pos)


def _forced_info(ev: Evaluator, b: Buckets, forced: np.ndarray, pos: int) -> None:
    for g in np.flatnonzero(forced).tolist():
        ev.annotations.info(ann.forced_monotonicity(get(b.labels[g], METRIC_NAME)), pos)


@handler("histogram_quantile")
def _histogram_quantile(ev: Evaluator, node: Call, ts: np.ndarray) -> Value:
    q = np.ascontiguousarray(ev.eval_scalar(node.args[0], ts), np.float64)
    vec = ev.eval_vector(node.args[1], ts)
    _warn_quantiles(ev, q, node.args[0].pos)
    b = classic_buckets(ev, vec, node.args[1].pos)
    ev.reserve(len(b.labels) * ts.shape[0])
    zeros = np.zeros(ts.shape[0])
    out, outp, forced = _run(b, ts.shape[0], q, False, zeros, zeros)
    _forced_info(ev, b, forced, node.args[1].pos)
    return Vector(b.labels, out, outp, np.ones(len(b.labels), np.bool_))


@handler("histogram_quantiles")
def _histogram_quantiles(ev: Evaluator, node: Call, ts: np.ndarray) -> Value:
    vec = ev.eval_vector(node.args[0], ts)
    label = string_arg(node, 1)
    qs = [np.ascontiguousarray(ev.eval_scalar(a, ts), np.float64) for a in node.args[2:]]
    for arg, q in zip(node.args[2:], qs, strict=True):
        _warn_quantiles(ev, q, arg.pos)
    b = classic_buckets(ev, vec, node.args[0].pos)
    steps = ts.shape[0]
    # a row per group and distinct quantile: a quantile that changes at every step gives groups x steps rows
    ev.reserve(sum(int(np.unique(q).shape[0]) for q in qs) * len(b.labels) * steps)
    zeros = np.zeros(steps)
    labels: list[Labels] = []
    values: list[np.ndarray] = []
    present: list[np.ndarray] = []
    for q in qs:
        for qv in np.unique(q):
            steps_mask = (q == qv) | (np.isnan(q) & np.isnan(qv))
            out, outp, forced = _run(b, steps, q, False, zeros, zeros)
            _forced_info(ev, b, forced, node.args[0].pos)
            text = ann.openmetrics_float(float(qv))
            for g, glabels in enumerate(b.labels):
                labels.append(tuple(sorted({**dict(glabels), label: text}.items())))
                values.append(out[g])
                present.append(outp[g] & steps_mask)
    if not labels:
        return Vector.empty(steps)
    out_vec = Vector(labels, np.stack(values), np.stack(present), np.ones(len(labels), np.bool_))
    return merge_duplicates(out_vec, ev.check_deadline)


@handler("histogram_fraction")
def _histogram_fraction(ev: Evaluator, node: Call, ts: np.ndarray) -> Value:
    lower = np.ascontiguousarray(ev.eval_scalar(node.args[0], ts), np.float64)
    upper = np.ascontiguousarray(ev.eval_scalar(node.args[1], ts), np.float64)
    vec = ev.eval_vector(node.args[2], ts)
    b = classic_buckets(ev, vec, node.args[2].pos)
    ev.reserve(len(b.labels) * ts.shape[0])
    out, outp, _ = _run(b, ts.shape[0], np.zeros(ts.shape[0]), True, lower, upper)
    return Vector(b.labels, out, outp, np.ones(len(b.labels), np.bool_))


@handler("histogram_count", "histogram_sum", "histogram_avg", "histogram_stddev", "histogram_stdvar")
def _native_only(ev: Evaluator, node: Call, ts: np.ndarray) -> Value:
    ev.eval_vector(node.args[0], ts)
    return Vector.empty(ts.shape[0])
