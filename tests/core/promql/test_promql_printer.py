from __future__ import annotations

import math

import pytest

from thanostools.core.matchers import Matcher, MatchType
from thanostools.core.promql.parser.ast import (
    AggregateExpr,
    BinaryExpr,
    Call,
    Cardinality,
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
from thanostools.core.promql.parser.functions import FUNCTIONS
from thanostools.core.promql.parser.parse import parse_expr
from thanostools.core.promql.parser.printer import format_expr, format_float, format_matcher, pretty


def vs(name: str, *matchers: Matcher, **kw: object) -> VectorSelector:
    extra = (Matcher.eq("__name__", name),) if name else ()
    return VectorSelector(name, (*matchers, *extra), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1"),
        (0.1, "0.1"),
        (-2.5, "-2.5"),
        (100.0, "100"),
        (1e21, "1000000000000000000000"),
        (1.5e-7, "0.00000015"),
        (123456789.125, "123456789.125"),
        (2.0**53, "9007199254740992"),
        (0.0, "0"),
        (-0.0, "-0"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
        (math.nan, "NaN"),
        (5e-324, "0." + "0" * 323 + "5"),
    ],
)
def test_format_float(value: float, text: str) -> None:
    assert format_float(value) == text


@pytest.mark.parametrize(
    ("matcher", "text"),
    [
        (Matcher(MatchType.EQ, "job", "api"), 'job="api"'),
        (Matcher(MatchType.NEQ, "job", ""), 'job!=""'),
        (Matcher(MatchType.RE, "path", "/a/.*"), 'path=~"/a/.*"'),
        (Matcher(MatchType.NRE, "x", 'q"\\d'), 'x!~"q\\"\\\\d"'),
        (Matcher(MatchType.EQ, "service.name", "v"), '"service.name"="v"'),
        (Matcher(MatchType.EQ, "0abc", "v"), '"0abc"="v"'),
        (Matcher(MatchType.EQ, "a", "tab\tnewline\n"), 'a="tab\\tnewline\\n"'),
    ],
)
def test_format_matcher(matcher: Matcher, text: str) -> None:
    assert format_matcher(matcher) == text


def test_selector_sorts_matchers_and_hides_the_name_matcher() -> None:
    node = vs("foo", Matcher.eq("b", "2"), Matcher(MatchType.RE, "a", "1"))
    assert format_expr(node) == 'foo{a=~"1",b="2"}'
    assert format_expr(vs("", Matcher.eq("__name__", "foo"))) == '{__name__="foo"}'
    assert format_expr(vs("", Matcher.eq("__name__", ""), Matcher.eq("a", "b"))) == '{__name__="",a="b"}'
    assert format_expr(vs("foo", Matcher(MatchType.RE, "__name__", "foo"))) == 'foo{__name__=~"foo"}'


def test_selector_modifiers() -> None:
    assert format_expr(vs("x", offset=-90_000)) == "x offset -1m30s"
    assert format_expr(vs("x", timestamp=-1500, offset=1)) == "x @ -1.500 offset 1ms"
    assert format_expr(vs("x", start_or_end=StartOrEnd.END)) == "x @ end()"
    matrix = MatrixSelector(vs("x", timestamp=0, offset=3_600_000), 604_800_000)
    assert format_expr(matrix) == "x[1w] @ 0.000 offset 1h"


def test_subquery_suffix() -> None:
    inner = Call(FUNCTIONS["rate"], (MatrixSelector(vs("x"), 60_000),))
    assert format_expr(SubqueryExpr(inner, 3_600_000)) == "rate(x[1m])[1h:]"
    node = SubqueryExpr(inner, 86_400_000, 300_000, offset=-60_000, start_or_end=StartOrEnd.START)
    assert format_expr(node) == "rate(x[1m])[1d:5m] @ start() offset -1m"


def test_duration_literals_print_as_durations() -> None:
    assert format_expr(NumberLiteral(90.0, True)) == "1m30s"
    assert format_expr(NumberLiteral(-0.5, True)) == "-500ms"
    assert format_expr(NumberLiteral(0.0, True)) == "0s"
    assert format_expr(NumberLiteral(90.0)) == "90"


def test_binary_printing_uses_normalised_matching() -> None:
    a, b = vs("a"), vs("b")
    assert format_expr(BinaryExpr("+", a, b, matching=VectorMatching())) == "a + b"
    on_empty = VectorMatching(on=True)
    assert format_expr(BinaryExpr("and", a, b, matching=on_empty)) == "a and on () b"
    grouped = VectorMatching(Cardinality.ONE_TO_MANY, ("x",), False, ("y-z",))
    assert format_expr(BinaryExpr("/", a, b, matching=grouped)) == 'a / ignoring (x) group_right ("y-z") b'
    assert format_expr(BinaryExpr(">", a, NumberLiteral(1), True)) == "a > bool 1"
    assert format_expr(BinaryExpr("*", NumberLiteral(2), a, parsed_matching=on_empty)) == "2 * a"


def test_aggregation_and_call_printing() -> None:
    node = AggregateExpr("quantile", vs("x"), NumberLiteral(0.9), ("a", "b c"))
    assert format_expr(node) == 'quantile by (a, "b c") (0.9, x)'
    assert format_expr(AggregateExpr("sum", vs("x"), without=True)) == "sum without () (x)"
    assert format_expr(AggregateExpr("sum", vs("x"))) == "sum(x)"
    call = Call(FUNCTIONS["label_join"], (vs("x"), StringLiteral("d"), StringLiteral(","), StringLiteral("a")))
    assert format_expr(call) == 'label_join(x, "d", ",", "a")'
    assert format_expr(Call(FUNCTIONS["time"])) == "time()"


def test_string_literals_use_go_quoting() -> None:
    assert format_expr(StringLiteral('say "hi"\n')) == '"say \\"hi\\"\\n"'
    assert format_expr(StringLiteral("it's é")) == '"it\'s é"'
    assert format_expr(StringLiteral("\x01")) == '"\\x01"'


def test_paren_and_unary() -> None:
    assert format_expr(UnaryExpr("-", ParenExpr(vs("a")))) == "-(a)"
    assert format_expr(UnaryExpr("+", vs("a"))) == "+a"


# --- pretty ---------------------------------------------------------------------------------


def test_short_expressions_stay_on_one_line() -> None:
    q = 'sum by (job) (rate(http_requests_total{job="api"}[5m]))'
    assert pretty(parse_expr(q)) == q


def test_pretty_aggregation_and_call() -> None:
    q = 'sum by (job) (rate(http_requests_total{job="api"}[5m]))'
    assert pretty(parse_expr(q), max_width=30) == (
        "sum by (job) (\n"
        "  rate(\n"
        '    http_requests_total{job="api"}[5m]\n'
        "  )\n"
        ")"
    )


def test_pretty_parameter_goes_on_its_own_line() -> None:
    assert pretty(parse_expr("topk(5, rate(requests_total[5m]))"), max_width=20) == (
        "topk(\n"
        "  5,\n"
        "  rate(\n"
        "    requests_total[5m]\n"
        "  )\n"
        ")"
    )


def test_pretty_binary_puts_operator_and_modifiers_between_operands() -> None:
    q = "a_long_metric / on (instance) group_left (team) b_long_metric"
    assert pretty(parse_expr(q), max_width=20) == (
        "  a_long_metric\n"
        "/ on (instance) group_left (team)\n"
        "  b_long_metric"
    )


def test_pretty_nested_binary_indents_by_depth() -> None:
    assert pretty(parse_expr("(a + b)"), max_width=3) == "(\n    a\n  +\n    b\n)"
    assert pretty(parse_expr("aa + bb + cc"), max_width=6) == (
        "    aa\n"
        "  +\n"
        "    bb\n"
        "+\n"
        "  cc"
    )


def test_pretty_subquery_that_fits_is_not_indented() -> None:
    # Prometheus' Pretty() does not indent a subquery that fits on its line; we match it.
    q = "max_over_time(deriv(rate(x_total[1m])[5m:30s])[1h:1m])"
    assert pretty(parse_expr(q), max_width=30) == (
        "max_over_time(\n"
        "  deriv(\n"
        "rate(x_total[1m])[5m:30s]\n"
        "  )[1h:1m]\n"
        ")"
    )


def test_pretty_unary_keeps_operator_on_the_first_line() -> None:
    assert pretty(parse_expr("-sum by (job) (rate(x[5m]))"), max_width=15) == (
        "-sum by (job) (\n"
        "  rate(x[5m])\n"
        ")"
    )


def test_pretty_measures_width_in_utf8_bytes() -> None:
    q = 'abs(x{a="é"})'  # 13 characters, 14 bytes
    assert pretty(parse_expr(q), max_width=13) == 'abs(\n  x{a="é"}\n)'
    assert pretty(parse_expr(q), max_width=14) == q


def test_pretty_custom_indent() -> None:
    assert pretty(parse_expr("rate(some_metric[5m])"), indent="\t", max_width=10) == (
        "rate(\n\tsome_metric[5m]\n)"
    )


@pytest.mark.parametrize(
    "q",
    [
        '(node_filesystem_avail_bytes{job="node"} / node_filesystem_size_bytes{job="node"} * 100 < 40 '
        'and predict_linear(node_filesystem_avail_bytes{job="node"}[6h], 24*60*60) < 0)',
        'histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{job="api"}[5m])))',
        "-histogram_quantile(0.9, -rate(foo[1m] @ start()))",
        "label_replace(label_replace(up, \"a\", \"$1\", \"b\", \"(.*)\"), \"c\", \"$1\", \"d\", \"(.*)\")",
    ],
)
@pytest.mark.parametrize("width", [1, 20, 40, 100])
def test_pretty_output_parses_back_to_the_same_tree(q: str, width: int) -> None:
    expr = parse_expr(q)
    assert parse_expr(pretty(expr, max_width=width)) == expr
