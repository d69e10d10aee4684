"""``thanos-tools promql …``: format and parse expressions, run promqltest scripts."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from typing import Any

import click

from thanostools.cli.options import enable_feature_option
from thanostools.cli.output import emit
from thanostools.core.errors import ThanosToolsError
from thanostools.core.promql.features import Features

# Fields of syntax-tree nodes that only serve equality or type checking.
_INTERNAL_FIELDS = frozenset({"key", "matcher_key", "parsed_matching", "value_type"})


class TestsFailed(ThanosToolsError):
    """A promqltest script had failing evaluations (the details are already printed)."""


@click.group()
def promql() -> None:
    """PromQL tools: format and parse expressions, run promqltest scripts."""


@promql.command("format")
@click.argument("expr")
@click.option("--one-line", is_flag=True, help="Print the canonical one-line form instead of the pretty one.")
def format_cmd(expr: str, one_line: bool) -> None:
    """Pretty-print EXPR (like `promtool promql format`)."""
    from thanostools.core.promql.parser.parse import parse_expr
    from thanostools.core.promql.parser.printer import format_expr, pretty

    node = parse_expr(expr)
    emit((format_expr(node) if one_line else pretty(node)) + "\n")


def _json_float(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return value


def ast_to_json(node: Any) -> Any:
    """A syntax tree as plain JSON data: every node has ``type`` and its fields, ``pos``/``end`` offsets."""
    from thanostools.core.matchers import Matcher
    from thanostools.core.promql.parser.ast import Expr, type_of
    from thanostools.core.promql.parser.functions import Function

    if isinstance(node, Matcher):
        return {"type": node.type.value, "name": node.name, "value": node.value}
    if isinstance(node, Function):
        return node.name
    if isinstance(node, enum.Enum):
        return node.value
    if isinstance(node, float):
        return _json_float(node)
    if isinstance(node, tuple | list):
        return [ast_to_json(x) for x in node]
    if not dataclasses.is_dataclass(node) or isinstance(node, type):
        return node
    out: dict[str, Any] = {"type": type(node).__name__}
    if isinstance(node, Expr):
        out.update(valueType=type_of(node).value, pos=node.pos, end=node.end)
    for f in dataclasses.fields(node):
        if f.name not in _INTERNAL_FIELDS and f.name not in out:
            out[f.name] = ast_to_json(getattr(node, f.name))
    return out


def _tree(node: Any, depth: int = 0) -> list[str]:
    from thanostools.core.promql.parser.ast import children, type_of
    from thanostools.core.promql.parser.printer import format_expr

    text = format_expr(node)
    if len(text) > 60:
        text = text[:57] + "..."
    lines = [f"{'  ' * depth}{type(node).__name__} [{node.pos}:{node.end}] {type_of(node).value}: {text}"]
    for child in children(node):
        lines += _tree(child, depth + 1)
    return lines


@promql.command("parse")
@click.argument("expr")
@click.option("-o", "--output", type=click.Choice(["json", "tree"]), default="json", show_default=True,
              help="json: the whole syntax tree; tree: one line per node.")
def parse_cmd(expr: str, output: str) -> None:
    """Parse EXPR and print its syntax tree (node types, fields, character positions)."""
    from thanostools.core.promql.parser.parse import parse_expr

    node = parse_expr(expr)
    if output == "json":
        emit(json.dumps(ast_to_json(node), indent=2) + "\n")
    else:
        emit("\n".join(_tree(node)) + "\n")


@promql.command("test")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@enable_feature_option
def test_cmd(files: tuple[str, ...], features: Features) -> None:
    """Run promqltest scripts (the language of Prometheus's promql/promqltest); exit 1 when any eval fails."""
    from thanostools.core.promql.engine import QueryOptions
    from thanostools.core.promql.testrunner import run_files

    summary = run_files(list(files), QueryOptions(features=features.promql))
    for path, report in zip(files, summary.reports, strict=True):
        for failure in report.failures:
            where = f"{path}:{failure.line}" if failure.line else path
            head = f"{where}: {failure.expr}" if failure.expr else where
            emit(f"FAIL {head}\n{_indent(failure.message)}\n\n")
    emit(summary.line + "\n")
    if summary.failed:
        raise TestsFailed(f"{summary.failed} promqltest evaluation(s) failed")


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())
