"""``/api/v1/parse_query``: the JSON syntax tree the Prometheus 3.x UI uses (``translate_ast.go``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from thanostools.core.matchers import MatchType
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
)
from thanostools.core.render.apijson import format_scalar_value

_MATCH_TYPES = {MatchType.EQ: "=", MatchType.NEQ: "!=", MatchType.RE: "=~", MatchType.NRE: "!~"}


def _matchers(node: VectorSelector) -> list[dict[str, str]]:
    return [{"name": m.name, "type": _MATCH_TYPES[m.type], "value": m.value} for m in node.matchers]


def _at(timestamp: int | None, start_or_end: Any) -> dict[str, Any]:
    return {"timestamp": timestamp, "startOrEnd": start_or_end.value if start_or_end is not None else None}


def _selector(node: VectorSelector) -> dict[str, Any]:
    return {"name": node.name, "offset": node.offset, "matchers": _matchers(node),
            **_at(node.timestamp, node.start_or_end)}


@dataclass(frozen=True)
class _Child:
    """A sub-expression, written in its place by the iterative writer (chains of 10,000 terms are that deep)."""

    expr: Expr | None


def _fields(node: Expr) -> dict[str, Any]:
    """One node's JSON object, its sub-expressions as ``_Child`` placeholders."""
    if isinstance(node, AggregateExpr):
        return {"type": "aggregation", "op": node.op, "expr": _Child(node.expr), "param": _Child(node.param),
                "grouping": list(node.grouping), "without": node.without}
    if isinstance(node, BinaryExpr):
        m = node.matching
        matching = None if m is None else {"card": m.card.value, "labels": list(m.matching_labels), "on": m.on,
                                           "include": list(m.include)}
        return {"type": "binaryExpr", "op": node.op, "lhs": _Child(node.lhs), "rhs": _Child(node.rhs),
                "matching": matching, "bool": node.return_bool}
    if isinstance(node, Call):
        f = node.func
        return {"type": "call", "func": {"name": f.name, "argTypes": [t.value for t in f.arg_types],
                                         "variadic": f.variadic, "returnType": f.return_type.value},
                "args": [_Child(a) for a in node.args]}
    if isinstance(node, MatrixSelector):
        return {"type": "matrixSelector", "range": node.range, **_selector(node.vector_selector)}
    if isinstance(node, SubqueryExpr):
        return {"type": "subquery", "expr": _Child(node.expr), "range": node.range, "offset": node.offset,
                "step": node.step, **_at(node.timestamp, node.start_or_end)}
    if isinstance(node, NumberLiteral):
        return {"type": "numberLiteral", "val": format_scalar_value(node.value)}
    if isinstance(node, ParenExpr):
        return {"type": "parenExpr", "expr": _Child(node.expr)}
    if isinstance(node, StringLiteral):
        return {"type": "stringLiteral", "val": node.value}
    if isinstance(node, UnaryExpr):
        return {"type": "unaryExpr", "op": node.op, "expr": _Child(node.expr)}
    return {"type": "vectorSelector", **_selector(node)}


def _plain(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _tokens(value: Any) -> list[Any]:
    """What stands for one value: text, or placeholders the writer expands in turn."""
    if isinstance(value, _Child):
        if value.expr is None:
            return ["null"]
        items = sorted(_fields(value.expr).items())
        out: list[Any] = ["{"]
        for i, (key, item) in enumerate(items):
            out.append(("," if i else "") + _plain(key) + ":")
            out.append(item if isinstance(item, (_Child, list)) else _plain(item))
        return [*out, "}"]
    if isinstance(value, list) and any(isinstance(v, _Child) for v in value):
        out = ["["]
        for i, item in enumerate(value):
            out += [","] if i else []
            out.append(item)
        return [*out, "]"]
    return [_plain(value)]


def ast_json(expr: Expr) -> str:
    """Keys sorted (Go marshals maps that way), ``<>&`` escaped as Go does; written with an explicit stack, so
    the depth of the tree is not bounded by Python's recursion limit (Go's encoder has none either)."""
    parts: list[str] = []
    stack: list[Any] = [_Child(expr)]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            parts.append(item)
        else:
            stack.extend(reversed(_tokens(item)))
    text = "".join(parts)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
