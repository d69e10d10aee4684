"""Aggregation operators as grouped reductions over the ``(series x steps)`` matrix."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from thanostools.core.errors import EvalError
from thanostools.core.goformat import format_f, go_quote
from thanostools.core.kernels import promql as kern
from thanostools.core.labels import METRIC_NAME, Labels, label_hash
from thanostools.core.promql import annotations as ann
from thanostools.core.promql.parser.ast import AggregateExpr, StringLiteral
from thanostools.core.promql.value import Vector
from thanostools.core.promql.vecops import merge_duplicates, unwrap_parens

if TYPE_CHECKING:
    from thanostools.core.promql.evaluator import Evaluator

_REDUCE_CODES = {
    "sum": kern.AGG_SUM, "avg": kern.AGG_AVG, "count": kern.AGG_COUNT, "min": kern.AGG_MIN,
    "max": kern.AGG_MAX, "group": kern.AGG_GROUP, "stddev": kern.AGG_STDDEV, "stdvar": kern.AGG_STDVAR,
}
_SELECT_MODES = {"topk": 0, "bottomk": 1, "limitk": 2}
_MAX_UINT64 = float(2**64 - 1)
_INT64_LIMIT = float(2**63)


def group_labels(labels: Labels, grouping: tuple[str, ...], without: bool) -> Labels:
    if without:
        drop = set(grouping) | {METRIC_NAME}
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
    if op == "quantile":
        assert param is not None and node.param is not None
        for q in np.unique(param[(param < 0) | (param > 1) | np.isnan(param)]):
            ev.annotations.warn(ann.invalid_quantile(float(q)), node.param.pos)
        if ngroups:
            order, gstart = _grouped_order(gid, ngroups)
            kern.group_quantile(vec.values, vec.present, order, gstart, np.ascontiguousarray(param), out, outp)
    elif ngroups:
        kern.group_reduce(_REDUCE_CODES[op], vec.values, vec.present, gid, ngroups, out, outp)
    drop = np.zeros(ngroups, np.bool_)
    if ngroups:
        np.logical_or.at(drop, gid, vec.drop_name)
    return Vector(out_labels, out, outp, drop)


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
    out = Vector(vec.labels, vec.values, sel, vec.drop_name)
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
    return Vector(vec.labels, vec.values, vec.present & take, vec.drop_name)


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
    keys = np.stack([gid[rows].astype(np.uint64), bits], axis=1)
    uniq, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    ev.reserve(int(order.shape[0]) * steps)  # a row per distinct value: up to series x steps rows
    remap = np.empty_like(order)
    remap[order] = np.arange(order.shape[0])
    out_id = remap[inverse.reshape(-1)]
    labels: list[Labels] = []
    for u in order.tolist():
        g = int(uniq[u, 0])
        value = format_f(float(vals[first[u]]))
        lbls = dict(bases[g])
        if keeps_label:
            lbls[label] = value
        labels.append(tuple(sorted(lbls.items())))
    counts = np.zeros((len(labels), steps))
    np.add.at(counts, (out_id, cols), 1.0)
    out = Vector(labels, counts, counts > 0, np.zeros(len(labels), np.bool_))
    return merge_duplicates(_sum_same_labels(out), ev.check_deadline)


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
