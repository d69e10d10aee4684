"""Differential test: ``thanos-tools query -o json`` against a real Prometheus 2.42 serving the same blocks.

The blocks come from ``promtool tsdb create-blocks-from openmetrics``; our tool reads a copy (so the
server's own compaction cannot disturb it). Values must agree to a relative 1e-9, timestamps and label
sets exactly; matrix results (sorted by labels in both) and exact selectors also byte for byte.

Left out on purpose, because Prometheus 2.42 and the 3.x semantics we implement differ there:
* range-window edges that coincide with sample timestamps (2.42 windows are closed on the left, 3.x open):
  every evaluation time below has an odd millisecond offset, so no edge meets a sample;
* ``holt_winters`` (renamed ``double_exponential_smoothing`` and made experimental in 3.x);
* functions that 2.42 lacks (``sort_by_label``, ``limitk``, ``limit_ratio``, ``mad_over_time``, ``info``,
  ``ts_of_*``, ``first_over_time``…) and native histograms (promtool 2.42 cannot import them);
* ``day_of_year`` (added after 2.42);
* ``atan2`` on a named left operand (2.42 keeps the metric name, 3.x drops it as for the other arithmetic operators);
* the order of equal values under ``sort``/``sort_desc`` (2.42 sorts unstably): only the value order is compared.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.clihelp import START_MS, make_openmetrics, run_cli
from tests.fixtures_prom import PROMETHEUS, PROMTOOL, PrometheusServer, promtool_create_blocks

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]

MIN = 60_000
H = 3_600_000
T1 = START_MS + H + 7_337
T2 = START_MS + 2 * H + 30 * MIN + 3_791
T_AFTER = START_MS + 3 * H + 2 * MIN + 11  # past the data: staleness by lookback
AT = (START_MS + 90 * MIN + 4_321) / 1000

INSTANT = [
    # selectors
    "up", 'http_requests_total{code="200"}', 'node_cpu_seconds_total{mode=~"idle|user",cpu!="0"}',
    '{__name__=~"cache_.*"}', "up offset 10m", "http_requests_total offset -5m", f"up @ {AT}",
    "http_requests_total[2m]", "up[3m] offset 1m", 'special_values{kind="wave"}', "nonexistent_metric",
    # counters and gauges over ranges
    "rate(http_requests_total[5m])", "irate(http_requests_total[5m])", "increase(node_cpu_seconds_total[10m])",
    "delta(cache_items[10m])", "idelta(node_load1[5m])", "deriv(node_memory_Active_bytes[15m])",
    "predict_linear(node_memory_Active_bytes[15m], 3600)", "resets(http_requests_total[1h])",
    "changes(cache_items[30m])", "rate(cache_hits_total[1m])",
    # *_over_time
    "avg_over_time(node_load1[10m])", "min_over_time(node_load1[10m])", "max_over_time(node_load1[10m])",
    "sum_over_time(cache_items[10m])", "count_over_time(up[10m])", "last_over_time(node_load1[10m])",
    "stddev_over_time(node_load1[30m])", "stdvar_over_time(node_load1[30m])",
    "quantile_over_time(0.9, node_load1[30m])", "present_over_time(up[5m])", "absent_over_time(nonexistent[5m])",
    # aggregations
    "sum(rate(http_requests_total[5m]))", "sum by (code) (rate(http_requests_total[5m]))",
    "sum without (instance, handler) (rate(http_requests_total[5m]))", "avg by (job) (process_resident_memory_bytes)",
    "min by (job) (go_goroutines)", "max(node_load1)", "count by (job) (up)", "group by (job) (up)",
    "stddev(node_load1)", "stdvar by (mode) (rate(node_cpu_seconds_total[5m]))",
    "topk(3, rate(http_requests_total[5m]))", "bottomk(2, rate(http_requests_total[5m]))",
    "quantile(0.75, rate(http_requests_total[5m]))", 'count_values("v", go_goroutines)',
    "sum by (job) (up) > 1",
    # binary operators and vector matching
    'rate(http_requests_total{code="500"}[5m]) / ignoring(code) rate(http_requests_total{code=~"20."}[5m])',
    "http_requests_total / on(instance, handler, method) group_left() "
    "sum by (instance, handler, method) (http_requests_total)",
    "sum by (job) (up) / on(job) group_right() up",
    "node_memory_MemAvailable_bytes / 1024 / 1024", "2 * up + 1", "node_load1 > 0.5", "node_load1 > bool 0.5",
    "up == 1", "node_load1 % 0.3", "node_load1 ^ 2", "abs(node_load1) atan2 go_goroutines", "-node_load1",
    "up and on(job) node_load1", "up or cache_items", "up unless on(job) node_load1", "1 < bool node_load1",
    # math
    "abs(-node_load1)", "ceil(node_load1)", "floor(node_load1)", "round(node_load1, 0.1)", "round(node_load1)",
    "sqrt(node_load1)", "exp(node_load1)", "ln(node_load1)", "log2(node_load1)", "log10(node_load1)",
    "clamp(node_load1, 0.2, 0.8)", "clamp_min(node_load1, 0.5)", "clamp_max(node_load1, 0.5)",
    "sgn(node_load1 - 0.5)", "sin(node_load1)", "cos(node_load1)", "tan(node_load1)", "asin(node_load1 / 10)",
    "acos(node_load1 / 10)", "atan(node_load1)", "sinh(node_load1)", "cosh(node_load1)", "tanh(node_load1)",
    "asinh(node_load1)", "acosh(node_load1 + 1)", "atanh(node_load1 / 10)", "deg(node_load1)", "rad(node_load1)",
    # histograms
    "histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    "histogram_quantile(0.5, rate(http_request_duration_seconds_bucket[10m]))",
    # labels
    'label_replace(up, "host", "$1", "instance", "(.*):.*")', 'label_join(up, "jl", "-", "job", "instance")',
    # time
    "time()", "timestamp(up)", "hour()", "minute()", "day_of_week()", "day_of_month()", "days_in_month()",
    "month()", "year()", "hour(timestamp(up))",
    # misc
    "scalar(sum(up))", "vector(1)", "absent(nonexistent)", 'absent(up{job="nope"})', "sort(node_load1)",
    "sort_desc(rate(http_requests_total[5m]))",
    # subqueries
    "max_over_time(rate(http_requests_total[5m])[30m:1m])", "avg_over_time(node_load1[1h:5m])",
    "min_over_time(sum(up)[20m:1m])",
    # scalars and strings
    "1 + 2", "2 ^ 10", "pi()", '"hello"', "NaN", "-Inf", "1e-7", "1e21", "scalar(up)",
]

# Special values: NaN, ±Inf, 1e-7, 1e21, -0 (tests/clihelp.py special_series), at times that see each one.
SPECIAL_TIMES = [START_MS + off for off in (7_003, 40_017, 50_009, 110_031, 950_013, 1_350_021, 1_450_007)]
SPECIAL = ['special_values{kind="edge"}', 'special_values{kind="edge"} * 2', "-special_values",
           'max_over_time(special_values{kind="edge"}[20m])', "special_values > 0"]

RANGE = [
    "up", "rate(http_requests_total[5m])", "sum by (job) (rate(process_cpu_seconds_total[5m]))",
    "avg_over_time(node_load1[10m])",
    "histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    "topk(2, node_load1)", "node_load1 > 0.5", "deriv(cache_items[10m])", "increase(cache_hits_total[15m])",
    'max_over_time(rate(http_requests_total{code="200"}[5m])[15m:1m])', "time()", "vector(1)",
    "absent(nonexistent)", 'label_replace(up, "x", "$1", "job", "(.)")', "count_over_time(up[3m])",
    "timestamp(up)", "changes(cache_items[10m])", "quantile(0.5, node_load1)", "up offset 1h", f"up @ {AT}",
    "predict_linear(node_load1[10m], 600)", "irate(cache_hits_total[2m])", "resets(cache_hits_total[30m])",
    "delta(node_load1[5m])", "scalar(sum(up))", "1 + 1", "special_values",
]
RANGES = [
    (START_MS + 10 * MIN + 1_234, START_MS + 3 * H + 4 * MIN + 1_234, 60_013),
    (START_MS + 2 * H + 7, START_MS + 2 * H + 20 * MIN + 7, 7_500),
]
# Plain selections: no arithmetic, so the JSON text must be identical too.
EXACT = {"up", "special_values", 'special_values{kind="edge"}', "http_requests_total[2m]", f"up @ {AT}"}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, PrometheusServer]]:
    if PROMETHEUS is None or PROMTOOL is None:
        pytest.skip("prometheus/promtool not installed")
    base = tmp_path_factory.mktemp("differential")
    blocks = promtool_create_blocks(make_openmetrics(series=300, hours=3.0), base / "blocks")
    served = base / "served"
    shutil.copytree(blocks, served)
    server = PrometheusServer(served, base)
    try:
        yield blocks, server
    finally:
        server.stop()


def _ours(blocks: Path, query: str, *args: str) -> tuple[str, Any]:
    res = run_cli("query", "--bucket", str(blocks), "-o", "json", *args, "--", query)
    assert res.exit_code == 0, res.stderr
    return res.stdout.strip(), json.loads(res.stdout)


def _theirs(server: PrometheusServer, path: str, **params: str) -> tuple[str, Any]:
    raw = server.get(path, **params)
    body = json.loads(raw)
    assert body["status"] == "success", body
    return _raw_data(raw), body["data"]


def _raw_data(body: bytes) -> str:
    text = body.decode()
    prefix = '{"status":"success","data":'
    assert text.startswith(prefix)
    return text[len(prefix):text.rindex("}")]


def _same_value(a: str, b: str) -> bool:
    x, y = float(a), float(b)
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return x == y or math.isclose(x, y, rel_tol=1e-9)


def _points_equal(ours: list[Any], theirs: list[Any]) -> bool:
    return len(ours) == len(theirs) and all(
        p[0] == q[0] and _same_value(p[1], q[1]) for p, q in zip(ours, theirs, strict=True))


def _key(metric: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(metric.items()))


def compare(ours: Any, theirs: Any, *, ordered: bool = False) -> None:
    assert ours["resultType"] == theirs["resultType"]
    kind = ours["resultType"]
    if kind in ("scalar", "string"):
        assert ours["result"][0] == theirs["result"][0]
        if kind == "string":
            assert ours["result"][1] == theirs["result"][1]
        else:
            assert _same_value(ours["result"][1], theirs["result"][1]), (ours, theirs)
        return
    field = "value" if kind == "vector" else "values"
    if ordered and kind == "matrix":
        assert [_key(s["metric"]) for s in ours["result"]] == [_key(s["metric"]) for s in theirs["result"]]
    if ordered and kind == "vector":
        mine_values = [s["value"] for s in ours["result"]]
        assert _points_equal([[0, v[1]] for v in mine_values], [[0, s["value"][1]] for s in theirs["result"]])
    mine = {_key(s["metric"]): s[field] for s in ours["result"]}
    want = {_key(s["metric"]): s[field] for s in theirs["result"]}
    assert sorted(mine) == sorted(want)
    for k, pts in want.items():
        got = mine[k]
        ok = _points_equal([got], [pts]) if kind == "vector" else _points_equal(got, pts)
        assert ok, f"{k}: ours {got} vs prometheus {pts}"


def _seconds(ms: int) -> str:
    return f"{ms / 1000:.3f}"


@pytest.mark.parametrize("query", INSTANT)
@pytest.mark.parametrize("at", [T1, T2, T_AFTER], ids=["t1", "t2", "after"])
def test_instant(env: tuple[Path, PrometheusServer], query: str, at: int) -> None:
    blocks, server = env
    text, ours = _ours(blocks, query, "--time", str(at))
    raw, theirs = _theirs(server, "/api/v1/query", query=query, time=_seconds(at))
    compare(ours, theirs, ordered=query.startswith("sort"))
    if query in EXACT and ours["resultType"] != "vector":
        assert text == raw


@pytest.mark.parametrize("query", SPECIAL)
@pytest.mark.parametrize("at", SPECIAL_TIMES)
def test_special_values(env: tuple[Path, PrometheusServer], query: str, at: int) -> None:
    blocks, server = env
    text, ours = _ours(blocks, query, "--time", str(at))
    raw, theirs = _theirs(server, "/api/v1/query", query=query, time=_seconds(at))
    compare(ours, theirs)
    if query in EXACT:
        assert text == raw


@pytest.mark.parametrize("query", RANGE)
@pytest.mark.parametrize("window", RANGES, ids=["3h-1m", "20m-7.5s"])
def test_range(env: tuple[Path, PrometheusServer], query: str, window: tuple[int, int, int]) -> None:
    blocks, server = env
    start, end, step = window
    text, ours = _ours(blocks, query, "--start", str(start), "--end", str(end), "--step", f"{step / 1000}")
    raw, theirs = _theirs(server, "/api/v1/query_range", query=query, start=_seconds(start), end=_seconds(end),
                          step=f"{step / 1000}")
    compare(ours, theirs, ordered=True)
    if query in EXACT:
        assert text == raw
