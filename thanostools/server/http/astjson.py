"""``/api/v1/parse_query``: the JSON syntax tree the Prometheus 3.x UI uses (``translate_ast.go``)."""

from __future__ import annotations

import json
from typing import Any

from thanostools.core.matchers import MatchType
from thanostools.core.promql.apijson import format_scalar_value
from thanostools.core.promql.ast import (
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
)

_MATCH_TYPES = {MatchType.EQ: "=", MatchType.NEQ: "!=", MatchType.RE: "=~", MatchType.NRE: "!~"}


def _matchers(node: VectorSelector) -> list[dict[str, str]]:
    return [{"name": m.name, "type": _MATCH_TYPES[m.type], "value": m.value} for m in node.matchers]


def _at(timestamp: int | None, start_or_end: Any) -> dict[str, Any]:
    return {"timestamp": timestamp, "startOrEnd": start_or_end.value if start_or_end is not None else None}


def _selector(node: VectorSelector) -> dict[str, Any]:
    return {"name": node.name, "offset": node.offset, "matchers": _matchers(node),
            **_at(node.timestamp, node.start_or_end)}


def translate(node: Expr | None) -> Any:
    if node is None:
        return None
    if isinstance(node, AggregateExpr):
        return {"type": "aggregation", "op": node.op, "expr": translate(node.expr), "param": translate(node.param),
                "grouping": list(node.grouping), "without": node.without}
    if isinstance(node, BinaryExpr):
        m = node.matching
        matching = None if m is None else {"card": m.card.value, "labels": list(m.matching_labels), "on": m.on,
                                           "include": list(m.include)}
        return {"type": "binaryExpr", "op": node.op, "lhs": translate(node.lhs), "rhs": translate(node.rhs),
                "matching": matching, "bool": node.return_bool}
    if isinstance(node, Call):
        f = node.func
        return {"type": "call", "func": {"name": f.name, "argTypes": [t.value for t in f.arg_types],
                                         "variadic": f.variadic, "returnType": f.return_type.value},
                "args": [translate(a) for a in node.args]}
    if isinstance(node, MatrixSelector):
        return {"type": "matrixSelector", "range": node.range, **_selector(node.vector_selector)}
    if isinstance(node, SubqueryExpr):
        return {"type": "subquery", "expr": translate(node.expr), "range": node.range, "offset": node.offset,
                "step": node.step, **_at(node.timestamp, node.start_or_end)}
    if isinstance(node, NumberLiteral):
        return {"type": "numberLiteral", "val": format_scalar_value(node.value)}
    if isinstance(node, ParenExpr):
        return {"type": "parenExpr", "expr": translate(node.expr)}
    if isinstance(node, StringLiteral):
        return {"type": "stringLiteral", "val": node.value}
    if isinstance(node, UnaryExpr):
        return {"type": "unaryExpr", "op": node.op, "expr": translate(node.expr)}
    return {"type": "vectorSelector", **_selector(node)}


def ast_json(expr: Expr) -> str:
    """Keys sorted (Go marshals maps that way), ``<>&`` escaped as Go does."""
    text = json.dumps(translate(expr), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
