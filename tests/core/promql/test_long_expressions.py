"""Long and deep expressions: chains of any length parse, print and evaluate; nesting beyond a fixed
depth is a clear parse error, never a RecursionError."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from thanostools.core.errors import ParseError
from thanostools.core.promql.engine import PromQLEngine, QueryOptions
from thanostools.core.promql.memquerier import MemoryQuerier
from thanostools.core.promql.parser.parse import MAX_NESTING_DEPTH, parse_expr
from thanostools.core.promql.parser.printer import format_expr, pretty

D = MAX_NESTING_DEPTH


@pytest.fixture(scope="module")
def engine() -> PromQLEngine:
    q = MemoryQuerier([(("__name__", "x"),)], [np.array([0], np.int64)], [np.array([2.0]).view(np.uint64)])
    return PromQLEngine(q, QueryOptions())


@pytest.mark.parametrize("terms", [10_000, 20_000])
def test_long_chains_parse_print_and_evaluate(engine: PromQLEngine, terms: int) -> None:
    ones = " + ".join(["1"] * terms)
    res = engine.instant(ones, 0)
    assert res.scalar == (0, float(terms))
    xs = " + ".join(["x"] * terms)
    expr = parse_expr(xs)
    assert format_expr(expr) == xs
    res = engine.instant(expr, 0)
    assert [(s.labels, s.v.tolist()) for s in res.series] == [((), [2.0 * terms])]
    mixed = " - ".join(["x * 2 / 2"] * terms)
    assert engine.instant(mixed, 0).series[0].v.tolist() == [2.0 - 2.0 * (terms - 1)]


def test_pretty_of_a_long_chain() -> None:
    lines = pretty(parse_expr(" + ".join(["x"] * 3000))).split("\n")
    # as Prometheus does: every link one level deeper than the next, operators in between, until the
    # innermost 25 terms fit in 100 characters
    assert len(lines) == 2 * (3000 - 25) + 1
    assert lines[0] == "  " * 2975 + " + ".join(["x"] * 25)
    assert lines[1] == "  " * 2974 + "+" and lines[-2] == "+" and lines[-1] == "  x"


_SHAPES: dict[str, Callable[[int], str]] = {
    "parens": lambda n: "(" * n + "x" + ")" * n,
    "unary": lambda n: "-" * n + "x",
    "power": lambda n: " ^ ".join(["x"] * (n + 1)),
    "calls": lambda n: "abs(" * n + "x" + ")" * n,
    "aggregations": lambda n: "sum(" * n + "x" + ")" * n,
    "subqueries": lambda n: "max_over_time(" * n + "x" + "[1m:])" * n,
}


@pytest.mark.parametrize("shape", sorted(_SHAPES))
def test_nesting_up_to_the_limit_works_beyond_it_is_a_parse_error(engine: PromQLEngine, shape: str) -> None:
    make = _SHAPES[shape]
    expr = parse_expr(make(D))
    assert parse_expr(format_expr(expr)) == expr
    pretty(expr)
    res = engine.instant(expr, 0)
    assert len(res.series) == 1
    with pytest.raises(ParseError) as exc:
        parse_expr(make(D + 1))
    assert exc.value.reason == f"expression nested too deeply: more than {D} levels"
    assert exc.value.position is not None and exc.value.position > 0
