"""The Explain tree: every sub-expression of a query, each evaluated on its own (like the Prometheus UI's
tree view) with its series count and label cardinalities."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from thanostools.core.promql.engine import QueryResult
from thanostools.core.promql.parser.ast import (
    AggregateExpr,
    BinaryExpr,
    Call,
    Expr,
    MatrixSelector,
    NumberLiteral,
    ParenExpr,
    StringLiteral,
    SubqueryExpr,
    UnaryExpr,
    VectorSelector,
    children,
)
from thanostools.core.promql.parser.printer import format_expr
from thanostools.core.render.apijson import format_scalar_value

TOP_LABELS = 5


@dataclass
class ExplainNode:
    expr: Expr
    text: str
    what: str
    children: list[ExplainNode] = field(default_factory=list)

    @property
    def needs_eval(self) -> bool:
        return not isinstance(self.expr, NumberLiteral | StringLiteral)


def describe(expr: Expr) -> str:
    """What kind of node this is, in a few words."""
    if isinstance(expr, VectorSelector):
        return "selector"
    if isinstance(expr, MatrixSelector):
        return "range selector"
    if isinstance(expr, SubqueryExpr):
        return "subquery"
    if isinstance(expr, AggregateExpr):
        grouping = f" {'without' if expr.without else 'by'} ({', '.join(expr.grouping)})" if expr.grouping else ""
        return f"aggregation {expr.op}{grouping}"
    if isinstance(expr, Call):
        return f"function {expr.func.name}"
    if isinstance(expr, BinaryExpr):
        return f"binary {expr.op}"
    if isinstance(expr, UnaryExpr):
        return f"unary {expr.op}"
    if isinstance(expr, ParenExpr):
        return "parentheses"
    if isinstance(expr, NumberLiteral):
        return "number"
    return "string"


def build_tree(expr: Expr) -> ExplainNode:
    root = ExplainNode(expr, format_expr(expr), describe(expr))
    stack = [root]
    while stack:
        node = stack.pop()
        node.children = [ExplainNode(c, format_expr(c), describe(c)) for c in children(node.expr)]
        stack.extend(node.children)
    return root


def flatten(root: ExplainNode) -> list[ExplainNode]:
    out, stack = [], [root]
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(reversed(node.children))
    return out


def label_cardinalities(result: QueryResult) -> list[tuple[str, int]]:
    """Distinct values per label name over the result's series, most first."""
    values: dict[str, set[str]] = {}
    for s in result.series:
        for name, value in s.labels:
            values.setdefault(name, set()).add(value)
    counts = Counter({name: len(v) for name, v in values.items()})
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def summarize(result: QueryResult) -> str:
    if result.result_type == "scalar" and result.scalar is not None:
        return f"scalar {format_scalar_value(result.scalar[1])}"
    if result.result_type == "string" and result.string is not None:
        return f"string {result.string[1]!r}"
    n = len(result.series)
    text = f"{n} series" if n != 1 else "1 series"
    cards = label_cardinalities(result)
    if cards:
        shown = ", ".join(f"{name}: {count}" for name, count in cards[:TOP_LABELS])
        more = f", +{len(cards) - TOP_LABELS} more" if len(cards) > TOP_LABELS else ""
        text += f" · {shown}{more}"
    return text
