"""Helpers shared by the operator modules: merging series that share a label set, AST unwrapping."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from thanostools.core.errors import EvalError
from thanostools.core.labels import NAME_LABELS, Labels
from thanostools.core.promql.parser.ast import Expr, ParenExpr
from thanostools.core.promql.value import Vector

DUPLICATE_LABELSET = "vector cannot contain metrics with the same labelset"


def unwrap_parens(node: Expr) -> Expr:
    while isinstance(node, ParenExpr):
        node = node.expr
    return node


def without_name(labels: Labels) -> Labels:
    """The labels without the metric name (and the ``__type__``/``__unit__`` labels that go with it)."""
    return tuple(p for p in labels if p[0] not in NAME_LABELS)


def merge_duplicates(v: Vector, check: Callable[[], None] | None = None) -> Vector:
    """Merge rows with equal label sets; an overlap at any step is Prometheus' duplicate error.

    ``check`` is called every few thousand rows (the evaluator's deadline check).
    """
    if len(set(v.labels)) == len(v.labels):
        return v
    first: dict[Labels, int] = {}
    groups: list[list[int]] = []
    for i, lbls in enumerate(v.labels):
        g = first.get(lbls)
        if g is None:
            first[lbls] = len(groups)
            groups.append([i])
        else:
            groups[g].append(i)
        if check is not None and i % 4096 == 4095:
            check()
    if len(groups) == len(v.labels):
        return v
    values = v.values.copy()
    present = v.present.copy()
    hist = None if v.hist is None else v.hist.copy()
    for rows in groups:
        if len(rows) == 1:
            continue
        if int(np.max(v.present[rows].sum(axis=0))) > 1:
            raise EvalError(DUPLICATE_LABELSET)
        head = rows[0]
        for r in rows[1:]:
            values[head] = np.where(v.present[r], v.values[r], values[head])
            if hist is not None:
                hist[head] = np.where(v.present[r], hist[r], hist[head])
            present[head] |= v.present[r]
    idx = np.asarray([rows[0] for rows in groups], np.int64)
    return Vector([v.labels[i] for i in idx], values[idx], present[idx], v.drop_name[idx],
                  hist=None if hist is None else hist[idx])


def present_histograms(hist: np.ndarray | None, present: np.ndarray) -> np.ndarray | None:
    """The histogram cells that are still samples after a filter (None where ``present`` is False), or None when
    no histogram is left."""
    if hist is None:
        return None
    out = hist.copy()
    out[~present] = None
    return out if out.astype(np.bool_).any() else None
