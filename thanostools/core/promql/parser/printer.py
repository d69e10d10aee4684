"""Render syntax trees as Prometheus does: ``String()`` (one line) and ``Pretty()`` (promtool
``promql format``)."""

from __future__ import annotations

import math
import re
from decimal import Decimal

from thanostools.core.goformat import go_quote
from thanostools.core.matchers import Matcher
from thanostools.core.promql.parser.ast import (
    AggregateExpr,
    BinaryExpr,
    Call,
    Cardinality,
    DurationExpr,
    Expr,
    MatrixSelector,
    NumberLiteral,
    ParenExpr,
    StartOrEnd,
    StringLiteral,
    SubqueryExpr,
    UnaryExpr,
    VectorMatching,
    VectorSelector,
)
from thanostools.core.promql.parser.durations import format_duration_expr
from thanostools.core.timeutil import format_duration

__all__ = ["format_expr", "format_float", "format_matcher", "pretty"]

_LEGACY_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def format_expr(expr: Expr) -> str:
    """Canonical one-line form (Prometheus ``Expr.String()``)."""
    # Wrapper chains (parentheses, unary operators, subqueries) are unwound without recursion.
    wrappers: list[ParenExpr | UnaryExpr | SubqueryExpr] = []
    while isinstance(expr, ParenExpr | UnaryExpr | SubqueryExpr):
        wrappers.append(expr)
        expr = expr.expr
    text = _format_core(expr)
    for wrapper in reversed(wrappers):
        if isinstance(wrapper, ParenExpr):
            text = f"({text})"
        elif isinstance(wrapper, UnaryExpr):
            text = wrapper.op + text
        else:
            text += _subquery_suffix(wrapper)
    return text


def _format_core(expr: Expr) -> str:
    if isinstance(expr, VectorSelector):
        return _vector_selector(expr)
    if isinstance(expr, BinaryExpr):
        spine = expr.left_spine()
        parts = [format_expr(spine[-1].lhs)]
        for node in reversed(spine):
            parts += (_operator(node), format_expr(node.rhs))
        return " ".join(parts)
    if isinstance(expr, NumberLiteral):
        return _number(expr)
    if isinstance(expr, Call):
        return f"{expr.func.name}({', '.join(format_expr(a) for a in expr.args)})"
    if isinstance(expr, AggregateExpr):
        return _aggregate(expr)
    if isinstance(expr, MatrixSelector):
        return _matrix(expr)
    assert isinstance(expr, StringLiteral)
    return go_quote(expr.value)


def format_float(value: float) -> str:
    """Go ``strconv.FormatFloat(v, 'f', -1, 64)``: shortest round-trip digits, never an exponent."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = format(Decimal(repr(value)).normalize(), "f")
    return "-0" if text == "0" and math.copysign(1.0, value) < 0 else text


def format_matcher(m: Matcher) -> str:
    """Prometheus ``Matcher.String()``: the name is quoted unless it is a legacy label name."""
    name = m.name if _LEGACY_LABEL.fullmatch(m.name) else go_quote(m.name)
    return f"{name}{m.type.value}{go_quote(m.value)}"


def _labels(names: tuple[str, ...]) -> str:
    return ", ".join(n if _LEGACY_LABEL.fullmatch(n) else go_quote(n) for n in names)


def _offset(ms: int, expr: DurationExpr | None = None) -> str:
    if expr is not None:
        text = format_duration_expr(expr)
        return f" offset {text}" if expr.op in ("step", "range", "min", "max") else f" offset ({text})"
    if ms > 0:
        return " offset " + format_duration(ms)
    if ms < 0:
        return " offset -" + format_duration(-ms)
    return ""


def _at(timestamp: int | None, start_or_end: StartOrEnd | None) -> str:
    if timestamp is not None:
        return f" @ {timestamp / 1000.0:.3f}"
    if start_or_end is not None:
        return f" @ {start_or_end.value}()"
    return ""


def _number(node: NumberLiteral) -> str:
    if not node.is_duration:
        return format_float(node.value)
    sign = "-" if node.value < 0 else ""
    return sign + format_duration(_go_duration_ms(abs(node.value)))


def _go_duration_ms(seconds: float) -> int:
    """``time.Duration(seconds * 1e9)`` then whole milliseconds, truncating like Go."""
    if math.isnan(seconds) or seconds * 1e9 >= 2.0**63:
        return 0
    return int(seconds * 1e9) // 1_000_000


def _selector_core(node: VectorSelector) -> str:
    parts = sorted(
        format_matcher(m) for m in node.matchers
        if not (m.name == "__name__" and m.type.value == "=" and m.value == node.name and m.value != "")
    )
    return node.name + ("{" + ",".join(parts) + "}" if parts else "")


def _vector_selector(node: VectorSelector) -> str:
    return (_selector_core(node) + _at(node.timestamp, node.start_or_end) + _offset(node.offset, node.offset_expr)
            + _extended(node))


def _extended(node: VectorSelector) -> str:
    return f" {node.extended}" if node.extended else ""


def _duration(ms: int, expr: DurationExpr | None) -> str:
    return format_duration(ms) if expr is None else format_duration_expr(expr)


def _matrix(node: MatrixSelector) -> str:
    vs = node.vector_selector
    return (f"{_selector_core(vs)}[{_duration(node.range, node.range_expr)}]"
            + _at(vs.timestamp, vs.start_or_end) + _offset(vs.offset, vs.offset_expr) + _extended(vs))


def _subquery_suffix(node: SubqueryExpr) -> str:
    step = _duration(node.step, node.step_expr) if node.step or node.step_expr else ""
    return (f"[{_duration(node.range, node.range_expr)}:{step}]"
            + _at(node.timestamp, node.start_or_end) + _offset(node.offset, node.offset_expr))


def _matching(vm: VectorMatching | None) -> str:
    if vm is None:
        return ""
    grouped = vm.card in (Cardinality.MANY_TO_ONE, Cardinality.ONE_TO_MANY)
    out = ""
    if vm.matching_labels or vm.on or grouped:
        out = f" {'on' if vm.on else 'ignoring'} ({_labels(vm.matching_labels)})"
    if grouped:
        side = "left" if vm.card is Cardinality.MANY_TO_ONE else "right"
        out += f" group_{side} ({_labels(vm.include)})"
    return out + _fills(vm)


def _fills(vm: VectorMatching) -> str:
    if vm.fill_lhs is not None and vm.fill_rhs is not None and _same_fill(vm.fill_lhs, vm.fill_rhs):
        return f" fill ({format_float(vm.fill_lhs)})"
    out = "" if vm.fill_lhs is None else f" fill_left ({format_float(vm.fill_lhs)})"
    return out + ("" if vm.fill_rhs is None else f" fill_right ({format_float(vm.fill_rhs)})")


def _same_fill(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _operator(node: BinaryExpr) -> str:
    return node.op + (" bool" if node.return_bool else "") + _matching(node.matching)


def _aggregate_head(node: AggregateExpr) -> str:
    if node.without:
        return f"{node.op} without ({_labels(node.grouping)}) "
    if node.grouping:
        return f"{node.op} by ({_labels(node.grouping)}) "
    return node.op


def _aggregate(node: AggregateExpr) -> str:
    param = format_expr(node.param) + ", " if node.param is not None else ""
    return f"{_aggregate_head(node)}({param}{format_expr(node.expr)})"


# ---------------------------------------------------------------------------------------------
# Pretty printing.


def pretty(expr: Expr, indent: str = "  ", max_width: int = 100) -> str:
    """Multi-line form, like ``promtool promql format``: a node is split over several lines
    only when its one-line form is longer than ``max_width`` bytes."""
    return _Pretty(indent, max_width).render(expr, 0)


class _Pretty:
    def __init__(self, indent: str, max_width: int) -> None:
        self.unit = indent
        self.max_width = max_width

    def fits(self, expr: Expr) -> tuple[str, bool]:
        flat = format_expr(expr)
        return flat, len(flat.encode()) <= self.max_width

    def binary(self, expr: BinaryExpr, level: int) -> str:
        """A split binary expression: its left operand one level deeper, the operator, the right operand.

        A chain of left operands is walked without recursion, and the one-line widths of its links
        are added up once, so `a + b + ...` costs the size of its output (which, as in Prometheus,
        indents every link one level deeper than the next).
        """
        spine = expr.left_spine()
        widths = [len(format_expr(spine[-1].lhs).encode())]
        for node in reversed(spine):
            widths.append(widths[-1] + len(f" {_operator(node)} ".encode()) + len(format_expr(node.rhs).encode()))
        widths.reverse()  # widths[k]: the one-line width of spine[k]
        tails: list[str] = []
        for k, node in enumerate(spine):
            if k and widths[k] <= self.max_width:
                head = self.unit * (level + k) + format_expr(node)
                break
            pad = self.unit * (level + k)
            tails.append("\n" + pad + _operator(node) + "\n" + self.render(node.rhs, level + k + 1))
        else:
            head = self.render(spine[-1].lhs, level + len(spine))
        return head + "".join(reversed(tails))

    def render(self, expr: Expr, level: int) -> str:
        pad = self.unit * level
        if isinstance(expr, UnaryExpr):
            return pad + expr.op + self.render(expr.expr, level).strip()
        flat, fits = self.fits(expr)
        if isinstance(expr, SubqueryExpr):
            return flat if fits else self.render(expr.expr, level) + _subquery_suffix(expr)
        if fits or not isinstance(expr, AggregateExpr | BinaryExpr | Call | ParenExpr):
            return pad + flat
        if isinstance(expr, BinaryExpr):
            return self.binary(expr, level)
        if isinstance(expr, AggregateExpr):
            body = "" if expr.param is None else self.render(expr.param, level + 1) + ",\n"
            body += self.render(expr.expr, level + 1)
            return f"{pad}{_aggregate_head(expr)}(\n{body}\n{pad})"
        if isinstance(expr, Call):
            args = ",\n".join(self.render(a, level + 1) for a in expr.args)
            return f"{pad}{expr.func.name}(\n{args}\n{pad})"
        return f"{pad}(\n{self.render(expr.expr, level + 1)}\n{pad})"
