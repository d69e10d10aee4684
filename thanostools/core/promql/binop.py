"""Binary operators: scalar/vector arithmetic and comparisons, vector matching, set operators.

Matching is resolved once per node on label signatures; the operator is then applied to whole
``(series x steps)`` matrices. Duplicate-match errors are detected per step, as Prometheus does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from thanostools.core.errors import EvalError
from thanostools.core.goformat import go_labels_string
from thanostools.core.labels import METRIC_NAME, NAME_LABELS, Labels, get
from thanostools.core.promql import annotations as ann
from thanostools.core.promql.floathist import HINT_GAUGE, FloatHistogram, IncompatibleSchemaError, hints_collide
from thanostools.core.promql.parser.ast import (
    ARITHMETIC_OPS,
    COMPARISON_OPS,
    SET_OPS,
    TRIM_OPS,
    BinaryExpr,
    Cardinality,
    VectorMatching,
)
from thanostools.core.promql.value import Scalar, Value, Vector
from thanostools.core.promql.vecops import merge_duplicates, present_histograms

if TYPE_CHECKING:
    from thanostools.core.promql.evaluator import Evaluator


def eval_binary(ev: Evaluator, node: BinaryExpr, ts: np.ndarray) -> Value:
    spine = node.left_spine()
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
        return _vector_scalar_node(ev, node, lhs, rhs.values, False)
    if isinstance(lhs, Scalar) and isinstance(rhs, Vector):
        ev.reserve(rhs.values.size)
        return _vector_scalar_node(ev, node, rhs, lhs.values, True)
    if not (isinstance(lhs, Vector) and isinstance(rhs, Vector)):
        raise EvalError(f"binary operator {op!r} is not defined for these operand types")
    matching = node.matching or VectorMatching(Cardinality.MANY_TO_MANY if op in SET_OPS else Cardinality.ONE_TO_ONE)
    if op in SET_OPS:
        return set_operation(ev, op, lhs, rhs, matching)
    return vector_vector(ev, op, lhs, rhs, matching, node.return_bool, node.pos)


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
    """``vec op s`` (or ``s op vec``) over float samples; ``vec`` must hold floats only."""
    a, b = (s[None, :], vec.values) if scalar_left else (vec.values, s[None, :])
    if op in COMPARISON_OPS:
        cond = np.broadcast_to(compare(op, a, b), vec.values.shape)
        if return_bool:
            return Vector(vec.labels, cond.astype(np.float64), vec.present, np.ones(len(vec), np.bool_))
        return Vector(vec.labels, vec.values, vec.present & cond, vec.drop_name)
    if op in TRIM_OPS:
        return Vector(vec.labels, vec.values, np.zeros_like(vec.present), vec.drop_name)
    if op not in ARITHMETIC_OPS:
        raise EvalError(f"operator {op!r} not allowed between a vector and a scalar")
    values = np.broadcast_to(arithmetic(op, a, b), vec.values.shape).copy()
    return Vector(vec.labels, values, vec.present, np.ones(len(vec), np.bool_))


def _vector_scalar_node(ev: Evaluator, node: BinaryExpr, vec: Vector, s: np.ndarray, scalar_left: bool) -> Vector:
    """A vector-scalar operation: floats in bulk, histogram samples one by one, annotated as Prometheus does
    (the last failing sample of a step names the problem)."""
    op = node.op
    floats = vec.floats_only()
    out = vector_scalar(op, floats, s, scalar_left, node.return_bool)
    events = _StepEvents(vec.steps)
    if op in TRIM_OPS:
        events.note_cells(floats.present, _incompatible("float", op, "float").error)
    if vec.hist is None:
        events.flush(ev, node.pos)
        return out
    values, present = out.values.copy(), out.present.copy()
    hist = np.full(values.shape, None, object)
    rows, cols = np.nonzero(vec.is_hist & vec.present)
    for i, k in zip(rows.tolist(), cols.tolist(), strict=True):
        h, f = vec.hist[i, k], float(s[k])
        res = _elem_hist(op, f, 0.0, None, h) if scalar_left else _elem_hist(op, 0.0, f, h, None)
        if res.error is not None:
            events.note(k, i, res.error)
            continue
        if node.return_bool:
            values[i, k], present[i, k] = float(res.keep), True
        elif res.keep:
            hist[i, k], present[i, k] = res.hist, True
    events.flush(ev, node.pos)
    return Vector(out.labels, values, present, out.drop_name, hist=hist if hist.astype(np.bool_).any() else None)


def negated(hist: np.ndarray | None) -> np.ndarray | None:
    """Unary minus of the histogram cells (Prometheus multiplies by -1: the results are gauges)."""
    if hist is None:
        return None
    out = np.full(hist.shape, None, object)
    for i, k in zip(*np.nonzero(hist.astype(np.bool_)), strict=True):
        out[i, k] = hist[i, k].scale(-1.0)
    return out


# -- histogram samples -------------------------------------------------------------------------

@dataclass(frozen=True)
class _Event:
    kind: str  # ann.WARNING or ann.INFO
    message: str


@dataclass(frozen=True)
class _Elem:
    """One sample's result: the histogram (floats never reach here), whether it is kept, and what to report.
    An ``error`` drops the sample; an ``info`` goes with a kept one."""

    hist: FloatHistogram | None
    keep: bool
    info: _Event | None = None
    error: _Event | None = None


class _StepEvents:
    """Per step, the annotation of the last sample that reported one (Prometheus keeps one error per step)."""

    def __init__(self, steps: int) -> None:
        self.order = np.full(steps, -1, np.int64)
        self.event: list[_Event | None] = [None] * steps

    def note(self, step: int, order: int, event: _Event) -> None:
        if order >= self.order[step]:
            self.order[step], self.event[step] = order, event

    def note_cells(self, cells: np.ndarray, event: _Event | None) -> None:
        """``event`` for every present cell of ``cells`` (rows in evaluation order)."""
        if event is None or not cells.any():
            return
        last = cells.shape[0] - 1 - np.argmax(cells[::-1], axis=0)
        for k in np.flatnonzero(cells.any(axis=0)).tolist():
            self.note(k, int(last[k]), event)

    def flush(self, ev: Evaluator, pos: int) -> None:
        for event in self.event:
            if event is not None:
                ev.annotations.add(event.kind, event.message, pos)


def _incompatible(lhs_type: str, op: str, rhs_type: str) -> _Elem:
    return _Elem(None, False, error=_Event(ann.INFO, ann.incompatible_types_in_binop(lhs_type, op, rhs_type)))


def _elem_hist(op: str, lf: float, rf: float, lh: FloatHistogram | None, rh: FloatHistogram | None) -> _Elem:
    """Prometheus' element operation where at least one side is a histogram."""
    if lh is None:
        assert rh is not None
        if op == "*":
            return _Elem(rh.scale(lf).compact(), True)
        return _incompatible("float", op, "histogram")
    if rh is None:
        if op == "*":
            return _Elem(lh.scale(rf).compact(), True)
        if op == "/":
            return _Elem(lh.divide(rf).compact(), True)
        if op in TRIM_OPS:
            return _Elem(lh.trim(rf, upper=op == "</"), True)
        return _incompatible("histogram", op, "float")
    if op in ("+", "-"):
        return _add_sub(op, lh, rh)
    if op == "==":
        return _Elem(lh, lh.equals(rh))
    if op == "!=":
        return _Elem(lh, not lh.equals(rh))
    return _incompatible("histogram", op, "histogram")


def _add_sub(op: str, lh: FloatHistogram, rh: FloatHistogram) -> _Elem:
    try:
        res, reconciled = lh.add(rh) if op == "+" else lh.sub(rh)
    except IncompatibleSchemaError:
        return _Elem(None, False, error=_Event(ann.WARNING, ann.incompatible_bucket_layout_in_binop(op)))
    operation = ann.HISTOGRAM_ADDITION if op == "+" else ann.HISTOGRAM_SUBTRACTION
    if op == "-":
        res = res.with_hint(HINT_GAUGE)
    # A collision is reported as the step's error, which drops the sample (as Prometheus' VectorBinop does).
    error = _Event(ann.WARNING, ann.counter_reset_collision(operation)) if hints_collide(lh, rh) else None
    info = _Event(ann.INFO, ann.mismatched_custom_buckets(operation)) if reconciled else None
    return _Elem(res.compact(), True, info=info, error=error)


def _hist_matrix(v: Vector) -> np.ndarray:
    return np.full(v.values.shape, None, object) if v.hist is None else v.hist


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
        present = np.concatenate([lhs.present, rpres])
        hist = None
        if lhs.hist is not None or rhs.hist is not None:
            hist = present_histograms(np.concatenate([_hist_matrix(lhs), _hist_matrix(rhs)]), present)
        out = Vector(lhs.labels + rhs.labels, np.concatenate([lhs.values, rhs.values]), present,
                     np.concatenate([lhs.drop_name, rhs.drop_name]), hist=hist)
        return merge_duplicates(out, ev.check_deadline)
    right_any = group_count(rhs.present, rsig, nsig) > 0
    hit = right_any[lsig] if len(lhs) else lhs.present
    present = lhs.present & hit if op == "and" else lhs.present & ~hit
    hist = present_histograms(lhs.hist, present)
    return Vector(lhs.labels, lhs.values, present, lhs.drop_name, hist=hist)


def vector_vector(ev: Evaluator, op: str, lhs: Vector, rhs: Vector, matching: VectorMatching,
                  return_bool: bool, pos: int = 0) -> Vector:
    steps = lhs.values.shape[1]
    swapped = matching.card is Cardinality.ONE_TO_MANY
    many, one = (rhs, lhs) if swapped else (lhs, rhs)
    if (not len(many) and not len(one)) or ((not len(many) or not len(one)) and not matching.fills):
        return Vector.empty(steps)
    msig, osig, nsig = signature_ids(many, one, matching)
    if matching.fills:
        many, one, msig, osig = _filled(many, one, msig, osig, nsig, matching)
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

    pair_hist = _pair_histograms(many, one, im, io, matched, swapped)
    float_cells = matched if pair_hist is None else matched & ~pair_hist[0]
    a, b = (one.values[io], many.values[im]) if swapped else (many.values[im], one.values[io])
    events = _StepEvents(steps)
    if op in COMPARISON_OPS:
        cond = compare(op, a, b)
        if return_bool:
            values, present = cond.astype(np.float64), float_cells
        else:
            values, present = a, float_cells & cond
    elif op in TRIM_OPS:
        values, present = a, np.zeros_like(float_cells)
        events.note_cells(float_cells, _incompatible("float", op, "float").error)
    else:
        values, present = arithmetic(op, a, b), float_cells
    hist = None
    if pair_hist is not None:
        values, present = values.copy(), present.copy()
        hist = _apply_histograms(op, pair_hist, values, present, return_bool, events)
    events.flush(ev, pos)
    # A pending name removal follows the name: the result's __name__ comes from the many side unless
    # group_x(__name__) copies it from the one side (arithmetic has removed it already).
    name_side = one.drop_name[io] if METRIC_NAME in matching.include else many.drop_name[im]
    drop = name_side | return_bool
    return merge_duplicates(Vector(labels, values, present, drop, hist=hist).nonempty(), ev.check_deadline)


def _filled(many: Vector, one: Vector, msig: np.ndarray, osig: np.ndarray, nsig: int,
            matching: VectorMatching) -> tuple[Vector, Vector, np.ndarray, np.ndarray]:
    """The sides with the fill modifiers' synthetic series: per match signature, one series on a side
    that is present where the other side has the signature and this side does not. As in Prometheus,
    ``fill_right`` fills the "one" side and ``fill_left`` the "many" side (after group_right's swap)."""
    many_has = group_count(many.present, msig, nsig) > 0
    one_has = group_count(one.present, osig, nsig) > 0
    fill_many, fill_one = matching.fill_lhs, matching.fill_rhs
    new_many, new_msig = _with_fill_rows(many, msig, one, osig, one_has & ~many_has, fill_many, matching)
    new_one, new_osig = _with_fill_rows(one, osig, many, msig, many_has & ~one_has, fill_one, matching)
    return new_many, new_one, new_msig, new_osig


def _with_fill_rows(side: Vector, sig: np.ndarray, other: Vector, other_sig: np.ndarray, missing: np.ndarray,
                    fill: float | None, matching: VectorMatching) -> tuple[Vector, np.ndarray]:
    """``side`` plus a series of value ``fill`` per signature, present at the steps ``missing`` marks; its
    labels are the other side's match labels (``on`` labels, or all but the ``ignoring`` ones and the name)."""
    fill_sigs = np.flatnonzero(missing.any(axis=1)) if fill is not None else np.zeros(0, np.int64)
    if not fill_sigs.size:
        return side, sig
    first_row: dict[int, int] = {}
    for row, s in enumerate(other_sig.tolist()):
        first_row.setdefault(s, row)
    labels = [matched_labels(other.labels[first_row[s]], matching) for s in fill_sigs.tolist()]
    steps = side.values.shape[1]
    values = np.full((fill_sigs.size, steps), fill, np.float64)
    hist = None
    if side.hist is not None:
        hist = np.concatenate([side.hist, np.full((fill_sigs.size, steps), None, object)])
    out = Vector(side.labels + labels, np.concatenate([side.values, values]),
                 np.concatenate([side.present, missing[fill_sigs]]),
                 np.concatenate([side.drop_name, np.zeros(fill_sigs.size, np.bool_)]), hist=hist)
    return out, np.concatenate([sig, fill_sigs.astype(np.int64)])


_PairHistograms = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _pair_histograms(many: Vector, one: Vector, im: np.ndarray, io: np.ndarray, matched: np.ndarray,
                     swapped: bool) -> _PairHistograms | None:
    """For result cells where a side holds a histogram: (mask, lhs hist, rhs hist, lhs float, rhs float)."""
    if many.hist is None and one.hist is None:
        return None
    mh, oh = _hist_matrix(many)[im], _hist_matrix(one)[io]
    mask = matched & (mh.astype(np.bool_) | oh.astype(np.bool_))
    if not mask.any():
        return None
    mv, ov = many.values[im], one.values[io]
    return (mask, oh, mh, ov, mv) if swapped else (mask, mh, oh, mv, ov)


def _apply_histograms(op: str, pair_hist: _PairHistograms, values: np.ndarray, present: np.ndarray,
                      return_bool: bool, events: _StepEvents) -> np.ndarray | None:
    """Evaluates the cells with a histogram side into ``values``/``present``; returns the histogram cells."""
    mask, lh, rh, lf, rf = pair_hist
    hist = np.full(values.shape, None, object)
    rows, cols = np.nonzero(mask)
    for p, k in zip(rows.tolist(), cols.tolist(), strict=True):
        res = _elem_hist(op, float(lf[p, k]), float(rf[p, k]), lh[p, k], rh[p, k])
        if res.error is not None:
            events.note(k, p, res.error)
            continue
        if res.info is not None:
            events.note(k, p, res.info)
        if return_bool:
            values[p, k], present[p, k] = float(res.keep), True
        elif res.keep:
            hist[p, k], present[p, k] = res.hist, True
    return hist if hist.astype(np.bool_).any() else None


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
                for name in NAME_LABELS:
                    d.pop(name, None)
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
