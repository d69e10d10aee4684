"""Aggregation operators as grouped reductions over the ``(series x steps)`` matrix."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from thanostools.core.errors import EvalError
from thanostools.core.goformat import format_f, go_quote
from thanostools.core.kernels import promql as kern
from thanostools.core.labels import METRIC_NAME, NAME_LABELS, Labels, get, label_hash
from thanostools.core.promql import annotations as ann
from thanostools.core.promql.floathist import (
    HINT_NOT_RESET,
    HINT_RESET,
    FloatHistogram,
    IncompatibleSchemaError,
    combined_hint,
)
from thanostools.core.promql.parser.ast import AggregateExpr, StringLiteral
from thanostools.core.promql.value import Vector
from thanostools.core.promql.vecops import merge_duplicates, present_histograms, unwrap_parens

if TYPE_CHECKING:
    from thanostools.core.promql.evaluator import Evaluator

_REDUCE_CODES = {
    "sum": kern.AGG_SUM, "avg": kern.AGG_AVG, "count": kern.AGG_COUNT, "min": kern.AGG_MIN,
    "max": kern.AGG_MAX, "group": kern.AGG_GROUP, "stddev": kern.AGG_STDDEV, "stdvar": kern.AGG_STDVAR,
}
_SELECT_MODES = {"topk": 0, "bottomk": 1, "limitk": 2}
# Aggregations that skip histogram samples (with an info annotation); sum and avg add them up, count, group,
# limitk, limit_ratio and count_values take them as they are.
_FLOATS_ONLY = frozenset({"min", "max", "stddev", "stdvar", "quantile", "topk", "bottomk"})
_MAX_UINT64 = float(2**64 - 1)
_INT64_LIMIT = float(2**63)


def group_labels(labels: Labels, grouping: tuple[str, ...], without: bool) -> Labels:
    if without:
        drop = set(grouping) | NAME_LABELS
        return tuple(p for p in labels if p[0] not in drop)
    keep = set(grouping)
    return tuple(p for p in labels if p[0] in keep)


def group_ids(vec: Vector, grouping: tuple[str, ...], without: bool) -> tuple[np.ndarray, list[Labels]]:
    """Group id per row (numbered by first appearance) and the output labels of every group."""
    if not without and not grouping:
        return np.zeros(len(vec), np.int64), [()] if len(vec) else []
    ids: dict[Labels, int] = {}
    gid = np.fromiter((ids.setdefault(group_labels(lb, grouping, without), len(ids)) for lb in vec.labels),
                      np.int64, len(vec))
    return gid, list(ids)


def _grouped_order(gid: np.ndarray, ngroups: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(gid, kind="stable").astype(np.int64)
    gstart = np.searchsorted(gid[order], np.arange(ngroups + 1)).astype(np.int64)
    return order, gstart


def eval_aggregate(ev: Evaluator, node: AggregateExpr, ts: np.ndarray) -> Vector:
    op = node.op
    if op == "count_values":
        return _count_values(ev, node, ts)
    param = None if node.param is None else ev.eval_scalar(node.param, ts)
    vec = ev.eval_vector(node.expr, ts)
    steps = ts.shape[0]
    if op in _FLOATS_ONLY:
        vec = _without_histograms(ev, node, vec)
    if op in _SELECT_MODES:
        assert param is not None
        return _select_k(ev, node, vec, _k_values(param), steps)
    if op == "limit_ratio":
        assert param is not None
        return _limit_ratio(ev, node, vec, param)
    gid, out_labels = group_ids(vec, node.grouping, node.without)
    ngroups = len(out_labels)
    ev.reserve(ngroups * steps)
    out = np.zeros((ngroups, steps))
    outp = np.zeros((ngroups, steps), np.bool_)
    hist = None
    if op == "quantile":
        assert param is not None and node.param is not None
        for q in np.unique(param[(param < 0) | (param > 1) | np.isnan(param)]):
            ev.annotations.warn(ann.invalid_quantile(float(q)), node.param.pos)
        if ngroups:
            order, gstart = _grouped_order(gid, ngroups)
            kern.group_quantile(vec.values, vec.present, order, gstart, np.ascontiguousarray(param), out, outp)
    elif ngroups:
        floats = vec if op in ("count", "group") else vec.floats_only()
        kern.group_reduce(_REDUCE_CODES[op], floats.values, floats.present, gid, ngroups, out, outp)
        if vec.hist is not None and op in ("sum", "avg"):
            hist = _histogram_groups(ev, node, vec, gid, ngroups, outp)
    drop = np.zeros(ngroups, np.bool_)
    if ngroups:
        np.logical_or.at(drop, gid, vec.drop_name)
    return Vector(out_labels, out, outp, drop, hist=hist)


def _without_histograms(ev: Evaluator, node: AggregateExpr, vec: Vector) -> Vector:
    """The vector's floats; histograms are ignored with an info (at the argument, or for topk/bottomk at the
    aggregation, as Prometheus positions it)."""
    if vec.hist is None or not (vec.is_hist & vec.present).any():
        return vec
    pos = node.pos if node.op in _SELECT_MODES else unwrap_parens(node.expr).pos
    ev.annotations.info(ann.histogram_ignored_in_aggregation(node.op), pos)
    return vec.floats_only()


def _histogram_groups(ev: Evaluator, node: AggregateExpr, vec: Vector, gid: np.ndarray, ngroups: int,
                      outp: np.ndarray) -> np.ndarray | None:
    """``sum``/``avg`` of the (group, step) cells that hold a histogram: folded sample by sample in input order,
    as Prometheus does; mixing floats and histograms, or exponential and custom buckets, gives no result.
    Updates ``outp`` and returns the histogram results (None if there are none)."""
    assert vec.hist is not None
    rows, cols = np.nonzero(vec.is_hist & vec.present)
    if rows.size == 0:
        return None
    order, gstart = _grouped_order(gid, ngroups)
    fold = _HistogramFold(ev, unwrap_parens(node.expr).pos, node.op == "avg")
    hist = np.full(outp.shape, None, object)
    for g, k in np.unique(np.stack([gid[rows], cols], axis=1), axis=0).tolist():
        members = order[gstart[g]:gstart[g + 1]]
        members = members[vec.present[members, k]]
        result = fold.run([(vec.hist[r, k], vec.labels[r]) for r in members.tolist()])
        hist[g, k], outp[g, k] = result, result is not None
    return hist if hist.astype(np.bool_).any() else None


class _HistogramFold:
    """One (group, step) of ``sum`` or ``avg`` over samples that include histograms, folded sample by sample in
    input order as Prometheus' aggregation loop does."""

    def __init__(self, ev: Evaluator, pos: int, mean: bool) -> None:
        self.ev, self.pos, self.mean = ev, pos, mean

    def run(self, samples: list[tuple[FloatHistogram | None, Labels]]) -> FloatHistogram | None:
        fast = _sum_one_layout([h for h, _ in samples], self.mean)
        if fast is not None:
            if {HINT_RESET, HINT_NOT_RESET} <= {h.hint for h, _ in samples if h is not None}:
                self.ev.annotations.warn(ann.counter_reset_collision(ann.HISTOGRAM_AGGREGATION), self.pos)
            return fast
        total: _HistogramSum | None = None
        has_float = has_hist = False
        hints: set[int] = set()
        for n, (h, labels) in enumerate(samples, start=1):
            if h is None:
                has_float = True
                continue
            has_hist = True
            if n == 1:
                total = _HistogramSum(h, self.mean)
            elif total is None:
                continue  # a float came first: the group is mixed, nothing to add up
            else:
                try:
                    reconciled = total.add(h, n)
                except IncompatibleSchemaError:
                    self.ev.annotations.warn(ann.mixed_exponential_custom(get(labels, METRIC_NAME)),
                                             self.pos)
                    if has_float:  # the samples after are skipped; floats before still make a mix
                        self.ev.annotations.warn(ann.MIXED_FLOATS_HISTOGRAMS_AGG, self.pos)
                    return None
                if reconciled:
                    self.ev.annotations.info(ann.mismatched_custom_buckets(ann.HISTOGRAM_AGGREGATION), self.pos)
            hints.add(h.hint)
        if has_float and has_hist:
            self.ev.annotations.warn(ann.MIXED_FLOATS_HISTOGRAMS_AGG, self.pos)
            return None
        if {HINT_RESET, HINT_NOT_RESET} <= hints:
            self.ev.annotations.warn(ann.counter_reset_collision(ann.HISTOGRAM_AGGREGATION), self.pos)
        assert total is not None
        return total.result(len(samples))


def _sum_one_layout(hs: list[FloatHistogram | None], mean: bool) -> FloatHistogram | None:
    """The Kahan sum (or mean) of histograms that share schema and zero bucket (or custom bounds), all buckets in
    one kernel call: the same numbers as :class:`_HistogramSum` adding them one by one (each bucket's
    contributions in input order). None when the histograms need the general path (floats among them, different
    layouts, or a mean whose sum overflows)."""
    if len(hs) < 2 or any(h is None for h in hs):
        return None
    first = hs[0]
    assert first is not None
    same = [h for h in hs if h is not None and h.schema == first.schema and h.zero_threshold == first.zero_threshold
            and (not first.is_custom or np.array_equal(h.custom_values, first.custom_values))]
    if len(same) < len(hs):
        return None
    scalars = np.array([[h.zero_count, h.count, h.sum] for h in same]).T.reshape(-1)
    s_tot, s_comp = kern.neumaier_segments(scalars, np.arange(4, dtype=np.int64) * len(same))
    pos_idx, pos_tot, pos_comp = _bucket_sums([h.pos_idx for h in same], [h.pos for h in same])
    neg_idx, neg_tot, neg_comp = _bucket_sums([h.neg_idx for h in same], [h.neg for h in same])
    if mean and (np.isinf(s_tot).any() or np.isinf(pos_tot).any() or np.isinf(neg_tot).any()):
        return None
    hint = first.hint
    for h in same[1:]:
        hint = combined_hint(hint, h.hint)
    n = float(len(same)) if mean else 1.0
    with np.errstate(all="ignore"):
        zc, count, total = (s_tot / n + s_comp / n).tolist()
        return replace(first, zero_count=zc, count=count, sum=total, pos_idx=pos_idx, pos=pos_tot / n + pos_comp / n,
                       neg_idx=neg_idx, neg=neg_tot / n + neg_comp / n, hint=hint).compact()


def _bucket_sums(idx: list[np.ndarray], counts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bucket index (ascending): the Neumaier total and compensation of its counts in input order."""
    all_idx = np.concatenate(idx)
    if all_idx.shape[0] == 0:
        return all_idx.astype(np.int64), np.zeros(0), np.zeros(0)
    order = np.argsort(all_idx, kind="stable")
    sorted_idx = all_idx[order]
    starts = np.flatnonzero(np.concatenate([[True], sorted_idx[1:] != sorted_idx[:-1]]))
    tot, comp = kern.neumaier_segments(np.concatenate(counts)[order],
                                       np.append(starts, sorted_idx.shape[0]).astype(np.int64))
    return sorted_idx[starts].astype(np.int64), tot, comp


class _HistogramSum:
    """A Kahan-compensated histogram sum; for ``avg`` the mean is taken from the sum at the end unless the sum
    overflows, after which it goes on incrementally (as Prometheus averages floats and histograms)."""

    def __init__(self, first: FloatHistogram, mean: bool) -> None:
        self.acc: FloatHistogram = first
        self.comp: FloatHistogram | None = None
        self.mean, self.incremental = mean, False

    def add(self, h: FloatHistogram, n: int) -> bool:
        """Adds the ``n``-th sample; returns whether custom bounds were reconciled."""
        if not self.incremental:
            acc, comp, reconciled = self.acc.kahan_add(self.comp, h)
            if not (self.mean and _overflows(acc)):
                self.acc, self.comp = acc, comp
                return reconciled
            self.incremental = True
            self.acc, self.comp = self.acc.divide(n - 1), None if self.comp is None else self.comp.divide(n - 1)
        q = (n - 1) / n
        scaled_comp = None if self.comp is None else self.comp.scale(q)
        self.acc, self.comp, reconciled = self.acc.scale(q).kahan_add(scaled_comp, h.divide(n))
        return reconciled

    def result(self, n: int) -> FloatHistogram:
        acc, comp = self.acc, self.comp
        if self.mean and not self.incremental:
            acc, comp = acc.divide(n), None if comp is None else comp.divide(n)
        return (acc if comp is None else acc.add(comp)[0]).compact()


def _overflows(h: FloatHistogram) -> bool:
    with np.errstate(all="ignore"):
        return bool(np.isinf([h.count, h.sum, h.zero_count]).any() or np.isinf(h.pos).any() or np.isinf(h.neg).any())


def _k_values(param: np.ndarray) -> np.ndarray:
    if np.isnan(param).any():
        raise EvalError("Parameter value is NaN")
    if (param >= _INT64_LIMIT).any():
        raise EvalError(f"Scalar value {ann.fmt_g(float(param[param >= _INT64_LIMIT][0]))} overflows int64")
    if (param <= -_INT64_LIMIT).any():
        raise EvalError(f"Scalar value {ann.fmt_g(float(param[param <= -_INT64_LIMIT][0]))} underflows int64")
    return np.asarray(np.trunc(param), np.int64)


def _select_k(ev: Evaluator, node: AggregateExpr, vec: Vector, k: np.ndarray, steps: int) -> Vector:
    gid, out_labels = group_ids(vec, node.grouping, node.without)
    ev.reserve(len(vec) * steps)  # the selection and the ranks (the values are shared)
    sel = np.zeros((len(vec), steps), np.bool_)
    rank = np.zeros((len(vec), steps), np.int64)
    if len(vec):
        order, gstart = _grouped_order(gid, len(out_labels))
        kern.group_select(_SELECT_MODES[node.op], vec.values, vec.present, order, gstart, k, sel, rank)
    out = Vector(vec.labels, vec.values, sel, vec.drop_name, hist=present_histograms(vec.hist, sel))
    if ev.is_instant and len(vec):
        # Instant results keep Prometheus' order: groups by first appearance, then by rank.
        rows = np.flatnonzero(sel[:, 0])
        rows = rows[np.lexsort((rank[rows, 0], gid[rows]))]
        out = out.take(rows)
    return out


def _limit_ratio(ev: Evaluator, node: AggregateExpr, vec: Vector, ratio: np.ndarray) -> Vector:
    assert node.param is not None
    if np.isnan(ratio).any():
        raise EvalError("Ratio value is NaN")
    for r in np.unique(ratio[(ratio < -1) | (ratio > 1)]):
        capped = -1.0 if r < -1 else 1.0
        ev.annotations.warn(ann.invalid_ratio(float(r), capped), node.param.pos)
    r = np.clip(ratio, -1.0, 1.0)
    offset = np.fromiter((label_hash(lb) / _MAX_UINT64 for lb in vec.labels), np.float64, len(vec))[:, None]
    take = ((r >= 0) & (offset < r)) | ((r < 0) & (offset >= 1.0 + r))
    take &= (r != 0)[None, :]
    present = vec.present & take
    return Vector(vec.labels, vec.values, present, vec.drop_name, hist=present_histograms(vec.hist, present))



def _count_values(ev: Evaluator, node: AggregateExpr, ts: np.ndarray) -> Vector:
    assert node.param is not None
    param = unwrap_parens(node.param)
    if not isinstance(param, StringLiteral):
        raise EvalError("count_values expects a string literal as its parameter")
    label = param.value
    if not label or any(0xD800 <= ord(c) <= 0xDFFF for c in label):
        raise EvalError(f"invalid label name {go_quote(label)}")
    vec = ev.eval_vector(node.expr, ts)
    steps = ts.shape[0]
    grouping = node.grouping if node.without else (*node.grouping, label)
    base = [tuple(p for p in lb if p[0] != label) for lb in vec.labels]
    keeps_label = (label not in node.grouping) if node.without else True
    gid_map: dict[Labels, int] = {}
    gid = np.fromiter((gid_map.setdefault(group_labels(b, grouping, node.without), len(gid_map)) for b in base),
                      np.int64, len(base))
    bases = list(gid_map)
    rows, cols = np.nonzero(vec.present)
    if rows.size == 0:
        return Vector.empty(steps)
    vals = vec.values[rows, cols]
    bits = vals.view(np.uint64)
    bits = np.where(np.isnan(vals), np.uint64(0x7FF8000000000001), bits)
    texts = _histogram_texts(vec, rows, cols)
    kinds = np.zeros(rows.shape[0], np.uint64)
    if texts:
        # A histogram's value label is its text: equal texts count together, apart from any float.
        ids: dict[str, int] = {}
        cells = np.flatnonzero([t is not None for t in texts])
        kinds[cells] = 1
        bits[cells] = [ids.setdefault(texts[c] or "", len(ids)) for c in cells.tolist()]
    keys = np.stack([gid[rows].astype(np.uint64), kinds, bits], axis=1)
    uniq, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    ev.reserve(int(order.shape[0]) * steps)  # a row per distinct value: up to series x steps rows
    remap = np.empty_like(order)
    remap[order] = np.arange(order.shape[0])
    out_id = remap[inverse.reshape(-1)]
    labels: list[Labels] = []
    for u in order.tolist():
        g = int(uniq[u, 0])
        value = texts[first[u]] if texts and texts[first[u]] is not None else format_f(float(vals[first[u]]))
        lbls = dict(bases[g])
        if keeps_label:
            lbls[label] = value
        labels.append(tuple(sorted(lbls.items())))
    counts = np.zeros((len(labels), steps))
    np.add.at(counts, (out_id, cols), 1.0)
    out = Vector(labels, counts, counts > 0, np.zeros(len(labels), np.bool_))
    return merge_duplicates(_sum_same_labels(out), ev.check_deadline)


def _histogram_texts(vec: Vector, rows: np.ndarray, cols: np.ndarray) -> list[str | None]:
    """Per present cell, Prometheus' text of its histogram (None for floats); empty without histograms."""
    if vec.hist is None:
        return []
    return [None if h is None else h.go_string() for h in vec.hist[rows, cols].tolist()]


def _sum_same_labels(v: Vector) -> Vector:
    """Rows that ended up with the same labels (the value label dropped by ``without``) add up."""
    seen: dict[Labels, int] = {}
    for lb in v.labels:
        seen.setdefault(lb, len(seen))
    if len(seen) == len(v.labels):
        return v
    idx = np.fromiter((seen[lb] for lb in v.labels), np.int64, len(v.labels))
    counts = np.zeros((len(seen), v.values.shape[1]))
    np.add.at(counts, idx, v.values)
    return Vector(list(seen), counts, counts > 0, np.zeros(len(seen), np.bool_))
