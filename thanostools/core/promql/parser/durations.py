"""Duration expressions (Prometheus 3.x, on by default since 3.14): ``x[5m + 1m]``, ``x offset (1h * 2)``,
``rate(x[step() * 4])``, ``x[1h:max(step(), 1m)]``.

An expression is computed in seconds as a float and becomes milliseconds as Prometheus does (truncated);
ranges and subquery steps must come out greater than 0, offsets may be negative, and a result that is NaN or
does not fit a 64-bit nanosecond count is an error. Expressions without ``step()``/``range()`` are computed
by the parser; the others stay in the tree until the engine knows the query's step and range.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

from thanostools.core.goformat import format_g
from thanostools.core.promql.parser.ast import (
    AggregateExpr,
    BinaryExpr,
    Call,
    DurationExpr,
    Expr,
    MatrixSelector,
    ParenExpr,
    SubqueryExpr,
    UnaryExpr,
    VectorSelector,
    children,
)

_MAX_SECONDS = float(1 << 63) / 1e9

_BINARY: dict[str, Callable[[float, float], float]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "^": lambda a, b: _pow(a, b),
    "min": min,
    "max": max,
}


def _pow(a: float, b: float) -> float:
    try:
        return math.pow(a, b)
    except OverflowError:
        return math.inf
    except ValueError:
        return math.nan


def seconds(e: DurationExpr, step_ms: int = 0, range_ms: int = 0) -> float:
    """The expression's value in seconds (``step()``/``range()`` are the query's, in seconds)."""
    if e.op in ("lit", "dur"):
        return e.value
    if e.op == "step":
        return step_ms / 1000
    if e.op == "range":
        return range_ms / 1000
    values = [seconds(a, step_ms, range_ms) for a in e.args]
    if e.op == "neg":
        return -values[0]
    a, b = values
    if e.op == "/":
        if b == 0:
            raise ValueError("division by zero")
        return a / b
    if e.op == "%":
        if b == 0:
            raise ValueError("modulo by zero")
        return math.fmod(a, b)
    return _BINARY[e.op](a, b)


def to_ms(value: float, *, allow_negative: bool) -> int:
    """Seconds as the milliseconds a range, step (``allow_negative`` False) or offset gets."""
    if math.isnan(value) or not -_MAX_SECONDS <= value <= _MAX_SECONDS:
        raise ValueError("duration is out of range")
    if value <= 0 and not allow_negative:
        raise ValueError("duration must be greater than 0")
    return int(value * 1000)


def reads_query(e: DurationExpr) -> bool:
    """Whether the value depends on the query (``step()`` or ``range()``)."""
    return e.op in ("step", "range") or any(reads_query(a) for a in e.args)


def format_duration_expr(e: DurationExpr, top: bool = True) -> str:
    if e.op in ("lit", "dur"):
        return e.text or format_g(e.value)
    if e.op in ("step", "range"):
        return f"{e.op}()"
    if e.op in ("min", "max"):
        return f"{e.op}({format_duration_expr(e.args[0])}, {format_duration_expr(e.args[1])})"
    if e.op == "neg":
        return "-" + format_duration_expr(e.args[0], False)
    text = f"{format_duration_expr(e.args[0], False)} {e.op} {format_duration_expr(e.args[1], False)}"
    return text if top else f"({text})"


def _own_durations(node: Expr) -> tuple[DurationExpr | None, ...]:
    if isinstance(node, VectorSelector):
        return (node.offset_expr,)
    if isinstance(node, MatrixSelector):
        return (node.range_expr,)
    if isinstance(node, SubqueryExpr):
        return node.range_expr, node.step_expr, node.offset_expr
    return ()


def needs_resolving(node: Expr) -> bool:
    """Whether some duration in the tree waits for the query's step or range (an explicit stack: chains of
    ``a + b + …`` are deep)."""
    stack = [node]
    while stack:
        n = stack.pop()
        if any(e is not None for e in _own_durations(n)):
            return True
        stack.extend(children(n))
    return False


def resolve(node: Expr, step_ms: int, range_ms: int) -> Expr:
    """The tree with every query-dependent duration computed for this query (raises ValueError)."""
    def ms(e: DurationExpr | None, current: int, allow_negative: bool) -> int:
        return current if e is None else to_ms(seconds(e, step_ms, range_ms), allow_negative=allow_negative)

    def go(n: Expr) -> Expr:
        if isinstance(n, VectorSelector):
            return dataclasses.replace(n, offset=ms(n.offset_expr, n.offset, True), offset_expr=None)
        if isinstance(n, MatrixSelector):
            vs = go(n.vector_selector)
            assert isinstance(vs, VectorSelector)
            return dataclasses.replace(n, vector_selector=vs, range=ms(n.range_expr, n.range, False), range_expr=None)
        if isinstance(n, SubqueryExpr):
            return dataclasses.replace(n, expr=go(n.expr), range=ms(n.range_expr, n.range, False),
                                       step=ms(n.step_expr, n.step, False), offset=ms(n.offset_expr, n.offset, True),
                                       range_expr=None, step_expr=None, offset_expr=None)
        if isinstance(n, ParenExpr | UnaryExpr):
            return dataclasses.replace(n, expr=go(n.expr))
        if isinstance(n, BinaryExpr):
            spine = [n]  # left-deep chains iteratively, as the evaluator walks them
            while isinstance(spine[-1].lhs, BinaryExpr):
                spine.append(spine[-1].lhs)
            acc = go(spine[-1].lhs)
            for b in reversed(spine):
                acc = dataclasses.replace(b, lhs=acc, rhs=go(b.rhs))
            return acc
        if isinstance(n, AggregateExpr):
            return dataclasses.replace(n, expr=go(n.expr), param=None if n.param is None else go(n.param))
        if isinstance(n, Call):
            return dataclasses.replace(n, args=tuple(go(a) for a in n.args))
        return n

    return go(node) if needs_resolving(node) else node
