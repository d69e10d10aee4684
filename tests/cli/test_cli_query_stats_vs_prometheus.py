"""Differential test of query statistics: ``thanos-tools query --per-step-stats`` against a real Prometheus 2.42
(with ``--enable-feature=promql-per-step-stats``) over the same blocks: ``totalQueryableSamples`` and the samples
read at every step must be equal; ``peakSamples`` too for the shapes in PEAK_EXACT (selectors, range functions,
subqueries). Elsewhere our peak is an estimate of Prometheus's (which follows its step-by-step evaluator: inputs
gathered per step under aggregations and binary operators, step-invariant subtrees evaluated once).

Evaluation times have odd millisecond offsets (as in test_cli_query_vs_prometheus.py), so no window edge meets a
sample: there 2.42 windows are closed on the left and 3.x windows open.
"""

from __future__ import annotations

import json
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
AT = (START_MS + 90 * MIN + 4_321) / 1000

VECTOR_QUERIES = [
    "up", 'http_requests_total{code="200"}', "up offset 10m", "http_requests_total offset -5m", f"up @ {AT}",
    "rate(http_requests_total[5m])", "sum by (code) (rate(http_requests_total[5m]))",
    "avg_over_time(node_load1[10m] offset 5m)", f"rate(http_requests_total[5m] @ {AT})",
    'max_over_time(rate(http_requests_total{code="200"}[5m])[15m:1m])', "min_over_time(node_load1[20m:2m] offset 3m)",
    "node_load1 > 0.5 or up", "timestamp(up)", "count_over_time(up[10m])", "absent(nonexistent_metric)",
    "scalar(sum(up)) * node_load1",
    "histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
]
INSTANT_ONLY = ["http_requests_total[2m]", "up[3m] offset 1m", 'rate(http_requests_total{code="200"}[5m])[10m:1m]']
PEAK_EXACT = {
    "up", 'http_requests_total{code="200"}', "up offset 10m", "http_requests_total offset -5m", f"up @ {AT}",
    "rate(http_requests_total[5m])", "avg_over_time(node_load1[10m] offset 5m)",
    "min_over_time(node_load1[20m:2m] offset 3m)",
    "count_over_time(up[10m])", "absent(nonexistent_metric)", *INSTANT_ONLY,
}
RANGES = [
    (START_MS + 10 * MIN + 1_234, START_MS + 3 * H + 4 * MIN + 1_234, 60_013),
    (START_MS + 2 * H + 7, START_MS + 2 * H + 20 * MIN + 7, 7_500),
]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, PrometheusServer]]:
    if PROMETHEUS is None or PROMTOOL is None:
        pytest.skip("prometheus/promtool not installed")
    base = tmp_path_factory.mktemp("stats")
    blocks = promtool_create_blocks(make_openmetrics(series=120, hours=3.0), base / "blocks")
    served = base / "served"
    shutil.copytree(blocks, served)
    server = PrometheusServer(served, base, ["--enable-feature=promql-per-step-stats"])
    try:
        yield blocks, server
    finally:
        server.stop()


def _ours(blocks: Path, query: str, *args: str) -> dict[str, Any]:
    res = run_cli("query", "--bucket", str(blocks), "-o", "json", "--per-step-stats", *args, "--", query)
    assert res.exit_code == 0, res.stderr
    stats: dict[str, Any] = json.loads(res.stdout)["stats"]
    return stats


def _theirs(server: PrometheusServer, path: str, **params: str) -> dict[str, Any]:
    body = json.loads(server.get(path, stats="all", **params))
    assert body["status"] == "success", body
    stats: dict[str, Any] = body["data"]["stats"]
    return stats


def _seconds(ms: int) -> str:
    return f"{ms / 1000:.3f}"


def _same_samples(ours: dict[str, Any], theirs: dict[str, Any], query: str) -> None:
    assert list(ours) == list(theirs) == ["timings", "samples"]
    assert list(ours["timings"]) == list(theirs["timings"])
    mine, want = ours["samples"], theirs["samples"]
    assert list(mine) == list(want)
    assert mine["totalQueryableSamplesPerStep"] == want["totalQueryableSamplesPerStep"]
    assert mine["totalQueryableSamples"] == want["totalQueryableSamples"]
    if query in PEAK_EXACT:
        assert mine["peakSamples"] == want["peakSamples"]


@pytest.mark.parametrize("query", VECTOR_QUERIES + INSTANT_ONLY)
@pytest.mark.parametrize("at", [T1, T2], ids=["t1", "t2"])
def test_instant_stats(env: tuple[Path, PrometheusServer], query: str, at: int) -> None:
    blocks, server = env
    ours = _ours(blocks, query, "--time", str(at))
    theirs = _theirs(server, "/api/v1/query", query=query, time=_seconds(at))
    _same_samples(ours, theirs, query)


@pytest.mark.parametrize("query", VECTOR_QUERIES)
@pytest.mark.parametrize("window", RANGES, ids=["3h-1m", "20m-7.5s"])
def test_range_stats(env: tuple[Path, PrometheusServer], query: str, window: tuple[int, int, int]) -> None:
    blocks, server = env
    start, end, step = window
    ours = _ours(blocks, query, "--start", str(start), "--end", str(end), "--step", f"{step / 1000}")
    theirs = _theirs(server, "/api/v1/query_range", query=query, start=_seconds(start), end=_seconds(end),
                     step=f"{step / 1000}")
    _same_samples(ours, theirs, query)
