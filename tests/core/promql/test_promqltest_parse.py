from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from tests.sharedfiles import promqltest_scripts
from thanostools.core.constants import STALE_NAN_BITS
from thanostools.core.promql.parser.ast import float_bits
from thanostools.core.promql.parser.parse import parse_expr
from thanostools.core.promql.parser.printer import format_expr
from thanostools.core.promql.promqltest import (
    NAN_BITS,
    ClearCmd,
    EvalCmd,
    Expectation,
    ExpectedSeries,
    HistogramRef,
    LoadCmd,
    RangeVectorSpec,
    Sample,
    ScriptError,
    SeqValue,
    parse_script,
    parse_series_line,
)

SCRIPTS = promqltest_scripts()

MIN = 60_000


def bits(value: float) -> int:
    return float_bits(value)


SCRIPT = """
# A comment line.
load 5m
  http_requests{job="api", instance="0"} 0+10x3 stale 5 _ -1.5e1
  other _x2 1x2 NaN -Inf
  {__name__="weird.name", "a b"="c"} 1-1x2
  {"quoted"} 7

eval instant at 10m http_requests
  http_requests{job="api", instance="0"} 20

eval range from 0 to 10m step 5m http_requests
  http_requests{job="api", instance="0"} 0 10 _

eval instant at 0 1 + 1
  2

eval instant at 0 "s"
  expect string "s"

eval instant at 50m topk(1, http_requests)
  expect ordered
  expect no_warn
  expect info msg: something happened
  http_requests{job="api", instance="0"} 30

eval_fail instant at 0 rate(x[5m]) / y
  expected_fail_message vector cannot contain metrics with the same labelset

eval instant at 1m x
  expect fail regex: ^bad.*
  expect warn

eval_ordered instant at 1m sort(x)

eval instant at 1m some_metric[1m]
  expect range vector from 10s to 1m step 10s
  some_metric{env="a"} 1 2 3 4 5 6

clear

load_with_nhcb 1m
  h {{schema:0 sum:5 count:4 buckets:[1 2 1]}}x2 {{schema:0 sum:1 count:1}}+{{sum:1 count:1}}x1
"""


@pytest.fixture(scope="module")
def commands() -> list[LoadCmd | ClearCmd | EvalCmd]:
    return parse_script(SCRIPT)


def test_command_sequence(commands: list[LoadCmd | ClearCmd | EvalCmd]) -> None:
    assert [type(c).__name__ for c in commands] == [
        "LoadCmd", "EvalCmd", "EvalCmd", "EvalCmd", "EvalCmd", "EvalCmd", "EvalCmd", "EvalCmd",
        "EvalCmd", "EvalCmd", "ClearCmd", "LoadCmd",
    ]
    assert [c.line for c in commands] == [3, 9, 12, 15, 18, 21, 27, 30, 34, 36, 40, 42]


def test_load_expands_value_sequences(commands: list[LoadCmd | ClearCmd | EvalCmd]) -> None:
    load = commands[0]
    assert isinstance(load, LoadCmd)
    assert load.interval_ms == 5 * MIN and not load.with_nhcb
    series = dict(load.series)
    assert series[(("__name__", "http_requests"), ("instance", "0"), ("job", "api"))] == [
        Sample(0, bits(0), False), Sample(5 * MIN, bits(10), False), Sample(10 * MIN, bits(20), False),
        Sample(15 * MIN, bits(30), False), Sample(20 * MIN, STALE_NAN_BITS, False),
        Sample(25 * MIN, bits(5), False), Sample(35 * MIN, bits(-15), False),
    ]
    assert series[(("__name__", "other"),)] == [
        Sample(10 * MIN, bits(1), False), Sample(15 * MIN, bits(1), False), Sample(20 * MIN, bits(1), False),
        Sample(25 * MIN, NAN_BITS, False), Sample(30 * MIN, bits(-math.inf), False),
    ]
    assert [s.value_bits for s in series[(("__name__", "weird.name"), ("a b", "c"))]] == [
        bits(1), bits(0), bits(-1),
    ]
    assert series[(("__name__", "quoted"),)] == [Sample(0, bits(7), False)]


def test_load_with_native_histograms(commands: list[LoadCmd | ClearCmd | EvalCmd]) -> None:
    load = commands[-1]
    assert isinstance(load, LoadCmd) and load.with_nhcb and load.interval_ms == MIN
    ((labels, samples),) = load.series
    assert labels == (("__name__", "h"),)
    base = HistogramRef("schema:0 sum:5 count:4 buckets:[1 2 1]")
    assert samples[:3] == [Sample(t * MIN, None, True, base) for t in range(3)]
    assert samples[3:] == [
        Sample(3 * MIN, None, True, HistogramRef("schema:0 sum:1 count:1", "sum:1 count:1", 1, 0)),
        Sample(4 * MIN, None, True, HistogramRef("schema:0 sum:1 count:1", "sum:1 count:1", 1, 1)),
    ]


def test_eval_instant_and_range(commands: list[LoadCmd | ClearCmd | EvalCmd]) -> None:
    inst, rng = commands[1], commands[2]
    assert isinstance(inst, EvalCmd) and isinstance(rng, EvalCmd)
    assert (inst.kind, inst.start_ms, inst.end_ms, inst.step_ms) == ("instant", 10 * MIN, 10 * MIN, 0)
    assert inst.expr_text == "http_requests" and inst.expr is not None
    labels = (("__name__", "http_requests"), ("instance", "0"), ("job", "api"))
    assert inst.expected_series == [ExpectedSeries(labels, (SeqValue(bits(20)),), 1)]
    assert (rng.kind, rng.start_ms, rng.end_ms, rng.step_ms) == ("range", 0, 10 * MIN, 5 * MIN)
    values = rng.expected_series[0].values
    assert values == (SeqValue(bits(0)), SeqValue(bits(10)), SeqValue(None))
    assert values[2].omitted and not values[0].omitted


def test_eval_scalar_and_string(commands: list[LoadCmd | ClearCmd | EvalCmd]) -> None:
    scalar, string = commands[3], commands[4]
    assert isinstance(scalar, EvalCmd) and scalar.expected_scalar_bits == bits(2)
    assert isinstance(string, EvalCmd) and string.expected_string == "s"
    assert scalar.expected_string is None and string.expected_scalar_bits is None


def test_expectations(commands: list[LoadCmd | ClearCmd | EvalCmd]) -> None:
    topk, old_fail, new_fail, ordered = commands[5:9]
    assert isinstance(topk, EvalCmd)
    assert topk.expectations == [
        Expectation("ordered"), Expectation("no_warn"), Expectation("info", message="something happened"),
    ]
    assert topk.ordered and not topk.expect_fail
    assert topk.expected_series[0].index == 1  # expect lines do not count as result lines
    assert isinstance(old_fail, EvalCmd) and old_fail.expect_fail
    assert old_fail.expectations == [
        Expectation("fail", message="vector cannot contain metrics with the same labelset"),
    ]
    assert isinstance(new_fail, EvalCmd)
    assert new_fail.expecting("fail") == [Expectation("fail", regex="^bad.*")]
    assert new_fail.expecting("warn") == [Expectation("warn")]
    assert isinstance(ordered, EvalCmd) and ordered.ordered


def test_expect_range_vector(commands: list[LoadCmd | ClearCmd | EvalCmd]) -> None:
    cmd = commands[9]
    assert isinstance(cmd, EvalCmd) and cmd.is_instant
    assert cmd.range_vector == RangeVectorSpec(10_000, 60_000, 10_000)
    assert len(cmd.expected_series[0].values) == 6


def test_expressions_are_optional_to_parse() -> None:
    (cmd,) = parse_script("eval instant at 0 this is not promql", parse_exprs=False)
    assert isinstance(cmd, EvalCmd) and cmd.expr is None and cmd.expr_text == "this is not promql"


@pytest.mark.parametrize(
    ("line", "labels", "values"),
    [
        ('metric{a="b"} 1 2', (("__name__", "metric"), ("a", "b")), [1.0, 2.0]),
        ("{} 5", (), [5.0]),
        ("sum 1", (("__name__", "sum"),), [1.0]),
        ("a:b:c 0x3", (("__name__", "a:b:c"),), [0.0] * 4),
        ('{version="{count:20, sum:10}"} 2', (("version", "{count:20, sum:10}"),), [2.0]),
        ("m 1e3+1e-1x2", (("__name__", "m"),), [1000.0, 1000.1, 1000.2]),
        ("m -1-2x1 .5 010", (("__name__", "m"),), [-1.0, -3.0, 0.5, 8.0]),
        ("m 1+0.1x3", (("__name__", "m"),), [1.0, 1.1, 1.2000000000000002, 1.3000000000000003]),
    ],
)
def test_parse_series_line(line: str, labels: tuple[tuple[str, str], ...], values: list[float]) -> None:
    got_labels, got = parse_series_line(line)
    assert got_labels == labels
    assert [v.value_bits for v in got] == [bits(v) for v in values]


def test_special_values() -> None:
    _, got = parse_series_line("m NaN -NaN stale Inf -Inf _x2 _")
    assert [v.value_bits for v in got] == [
        NAN_BITS, NAN_BITS | (1 << 63), STALE_NAN_BITS, bits(math.inf), bits(-math.inf), None, None, None,
    ]


def test_histogram_values() -> None:
    _, got = parse_series_line("h {{}} {{schema:1 buckets:[1 2]}}x1 {{count:4}}-{{count:1}}x2")
    assert got[0] == SeqValue(None, HistogramRef(""))
    assert got[1] == got[2] == SeqValue(None, HistogramRef("schema:1 buckets:[1 2]"))
    assert [v.histogram for v in got[3:]] == [HistogramRef("count:4", "count:1", -1, i) for i in range(3)]
    assert all(v.is_histogram for v in got)


@pytest.mark.parametrize(
    ("script", "line", "fragment"),
    [
        ("frobnicate", 1, "invalid command"),
        ("load 5x\n  m 1", 1, 'invalid step definition'),
        ("load\n", 1, "invalid load command"),
        ("load 1m\n  m 1+2", 2, "bad series value"),
        ("load 1m\n  m{a=b} 1", 2, "invalid series"),
        ("eval instant at 0 sum(", 1, "parse error: unclosed left parenthesis"),
        ("eval instant at 0 x\n  x 1 2", 2, "expecting multiple values in instant evaluation not allowed"),
        ("eval instant at 0 x\n  expect info\n  expect no_info", 3, "info and no_info cannot be used together"),
        ("eval instant at 0 x\n  expect fail\n  expect fail", 3, "multiple expect fail lines"),
        ("eval instant at 0 x\n  expect sometimes", 2, "invalid expect statement"),
        ("eval instant at 0 x\n  expect string", 2, "a quoted string literal is required"),
        ("eval instant at 0 x\n  expect string 'a", 2, "check that the string is correctly quoted"),
        ("eval range from 10m to 0 step 1m x", 1, "end timestamp (0) is before start timestamp (10m)"),
        ("eval instant at 5 x", 1, "invalid timestamp definition"),
        ("eval_ordered range from 0 to 1m step 1m x", 1, "invalid evaluation command"),
        ("eval instant at 0 x\n  expect range vector from 0 to 1m", 2, "invalid range vector definition"),
    ],
)
def test_script_errors(script: str, line: int, fragment: str) -> None:
    with pytest.raises(ScriptError) as info:
        parse_script(script)
    assert info.value.line == line
    assert fragment in str(info.value)


def test_expression_errors_point_into_the_line() -> None:
    with pytest.raises(ScriptError) as info:
        parse_script("\n\neval instant at 1m foo{")
    assert str(info.value) == "line 3: 24: parse error: unexpected end of input inside braces"


def test_a_comment_line_ends_a_block() -> None:
    with pytest.raises(ScriptError, match="invalid command"):
        parse_script("load 1m\n  a 1\n# comment\n  b 2")


# --- the Prometheus conformance scripts, when present beside the checkout -------------------


def _raw_counts(path: Path) -> dict[str, int]:
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").split("\n")]
    return {
        "eval": sum(1 for ln in lines if re.match(r"eval(_\w+)?\s", ln)),
        "load": sum(1 for ln in lines if re.match(r"load(_with_nhcb)?\s", ln)),
        "clear": sum(1 for ln in lines if ln == "clear"),
    }


@pytest.mark.skipif(not SCRIPTS, reason="shared promqltest scripts not present")
@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_shared_script_parses(path: Path) -> None:
    commands = parse_script(path.read_text(encoding="utf-8"))
    counts = _raw_counts(path)
    evals = [c for c in commands if isinstance(c, EvalCmd)]
    assert len(evals) == counts["eval"]
    assert sum(isinstance(c, LoadCmd) for c in commands) == counts["load"]
    assert sum(isinstance(c, ClearCmd) for c in commands) == counts["clear"]
    for cmd in evals:
        assert cmd.expr is not None
        printed = format_expr(cmd.expr)
        assert parse_expr(printed) == cmd.expr, (cmd.line, cmd.expr_text)
        if cmd.kind == "range":
            assert cmd.step_ms > 0
            for series in cmd.expected_series:
                assert len(series.values) <= (cmd.end_ms - cmd.start_ms) // cmd.step_ms + 1


@pytest.mark.skipif(not SCRIPTS, reason="shared promqltest scripts not present")
def test_shared_scripts_totals() -> None:
    evals = [c for p in SCRIPTS for c in parse_script(p.read_text(encoding="utf-8")) if isinstance(c, EvalCmd)]
    assert len(evals) >= 1500
    # Prometheus parses every eval expression when it loads a script, so "expect fail" queries
    # must fail at evaluation time, never while parsing.
    failing = [c for c in evals if c.expect_fail]
    assert failing and all(c.expr is not None for c in failing)
    assert any(c.expected_string is not None for c in evals)
    assert any(c.range_vector is not None for c in evals)
    assert any(c.expected_scalar_bits == NAN_BITS for c in evals)
