"""Federation: two ``serve`` instances with replica external labels behind a third one that only queries
them over the StoreAPI (``--endpoint`` both, ``--query.replica-label replica``): one series per replica pair."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.clihelp import START_MS
from tests.core.test_querier import lab, write_raw
from tests.server.servehelp import Serve, ServeFactory

S = 15_000
N = 41
AT = f"{(START_MS + 300_000) / 1000:.3f}"


@dataclass
class Trio:
    replicas: list[Serve]
    front: Serve


@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trio]:
    root = tmp_path_factory.mktemp("federation")
    factory = ServeFactory(root)
    try:
        replicas = []
        for replica, gap in (("r1", 10), (("r2", 30))):
            bucket = root / replica
            bucket.mkdir()
            # each replica misses a different stretch: dedup must fill it from the other
            t = [START_MS + i * S for i in range(N) if not gap <= i < gap + 5]
            write_raw(bucket, [(lab(__name__="up", job="api", instance=f"i{k}"), t, [1.0] * len(t))
                               for k in range(3)] + [(lab(__name__="reqs_total", job="api"), t,
                                                      [float(10 * (ti - START_MS) // S) for ti in t])],
                      ext={"cluster": "c1", "replica": replica})
            replicas.append(factory("--bucket", str(bucket), wait=False))
        for r in replicas:
            r.wait_ready()
        front = factory(*[a for r in replicas for a in ("--endpoint", r.grpc_address)],
                        "--query.replica-label", "replica", "--endpoint.timeout", "5s")
        yield Trio(replicas, front)
    finally:
        factory.stop_all()


def test_one_series_per_replica_pair(trio: Trio) -> None:
    result = trio.front.api("/api/v1/query", query="up", time=AT)["result"]
    assert [r["metric"] for r in result] == [
        {"__name__": "up", "cluster": "c1", "instance": f"i{k}", "job": "api"} for k in range(3)]
    undeduped = trio.front.api("/api/v1/query", query="up", time=AT, dedup="false")["result"]
    assert len(undeduped) == 6 and {r["metric"]["replica"] for r in undeduped} == {"r1", "r2"}


def test_dedup_fills_gaps_across_replicas(trio: Trio) -> None:
    params = {"query": "reqs_total", "start": f"{START_MS / 1000}", "end": f"{(START_MS + (N - 1) * S) / 1000}",
              "step": "15"}
    merged = trio.front.api("/api/v1/query_range", **params)["result"]
    assert len(merged) == 1 and len(merged[0]["values"]) == N
    for r in trio.replicas:  # each replica alone has the gap bridged only by lookback, with its old value
        alone = r.api("/api/v1/query_range", **params)["result"][0]["values"]
        assert alone != merged[0]["values"]


def test_labels_and_series_through_the_front(trio: Trio) -> None:
    assert trio.front.api("/api/v1/labels") == ["__name__", "cluster", "instance", "job"]
    assert trio.front.api("/api/v1/labels", dedup="false") == ["__name__", "cluster", "instance", "job", "replica"]
    assert trio.front.api("/api/v1/label/replica/values", dedup="false") == ["r1", "r2"]
    series = trio.front.api("/api/v1/series", **{"match[]": "up"})
    assert len(series) == 3 and all("replica" not in s for s in series)


def test_a_replica_down(trio: Trio, tmp_path: Path) -> None:
    front = ServeFactory(tmp_path)
    down = trio.replicas[1]
    try:
        # a fresh front whose second endpoint is a port nobody listens on
        from tests.fixtures_prom import free_port

        s = front("--endpoint", trio.replicas[0].grpc_address, "--endpoint", f"127.0.0.1:{free_port()}",
                  "--query.replica-label", "replica", "--endpoint.timeout", "2s")
        partial = s.get("/api/v1/query", {"query": "up", "time": AT}).json()
        assert partial["status"] == "success" and len(partial["data"]["result"]) == 3
        assert partial["warnings"] and "endpoint" in partial["warnings"][0]
        strict = s.get("/api/v1/query", {"query": "up", "time": AT, "partial_response": "false"})
        assert strict.status >= 500 and strict.json()["status"] == "error"
        assert "Traceback" not in s.stderr()
    finally:
        front.stop_all()
    assert down.get("/-/healthy").status == 200
