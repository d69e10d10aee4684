"""The ``anchored`` and ``smoothed`` selector modifiers (``--enable-feature=promql-extended-range-selectors``).

``rate``, ``increase``, ``delta``, ``changes`` and ``resets`` accept an anchored range (the value at the
window start is the last sample before it, within the lookback delta; no extrapolation); ``rate``,
``increase`` and ``delta`` a smoothed one (values at both window edges interpolated between the samples
around them). An instant selector with ``smoothed`` interpolates at the evaluation time.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from thanostools.core.errors import EvalError
from thanostools.core.kernels import extended as kern
from thanostools.core.promql.parser.ast import SMOOTHED, Call, Expr, MatrixSelector, VectorSelector
from thanostools.core.promql.value import RangeVector, Vector
from thanostools.core.promql.vecops import unwrap_parens

if TYPE_CHECKING:
    from thanostools.core.promql.evaluator import Evaluator

_FUNCS = {"rate": kern.RATE, "increase": kern.INCREASE, "delta": kern.DELTA, "changes": kern.CHANGES,
          "resets": kern.RESETS}
_ALLOWED = {"anchored": ("changes", "delta", "increase", "rate", "resets"), SMOOTHED: ("delta", "increase", "rate")}


def extended_selector(node: Expr) -> VectorSelector | None:
    """The selector of ``node`` (a range or instant selector, maybe in parentheses) if it has either modifier."""
    inner = unwrap_parens(node)
    vs = inner.vector_selector if isinstance(inner, MatrixSelector) else inner
    return vs if isinstance(vs, VectorSelector) and vs.extended else None


def eval_extended_call(ev: Evaluator, node: Call, ts: np.ndarray) -> Vector:
    name = node.func.name
    ms = unwrap_parens(node.args[0])
    assert isinstance(ms, MatrixSelector)
    modifier = ms.vector_selector.extended
    if name not in _ALLOWED[modifier]:
        raise EvalError(f"{modifier} modifier can only be used with: {', '.join(_ALLOWED[modifier])} "
                        f"- not with {name}")
    lookback = ev.lookback_ms
    rv = _widened_range(ev, ms, ts, lookback)
    steps = int(ts.shape[0])
    out = np.zeros((len(rv), steps))
    outp = np.zeros((len(rv), steps), np.bool_)
    if len(rv):
        ref = rv.ref - lookback if modifier == SMOOTHED else rv.ref
        kern.extended_windows(rv.t, rv.v, rv.offsets, ref.astype(np.int64), ms.range, lookback,
                              modifier == SMOOTHED, _FUNCS[name], out, outp)
    return Vector(rv.labels, out, outp, np.ones(len(rv), np.bool_)).nonempty()


def eval_extended_selector(ev: Evaluator, node: VectorSelector | MatrixSelector, ts: np.ndarray) -> Vector:
    if isinstance(node, MatrixSelector):
        raise EvalError(f"a range selector with the {node.vector_selector.extended} modifier is only supported "
                        f"as the argument of {', '.join(_ALLOWED['anchored'])} by this engine")
    if node.extended != SMOOTHED:
        return ev.select_vector(replace(node, extended=""), ts)  # anchored picks the sample as lookback does
    lookback = ev.lookback_ms
    steps = int(ts.shape[0])
    # The samples from a lookback delta before each step to a lookback delta after it.
    ms = MatrixSelector(replace(node, extended="", offset=node.offset - lookback), 2 * lookback, pos=node.pos)
    rv = ev.select_range(ms, ts)
    _refuse_histograms(rv, node.extended)
    out = np.zeros((len(rv), steps))
    outp = np.zeros((len(rv), steps), np.bool_)
    if len(rv):
        kern.smoothed_instant(rv.t, rv.v, rv.offsets, (rv.ref - lookback).astype(np.int64), lookback, out, outp)
    return Vector(rv.labels, out, outp, np.zeros(len(rv), np.bool_)).nonempty()




def _widened_range(ev: Evaluator, ms: MatrixSelector, ts: np.ndarray, lookback: int) -> RangeVector:
    """The samples of the selector's windows plus a lookback delta before them (and after them, for smoothed)."""
    vs = ms.vector_selector
    if vs.extended == SMOOTHED:
        wide = MatrixSelector(replace(vs, extended="", offset=vs.offset - lookback), ms.range + 2 * lookback,
                              pos=ms.pos)
    else:
        wide = MatrixSelector(replace(vs, extended=""), ms.range + lookback, pos=ms.pos)
    rv = ev.select_range(wide, ts)
    _refuse_histograms(rv, vs.extended)
    return rv


def _refuse_histograms(rv: RangeVector, modifier: str) -> None:
    if rv.h is not None and rv.h.astype(np.bool_).any():
        raise EvalError(f"{modifier} modifier is not supported with histograms")
