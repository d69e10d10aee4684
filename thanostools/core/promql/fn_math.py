"""Instant-vector math, date and scalar functions."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from thanostools.core.promql.handlers import handler
from thanostools.core.promql.parser.ast import Call, VectorSelector
from thanostools.core.promql.value import Scalar, Value, Vector
from thanostools.core.promql.vecops import unwrap_parens

if TYPE_CHECKING:
    from thanostools.core.promql.evaluator import Evaluator

Ufunc = Callable[[np.ndarray], np.ndarray]


def _sgn(x: np.ndarray) -> np.ndarray:
    return np.where(x < 0, -1.0, np.where(x > 0, 1.0, x))


_SIMPLE: dict[str, Ufunc] = {
    "abs": np.abs, "ceil": np.ceil, "floor": np.floor, "exp": np.exp, "sqrt": np.sqrt, "ln": np.log,
    "log2": np.log2, "log10": np.log10, "sin": np.sin, "cos": np.cos, "tan": np.tan, "asin": np.arcsin,
    "acos": np.arccos, "atan": np.arctan, "sinh": np.sinh, "cosh": np.cosh, "tanh": np.tanh,
    "asinh": np.arcsinh, "acosh": np.arccosh, "atanh": np.arctanh,
    "deg": lambda x: x * 180 / np.pi, "rad": lambda x: x * np.pi / 180, "sgn": _sgn,
}


def _derived(vec: Vector, values: np.ndarray, present: np.ndarray | None = None) -> Vector:
    """Same series with new values; the metric name goes (delayed)."""
    return Vector(vec.labels, values, vec.present if present is None else present, np.ones(len(vec), np.bool_))


@handler(*_SIMPLE)
def _simple(ev: Evaluator, node: Call, ts: np.ndarray) -> Value:
    vec = ev.eval_vector(node.args[0], ts)
    with np.errstate(all="ignore"):
        return _derived(vec, _SIMPLE[node.func.name](vec.values))


@handler("round")
def _round(ev: Evaluator, node: Call, ts: np.ndarray) -> Value:
    vec = ev.eval_vector(node.args[0], ts)
    to_nearest = ev.eval_scalar(node.args[1], ts) if len(node.args) > 1 else np.ones(ts.shape[0])
    with np.errstate(all="ignore"):
        inverse = (1.0 / to_nearest)[None, :]
        return _derived(vec, np.floor(vec.values * inverse + 0.5) / inverse)


@handler("clamp", "clamp_min", "clamp_max")
def _clamp(ev: Evaluator, node: Call, ts: np.ndarray) -> Value:
    vec = ev.eval_vector(node.args[0], ts)
    steps = ts.shape[0]
    name = node.func.name
    lo = np.full(steps, -np.inf)
    hi = np.full(steps, np.inf)
    if name == "clamp":
        lo, hi = ev.eval_scalar(node.args[1], ts), ev.eval_scalar(node.args[2], ts)
    elif name == "clamp_min":
        lo = ev.eval_scalar(node.args[1], ts)
    else:
        hi = ev.eval_scalar(node.args[1], ts)
    values = np.maximum(lo[None, :], np.minimum(hi[None, :], vec.values))
    return _derived(vec, values, vec.present & ~(hi < lo)[None, :])


@handler("timestamp", histograms=True)
def _timestamp(ev: Evaluator, node: Call, ts: np.ndarray) -> Value:
    arg = unwrap_parens(node.args[0])
    if isinstance(arg, VectorSelector):
        vec = ev.select_vector(arg, ts, with_ts=True)
        assert vec.sample_ts is not None
        return _derived(vec, vec.sample_ts / 1000.0)
    vec = ev.eval_vector(arg, ts)
    return _derived(vec, np.broadcast_to(ts / 1000.0, vec.values.shape).copy())


def _date_parts(secs: np.ndarray, part: str) -> np.ndarray:
    finite = np.isfinite(secs)
    s = np.where(finite, secs, 0).astype(np.int64)
    dt = s.astype("datetime64[s]")
    days = s // 86400
    if part == "year":
        out = dt.astype("datetime64[Y]").astype(np.int64) + 1970
    elif part == "month":
        out = dt.astype("datetime64[M]").astype(np.int64) % 12 + 1
    elif part == "day_of_month":
        out = (dt.astype("datetime64[D]") - dt.astype("datetime64[M]")).astype(np.int64) + 1
    elif part == "day_of_year":
        out = (dt.astype("datetime64[D]") - dt.astype("datetime64[Y]")).astype(np.int64) + 1
    elif part == "day_of_week":
        out = (days + 4) % 7
    elif part == "hour":
        out = (s // 3600) % 24
    elif part == "minute":
        out = (s // 60) % 60
    else:
        month = dt.astype("datetime64[M]")
        out = ((month + 1).astype("datetime64[D]") - month.astype("datetime64[D]")).astype(np.int64)
    return np.where(finite, out.astype(np.float64), np.nan)


@handler("day_of_month", "day_of_week", "day_of_year", "days_in_month", "hour", "minute", "month", "year")
def _date(ev: Evaluator, node: Call, ts: np.ndarray) -> Value:
    if not node.args:
        secs = np.trunc(ts / 1000.0)[None, :]
        return Vector([()], _date_parts(secs, node.func.name), np.ones((1, ts.shape[0]), np.bool_),
                      np.zeros(1, np.bool_))
    vec = ev.eval_vector(node.args[0], ts)
    return _derived(vec, _date_parts(vec.values, node.func.name))


@handler("vector")
def _vector(ev: Evaluator, node: Call, ts: np.ndarray) -> Value:
    s = ev.eval_scalar(node.args[0], ts)
    return Vector([()], s[None, :].copy(), np.ones((1, ts.shape[0]), np.bool_), np.zeros(1, np.bool_))


@handler("scalar")
def _scalar(ev: Evaluator, node: Call, ts: np.ndarray) -> Value:
    vec = ev.eval_vector(node.args[0], ts)
    if not len(vec):
        return Scalar(np.full(ts.shape[0], np.nan))
    count = vec.present.sum(axis=0)
    single = np.where(vec.present, vec.values, 0.0).sum(axis=0)
    return Scalar(np.where(count == 1, single, np.nan))


@handler("time")
def _time(ev: Evaluator, node: Call, ts: np.ndarray) -> Value:
    return Scalar(ts / 1000.0)


@handler("pi")
def _pi(ev: Evaluator, node: Call, ts: np.ndarray) -> Value:
    return Scalar(np.full(ts.shape[0], np.pi))


@handler("start", "end", "step", "range")
def _query_times(ev: Evaluator, node: Call, ts: np.ndarray) -> Value:
    value = {"start": ev.start, "end": ev.end, "step": ev.step, "range": ev.end - ev.start}[node.func.name]
    return Scalar(np.full(ts.shape[0], value / 1000.0))


@handler("min_of", "max_of")
def _min_max_of(ev: Evaluator, node: Call, ts: np.ndarray) -> Value:
    a = ev.eval_scalar(node.args[0], ts)
    b = ev.eval_scalar(node.args[1], ts)
    return Scalar(np.minimum(a, b) if node.func.name == "min_of" else np.maximum(a, b))
