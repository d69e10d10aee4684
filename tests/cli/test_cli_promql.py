"""``thanos-tools promql format|parse|test``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.clihelp import run_cli

PASSING = """\
load 1m
    http_requests_total{job="api", instance="a"} 0+10x10
    http_requests_total{job="api", instance="b"} 0+20x10

eval instant at 5m sum by (job) (http_requests_total)
    {job="api"} 150

eval instant at 5m rate(http_requests_total{instance="a"}[5m])
    {job="api", instance="a"} 0.16666666666666666

eval instant at 2m 1 + 1
    2
"""

FAILING = """\
load 1m
    up{job="x"} 1 1 1

eval instant at 1m up
    up{job="x"} 2

eval instant at 1m up
    up{job="x"} 1
"""


def test_format_pretty_and_one_line() -> None:
    res = run_cli("promql", "format", "sum(rate(up[5m])) by (job)")
    assert res.exit_code == 0 and res.stdout == "sum by (job) (rate(up[5m]))\n"
    long = " + ".join(f'rate(http_requests_total{{job="service-{i}"}}[5m])' for i in range(3))
    pretty = run_cli("promql", "format", long).stdout
    assert pretty.splitlines()[1] == "+" and pretty.splitlines()[0].startswith("  rate(")
    one = run_cli("promql", "format", "--one-line", long).stdout
    assert one == long + "\n"


def test_format_parse_error_is_one_line() -> None:
    res = run_cli("promql", "format", "sum(")
    assert res.exit_code == 1
    assert res.stderr == "error: parse error: 1:5: unclosed left parenthesis\n"


def test_parse_json_tree() -> None:
    res = run_cli("promql", "parse", 'sum by (job) (rate(up{a=~"x"}[5m] offset 1m)) > 1.5')
    assert res.exit_code == 0
    tree = res.json()
    assert tree["type"] == "BinaryExpr" and tree["op"] == ">" and tree["valueType"] == "vector"
    assert (tree["pos"], tree["end"]) == (0, 51)
    agg = tree["lhs"]
    assert agg["type"] == "AggregateExpr" and agg["op"] == "sum" and agg["grouping"] == ["job"]
    call = agg["expr"]
    assert call["type"] == "Call" and call["func"] == "rate" and call["valueType"] == "vector"
    matrix = call["args"][0]
    assert matrix["type"] == "MatrixSelector" and matrix["range"] == 300_000 and matrix["valueType"] == "matrix"
    sel = matrix["vector_selector"]
    assert sel["name"] == "up" and sel["offset"] == 60_000
    assert {"type": "=~", "name": "a", "value": "x"} in sel["matchers"]
    assert tree["rhs"] == {"type": "NumberLiteral", "valueType": "scalar", "pos": 48, "end": 51, "value": 1.5,
                           "is_duration": False}
    nan = run_cli("promql", "parse", "NaN").json()
    assert nan["value"] == "NaN"


def test_parse_tree_output() -> None:
    res = run_cli("promql", "parse", "-o", "tree", "rate(up[5m]) * 2")
    assert res.exit_code == 0
    assert res.stdout.splitlines() == [
        "BinaryExpr [0:16] vector: rate(up[5m]) * 2",
        "  Call [0:12] vector: rate(up[5m])",
        "    MatrixSelector [5:11] matrix: up[5m]",
        "      VectorSelector [5:7] vector: up",
        "  NumberLiteral [15:16] scalar: 2",
    ]


def test_promqltest_passing_script(tmp_path: Path) -> None:
    script = tmp_path / "ok.test"
    script.write_text(PASSING)
    res = run_cli("promql", "test", str(script))
    assert res.exit_code == 0, res.stdout + res.stderr
    assert res.stdout.strip().splitlines()[-1] == "promqltest: 3 passed, 0 failed, 0 skipped"


def test_promqltest_failing_script_exits_1(tmp_path: Path) -> None:
    ok = tmp_path / "ok.test"
    ok.write_text(PASSING)
    bad = tmp_path / "bad.test"
    bad.write_text(FAILING)
    res = run_cli("promql", "test", str(ok), str(bad))
    assert res.exit_code == 1
    lines = res.stdout.strip().splitlines()
    assert lines[-1] == "promqltest: 4 passed, 1 failed, 0 skipped"
    assert lines[0] == f"FAIL {bad}:4: up"
    assert "expected 2" in lines[1] and "got 1" in lines[1]
    assert res.stderr.startswith("error: ")


def test_promqltest_missing_file() -> None:
    res = run_cli("promql", "test", "/nonexistent/file.test")
    assert res.exit_code == 2


GATED = """\
load 1m
  m{a="2"} 1
  m{a="1"} 2

eval_ordered instant at 0m sort_by_label(m, "a")
  m{a="1"} 2
  m{a="2"} 1
"""


def test_promqltest_experimental_functions_need_the_feature_flag(tmp_path: Path) -> None:
    script = tmp_path / "gated.test"
    script.write_text(GATED)
    res = run_cli("promql", "test", str(script))
    assert res.exit_code == 1
    assert 'function "sort_by_label" is not enabled' in res.stdout
    res = run_cli("promql", "test", "--enable-feature=promql-experimental-functions", str(script))
    assert res.exit_code == 0, res.stdout + res.stderr
    assert res.stdout.strip().splitlines()[-1] == "promqltest: 1 passed, 0 failed, 0 skipped"


@pytest.mark.parametrize("command", [("query",), ("serve",), ("tui",), ("promql", "test")])
def test_every_promql_front_end_takes_enable_feature(command: tuple[str, ...]) -> None:
    res = run_cli(*command, "--help")
    assert res.exit_code == 0 and "--enable-feature" in res.stdout
