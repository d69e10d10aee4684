"""Binary operators: scalar/vector arithmetic and comparisons, vector matching, set operators.

Matching is resolved once per node on label signatures; the operator is then applied to whole
``(series x steps)`` matrices. Duplicate-match errors are detected per step, as Prometheus does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from thanostools.core.errors import EvalError
from thanostools.core.goformat import go_labels_string
from thanostools.core.labels import METRIC_NAME, Labels, get
from thanostools.core.promql.parser.ast import (
    ARITHMETIC_OPS,
    COMPARISON_OPS,
    SET_OPS,
    BinaryExpr,
    Cardinality,
    VectorMatching,
)
from thanostools.core.promql.value import Scalar, Value, Vector
from thanostools.core.promql.vecops import merge_duplicates

if TYPE_CHECKING:
    from thanostools.core.promql.evaluator import Evaluator


def eval_binary(ev: Evaluator, node: BinaryExpr, ts: np.ndarray) -> Value:
    spine = node.left_spine()
    ev.float_only.add(id(spine[-1].lhs))
    ev.float_only.update(id(b.rhs) for b in spine)
    acc = ev.eval(spine[-1].lhs, ts)
    for b in reversed(spine):
        rhs = ev.eval(b.rhs, ts)
        acc = apply_binary(ev, b, acc, rhs)
        ev.check_deadline()
    return acc


def apply_binary(ev: Evaluator, node: BinaryExpr, lhs: Value, rhs: Value) -> Value:
    op = node.op
    if isinstance(lhs, Scalar) and isinstance(rhs, Scalar):
        if op in COMPARISON_OPS:
            return Scalar(compare(op, lhs.values, rhs.values).astype(np.float64))
        return Scalar(arithmetic(op, lhs.values, rhs.values))
    if isinstance(lhs, Vector) and isinstance(rhs, Scalar):
        ev.reserve(lhs.values.size)
        return vector_scalar(op, lhs, rhs.values, False, node.return_bool)
    if isinstance(lhs, Scalar) and isinstance(rhs, Vector):
        ev.reserve(rhs.values.size)
        return vector_scalar(op, rhs, lhs.values, True, node.return_bool)
    if not (isinstance(lhs, Vector) and isinstance(rhs, Vector)):
        raise EvalError(f"binary operator {op!r} is not defined for these operand types")
    matching = node.matching or VectorMatching(Cardinality.MANY_TO_MANY if op in SET_OPS else Cardinality.ONE_TO_ONE)
    if op in SET_OPS:
        return set_operation(ev, op, lhs, rhs, matching)
    return vector_vector(ev, op, lhs, rhs, matching, node.return_bool)


def arithmetic(op: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        if op == "+":
            return np.asarray(a + b)
        if op == "-":
            return np.asarray(a - b)
        if op == "*":
            return np.asarray(a * b)
        if op == "/":
            return np.asarray(np.true_divide(a, b))
        if op == "%":
            return np.asarray(np.fmod(a, b))
        if op == "^":
            return np.asarray(np.power(a, b))
        if op == "atan2":
            return np.asarray(np.arctan2(a, b))
    raise EvalError(f"operator {op!r} not allowed for arithmetic")


def compare(op: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        if op == "==":
            return np.asarray(a == b)
        if op == "!=":
            return np.asarray(a != b)
        if op == ">":
            return np.asarray(a > b)
        if op == "<":
            return np.asarray(a < b)
        if op == ">=":
            return np.asarray(a >= b)
        if op == "<=":
            return np.asarray(a <= b)
    raise EvalError(f"operator {op!r} not allowed for comparisons")


def vector_scalar(op: str, vec: Vector, s: np.ndarray, scalar_left: bool, return_bool: bool) -> Vector:
    a, b = (s[None, :], vec.values) if scalar_left else (vec.values, s[None, :])
    if op in COMPARISON_OPS:
        cond = np.broadcast_to(compare(op, a, b), vec.values.shape)
        if return_bool:
            return Vector(vec.labels, cond.astype(np.float64), vec.present, np.ones(len(vec), np.bool_))
        return Vector(vec.labels, vec.values, vec.present & cond, vec.drop_name)
    if op not in ARITHMETIC_OPS:
        raise EvalError(f"operator {op!r} not allowed between a vector and a scalar")
    values = np.broadcast_to(arithmetic(op, a, b), vec.values.shape).copy()
    return Vector(vec.labels, values, vec.present, np.ones(len(vec), np.bool_))


# -- matching ----------------------------------------------------------------------------------

def signature(labels: Labels, matching: VectorMatching) -> tuple[object, ...]:
    if matching.on:
        return tuple(get(labels, n) for n in matching.matching_labels)
    drop = set(matching.matching_labels) | {METRIC_NAME}
    return tuple(p for p in labels if p[0] not in drop)


def matched_labels(labels: Labels, matching: VectorMatching) -> Labels:
    if matching.on:
        keep = set(matching.matching_labels)
        return tuple(p for p in labels if p[0] in keep)
    drop = set(matching.matching_labels) | {METRIC_NAME}
    return tuple(p for p in labels if p[0] not in drop)


def signature_ids(lhs: Vector, rhs: Vector, matching: VectorMatching) -> tuple[np.ndarray, np.ndarray, int]:
    ids: dict[tuple[object, ...], int] = {}
    lsig = np.fromiter((ids.setdefault(signature(lb, matching), len(ids)) for lb in lhs.labels), np.int64,
                       len(lhs))
    rsig = np.fromiter((ids.setdefault(signature(lb, matching), len(ids)) for lb in rhs.labels), np.int64,
                       len(rhs))
    return lsig, rsig, len(ids)


def group_count(present: np.ndarray, gid: np.ndarray, ngroups: int) -> np.ndarray:
    """Per group and step, how many rows are present."""
    out = np.zeros((ngroups, present.shape[1]), np.int64)
    if gid.shape[0]:
        order = np.argsort(gid, kind="stable")
        sorted_gid = gid[order]
        starts = np.flatnonzero(np.concatenate([[True], sorted_gid[1:] != sorted_gid[:-1]]))
        out[sorted_gid[starts]] = np.add.reduceat(present[order].astype(np.int64), starts, axis=0)
    return out


def set_operation(ev: Evaluator, op: str, lhs: Vector, rhs: Vector, matching: VectorMatching) -> Vector:
    lsig, rsig, nsig = signature_ids(lhs, rhs, matching)
    if op == "or":
        ev.reserve(lhs.values.size + rhs.values.size)
        left_any = group_count(lhs.present, lsig, nsig) > 0
        rpres = rhs.present & ~left_any[rsig] if len(rhs) else rhs.present
        out = Vector(lhs.labels + rhs.labels, np.concatenate([lhs.values, rhs.values]),
                     np.concatenate([lhs.present, rpres]), np.concatenate([lhs.drop_name, rhs.drop_name]))
        return merge_duplicates(out, ev.check_deadline)
    right_any = group_count(rhs.present, rsig, nsig) > 0
    hit = right_any[lsig] if len(lhs) else lhs.present
    present = lhs.present & hit if op == "and" else lhs.present & ~hit
    return Vector(lhs.labels, lhs.values, present, lhs.drop_name)


def vector_vector(ev: Evaluator, op: str, lhs: Vector, rhs: Vector, matching: VectorMatching,
                  return_bool: bool) -> Vector:
    steps = lhs.values.shape[1]
    swapped = matching.card is Cardinality.ONE_TO_MANY
    many, one = (rhs, lhs) if swapped else (lhs, rhs)
    if not len(many) or not len(one):
        return Vector.empty(steps)
    msig, osig, nsig = signature_ids(many, one, matching)
    _check_one_side(many, one, osig, nsig, matching, swapped)
    # Every pair of series with the same signature is a row of the result; sides with series present
    # at different steps can pair up far more rows than either holds. (Counts are at most the series
    # of a side, so their products fit in int64.)
    pairs = int(np.dot(np.bincount(msig, minlength=nsig), np.bincount(osig, minlength=nsig)))
    ev.reserve(pairs * steps)

    by_sig: dict[int, list[int]] = {}
    for j, s in enumerate(osig.tolist()):
        by_sig.setdefault(s, []).append(j)
    pm: list[int] = []
    po: list[int] = []
    for i, s in enumerate(msig.tolist()):
        for j in by_sig.get(s, ()):
            pm.append(i)
            po.append(j)
    if not pm:
        return Vector.empty(steps)
    im = np.asarray(pm, np.int64)
    io = np.asarray(po, np.int64)
    matched = many.present[im] & one.present[io]
    labels = _result_labels(many, one, im, io, op, matching)
    _check_many_side(matched, msig[im], labels, matching)

    a, b = (one.values[io], many.values[im]) if swapped else (many.values[im], one.values[io])
    if op in COMPARISON_OPS:
        cond = compare(op, a, b)
        if return_bool:
            values, present = cond.astype(np.float64), matched
        else:
            values, present = a, matched & cond
    else:
        values, present = arithmetic(op, a, b), matched
    # A pending name removal follows the name: the result's __name__ comes from the many side unless
    # group_x(__name__) copies it from the one side (arithmetic has removed it already).
    name_side = one.drop_name[io] if METRIC_NAME in matching.include else many.drop_name[im]
    drop = name_side | return_bool
    return merge_duplicates(Vector(labels, values, present, drop).nonempty(), ev.check_deadline)


def _check_one_side(many: Vector, one: Vector, osig: np.ndarray, nsig: int, matching: VectorMatching,
                    swapped: bool) -> None:
    counts = group_count(one.present, osig, nsig)
    dup = (counts > 1) & np.asarray(many.present.any(axis=0))[None, :]
    if not dup.any():
        return
    step = int(np.flatnonzero(dup.any(axis=0))[0])
    sig = int(np.flatnonzero(dup[:, step])[0])
    rows = [j for j in np.flatnonzero(osig == sig).tolist() if one.present[j, step]][:2]
    first, second = sorted(one.labels[j] for j in rows)
    side = "left" if swapped else "right"
    group = go_labels_string(matched_labels(one.labels[rows[0]], matching))
    raise EvalError(f"found duplicate series for the match group {group} on the {side} hand-side of the "
                    f"operation: [{go_labels_string(first)}, {go_labels_string(second)}]"
                    ";many-to-many matching not allowed: matching labels must be unique on one side")


def _check_many_side(matched: np.ndarray, pair_sig: np.ndarray, labels: list[Labels],
                     matching: VectorMatching) -> None:
    if matching.card is Cardinality.ONE_TO_ONE:
        counts = group_count(matched, _dense_ids(pair_sig.tolist()), len(set(pair_sig.tolist())))
        if (counts > 1).any():
            raise EvalError("multiple matches for labels: many-to-one matching must be explicit "
                            "(group_left/group_right)")
        return
    keys = [(int(s), lbls) for s, lbls in zip(pair_sig.tolist(), labels, strict=True)]
    ids = _dense_ids(keys)
    if (group_count(matched, ids, int(ids.max()) + 1 if ids.size else 0) > 1).any():
        raise EvalError("multiple matches for labels: grouping labels must ensure unique matches")


def _dense_ids(keys: Sequence[object]) -> np.ndarray:
    seen: dict[object, int] = {}
    return np.fromiter((seen.setdefault(k, len(seen)) for k in keys), np.int64, len(keys))


def _result_labels(many: Vector, one: Vector, im: np.ndarray, io: np.ndarray, op: str,
                   matching: VectorMatching) -> list[Labels]:
    cache: dict[tuple[int, int], Labels] = {}
    out: list[Labels] = []
    drop_name = op in ARITHMETIC_OPS
    keep = set(matching.matching_labels)
    for i, j in zip(im.tolist(), io.tolist(), strict=True):
        key = (i, j) if matching.include else (i, -1)
        lbls = cache.get(key)
        if lbls is None:
            d = dict(many.labels[i])
            if drop_name:
                d.pop(METRIC_NAME, None)
            if matching.card is Cardinality.ONE_TO_ONE:
                d = {k: v for k, v in d.items() if (k in keep) == matching.on}
            for name in matching.include:
                value = get(one.labels[j], name)
                if value:
                    d[name] = value
                else:
                    d.pop(name, None)
            lbls = tuple(sorted(d.items()))
            cache[key] = lbls
        out.append(lbls)
    return out
