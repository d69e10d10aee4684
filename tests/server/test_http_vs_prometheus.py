"""Differential test over HTTP: ``serve`` against a real Prometheus 2.42 on the same promtool-made blocks,
once from a local directory and once from a moto S3 bucket, with a plain HTTP client.

The queries, evaluation times and the comparison rules are those of the CLI differential test
(``tests/cli/test_cli_query_vs_prometheus.py``, which documents what is left out and why); here they
go through ``/api/v1/query`` and ``/api/v1/query_range`` instead of ``thanos-tools query``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_cli_query_vs_prometheus import (
    EXACT,
    INSTANT,
    RANGE,
    RANGES,
    SPECIAL,
    SPECIAL_TIMES,
    T1,
    T2,
    T_AFTER,
    _raw_data,
    _seconds,
    _theirs,
    compare,
)
from tests.clihelp import make_openmetrics
from tests.fixtures_prom import PROMETHEUS, PROMTOOL, PrometheusServer, promtool_create_blocks
from tests.fixtures_s3 import S3TestBucket
from tests.server.servehelp import Serve, ServeFactory

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]


@dataclass
class Env:
    blocks: Path
    prometheus: PrometheusServer
    serve: Serve
    root: Path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    if PROMETHEUS is None or PROMTOOL is None:
        pytest.skip("prometheus/promtool not installed")
    root = tmp_path_factory.mktemp("http-differential")
    blocks = promtool_create_blocks(make_openmetrics(series=300, hours=3.0), root / "blocks")
    served = root / "served"
    shutil.copytree(blocks, served)  # prometheus may compact its copy; ours stays as promtool wrote it
    prometheus = PrometheusServer(served, root)
    factory = ServeFactory(root)
    try:
        yield Env(blocks, prometheus, factory("--bucket", str(blocks)), root)
    finally:
        factory.stop_all()
        prometheus.stop()


def ours(serve: Serve, path: str, **params: str) -> tuple[str, Any]:
    reply = serve.get(path, params)
    body = reply.json()
    assert reply.status == 200 and body["status"] == "success", body
    return _raw_data(reply.body), body["data"]


def check_instant(serve: Serve, prometheus: PrometheusServer, query: str, at: int) -> None:
    text, mine = ours(serve, "/api/v1/query", query=query, time=_seconds(at))
    raw, theirs = _theirs(prometheus, "/api/v1/query", query=query, time=_seconds(at))
    compare(mine, theirs, ordered=query.startswith("sort"))
    if query in EXACT and mine["resultType"] != "vector":
        assert text == raw


def check_range(serve: Serve, prometheus: PrometheusServer, query: str, window: tuple[int, int, int]) -> None:
    start, end, step = window
    params = {"query": query, "start": _seconds(start), "end": _seconds(end), "step": f"{step / 1000}"}
    text, mine = ours(serve, "/api/v1/query_range", **params)
    raw, theirs = _theirs(prometheus, "/api/v1/query_range", **params)
    compare(mine, theirs, ordered=True)
    if query in EXACT:
        assert text == raw


@pytest.mark.parametrize("query", INSTANT)
def test_instant(env: Env, query: str) -> None:
    check_instant(env.serve, env.prometheus, query, T2)


@pytest.mark.parametrize("at", [T1, T_AFTER], ids=["t1", "after"])
def test_instant_other_times(env: Env, at: int) -> None:
    for query in INSTANT[::4]:
        check_instant(env.serve, env.prometheus, query, at)


@pytest.mark.parametrize("at", SPECIAL_TIMES)
def test_special_values(env: Env, at: int) -> None:
    for query in SPECIAL:
        check_instant(env.serve, env.prometheus, query, at)


@pytest.mark.parametrize("query", RANGE)
@pytest.mark.parametrize("window", RANGES, ids=["3h-1m", "20m-7.5s"])
def test_range(env: Env, query: str, window: tuple[int, int, int]) -> None:
    check_range(env.serve, env.prometheus, query, window)


def test_post_matches_get(env: Env) -> None:
    params = {"query": "sum by (job) (rate(http_requests_total[5m]))", "time": _seconds(T2)}
    assert env.serve.post("/api/v1/query", params).body == env.serve.get("/api/v1/query", params).body


def test_series_labels_and_values(env: Env) -> None:
    window = {"start": _seconds(RANGES[0][0]), "end": _seconds(RANGES[0][1])}
    for path, params in [("/api/v1/labels", {}), ("/api/v1/label/job/values", {}),
                         ("/api/v1/label/__name__/values", {}), ("/api/v1/labels", {"match[]": "up"}),
                         ("/api/v1/label/instance/values", {"match[]": 'http_requests_total{code="200"}'})]:
        _, mine = ours(env.serve, path, **params, **window)
        _, theirs = _theirs(env.prometheus, path, **params, **window)
        assert mine == theirs, path
    _, mine = ours(env.serve, "/api/v1/series", **{"match[]": 'node_load1'}, **window)
    _, theirs = _theirs(env.prometheus, "/api/v1/series", **{"match[]": 'node_load1'}, **window)
    assert sorted(json.dumps(s, sort_keys=True) for s in mine) == sorted(json.dumps(s, sort_keys=True) for s in theirs)


def test_from_s3(env: Env, s3_bucket: S3TestBucket) -> None:
    """The same blocks uploaded to S3: a sample of the queries (reading remote blocks is what differs)."""
    for path in sorted(env.blocks.rglob("*")):
        if path.is_file() and path.parts[len(env.blocks.parts)] != "wal":
            s3_bucket.client.upload_file(str(path), s3_bucket.name, str(path.relative_to(env.blocks)))
    factory = ServeFactory(env.root)
    try:
        serve = factory("--objstore.config-file", s3_bucket.write_config(env.root), "--cache-dir",
                        str(env.root / "cache"))
        for query in INSTANT[::5]:
            check_instant(serve, env.prometheus, query, T2)
        for query in RANGE[::2]:
            check_range(serve, env.prometheus, query, RANGES[0])
        assert "Traceback" not in serve.stderr()
    finally:
        factory.stop_all()
