"""The ``serve`` daemon: readiness, block syncs without restarts, reload (HTTP and SIGHUP), sharding,
graceful shutdown, self-metrics, logs, bad configuration, and that it never writes to the bucket."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.clihelp import START_MS, run_cli
from tests.core.test_querier import lab, write_raw
from tests.fixtures_prom import free_port
from tests.server.servehelp import BlackHole, Reply, Serve, ServeFactory

S = 15_000
N = 41
H2 = 7_200_000
AT = f"{(START_MS + 300_000) / 1000:.3f}"


def add_block(bucket: Path, cluster: str, offset_ms: int = 0, name: str = "up") -> str:
    t = [START_MS + offset_ms + i * S for i in range(N)]
    return write_raw(bucket, [(lab(__name__=name, job="api"), t, [1.0] * N)], ext={"cluster": cluster})


def clusters(s: Serve, query: str = "up") -> list[str]:
    result = s.api("/api/v1/query", query=f"count by (cluster) ({query})", time=AT)["result"]
    return sorted(r["metric"]["cluster"] for r in result)


def eventually(check: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def snapshot(bucket: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(bucket)): (p.stat().st_size, p.stat().st_mtime_ns) for p in bucket.rglob("*")}


@pytest.fixture
def serves(tmp_path: Path) -> Iterator[ServeFactory]:
    with ServeFactory(tmp_path) as factory:
        yield factory


@pytest.fixture
def bucket(tmp_path: Path) -> Path:
    b = tmp_path / "bucket"
    b.mkdir()
    add_block(b, "a")
    return b


def test_blocks_come_and_go_without_restart(bucket: Path, serves: ServeFactory) -> None:
    before = snapshot(bucket)
    s = serves("--bucket", str(bucket), "--sync-interval", "500ms")
    assert clusters(s) == ["a"]
    ulid_b = add_block(bucket, "b")
    eventually(lambda: clusters(s) == ["a", "b"])
    (bucket / ulid_b / "deletion-mark.json").write_text(
        json.dumps({"id": ulid_b, "deletion_time": int(time.time()), "version": 1}))
    eventually(lambda: clusters(s) == ["a"])
    ulid_c = add_block(bucket, "c")
    eventually(lambda: clusters(s) == ["a", "c"])
    shutil.rmtree(bucket / ulid_c)
    eventually(lambda: clusters(s) == ["a"])
    assert s.stop() == 0
    after = snapshot(bucket)
    assert {k: v for k, v in after.items() if ulid_b not in k} == {k: v for k, v in before.items()}


def test_reload_http_and_sighup(bucket: Path, serves: ServeFactory, tmp_path: Path) -> None:
    relabel = tmp_path / "relabel.yml"
    relabel.write_text("- action: drop\n  source_labels: [cluster]\n  regex: z\n")
    s = serves("--bucket", str(bucket), "--sync-interval", "1h", "--selector.relabel-config-file", str(relabel))
    add_block(bucket, "b")
    add_block(bucket, "z")
    assert clusters(s) == ["a"]
    reply = s.post("/-/reload")
    assert reply.status == 200
    assert clusters(s) == ["a", "b"]
    relabel.write_text("- action: keep\n  source_labels: [cluster]\n  regex: a|z\n")
    s.signal(signal.SIGHUP)
    eventually(lambda: clusters(s) == ["a", "z"])
    relabel.write_text("- action: nonsense\n")
    bad = s.post("/-/reload")
    assert bad.status == 500 and "failed to reload config" in bad.text
    assert clusters(s) == ["a", "z"]  # the old config stays
    assert s.api("/api/v1/status/runtimeinfo")["reloadConfigSuccess"] is False
    assert s.get("/-/healthy").status == 200
    assert 'thanos_tools_config_reloads_total{result="error"} 1.0' in s.get("/metrics").text


def test_hashmod_sharding_splits_the_bucket(bucket: Path, serves: ServeFactory, tmp_path: Path) -> None:
    for c in "bcdefgh":
        add_block(bucket, c)
    shards = []
    for i in range(2):
        cfg = tmp_path / f"shard{i}.yml"
        cfg.write_text("- action: hashmod\n  source_labels: [cluster]\n  modulus: 2\n  target_label: __shard\n"
                       f"- action: keep\n  source_labels: [__shard]\n  regex: '{i}'\n")
        shards.append(serves("--bucket", str(bucket), "--selector.relabel-config-file", str(cfg), wait=False))
    for s in shards:
        s.wait_ready()
    seen = [clusters(s) for s in shards]
    assert sorted(seen[0] + seen[1]) == list("abcdefgh") and seen[0] and seen[1]


def test_time_sharding(bucket: Path, serves: ServeFactory) -> None:
    add_block(bucket, "late", offset_ms=2 * H2)
    s = serves("--bucket", str(bucket), "--min-time", str(START_MS + H2))
    assert clusters(s) == []
    late = s.api("/api/v1/query", query="count by (cluster) (up)", time=f"{(START_MS + 2 * H2 + 60_000) / 1000}")
    assert [r["metric"]["cluster"] for r in late["result"]] == ["late"]


def test_not_ready_until_first_sync(tmp_path: Path, serves: ServeFactory) -> None:
    dead = free_port()
    cfg = tmp_path / "s3.yml"
    cfg.write_text(f"type: S3\nconfig:\n  bucket: nope\n  endpoint: 127.0.0.1:{dead}\n  insecure: true\n"
                   "  access_key: x\n  secret_key: y\n  region: us-east-1\n")
    s = serves("--objstore.config-file", str(cfg), wait=False)
    eventually(lambda: _alive(s) and s.get("/-/healthy").status == 200)
    assert s.get("/-/ready").status == 503
    reply = s.get("/api/v1/query", {"query": "up"})
    assert reply.status == 503 and reply.json()["errorType"] == "unavailable"
    eventually(lambda: "block sync failed" in s.stderr())
    assert "Traceback" not in s.stderr()


def _alive(s: Serve) -> bool:
    try:
        return s.get("/-/healthy", timeout=2).status == 200
    except OSError:
        return False


def test_graceful_sigterm(bucket: Path, serves: ServeFactory) -> None:
    hole = BlackHole()  # an endpoint that never answers keeps the query in flight for --endpoint.timeout
    s = serves("--bucket", str(bucket), "--grace-period", "20s", "--endpoint", hole.address, "--endpoint.timeout",
               "3s")
    replies: list[Reply] = []
    query = {"query": "count(up)", "time": AT}
    worker = threading.Thread(target=lambda: replies.append(s.get("/api/v1/query", query)))
    worker.start()
    eventually(lambda: "thanos_tools_queries_running 1.0" in s.get("/metrics").text, timeout=10)
    s.signal(signal.SIGTERM)
    worker.join(60)
    hole.close()
    assert replies and replies[0].status == 200 and replies[0].json()["data"]["result"][0]["value"][1] == "1"
    assert "endpoint" in replies[0].json()["warnings"][0]
    assert s.proc is not None and s.proc.wait(30) == 0
    assert not _alive(s)
    log = s.stderr()
    assert 'msg="shutting down"' in log and "msg=stopped" in log


def test_metrics_and_json_logs(bucket: Path, serves: ServeFactory, tmp_path: Path) -> None:
    s = Serve(["--bucket", str(bucket)], tmp_path)
    s.args = []
    serves.started.append(s)
    cmd_args = ["--log.format", "json"]
    s.proc = subprocess.Popen([sys.executable, "-m", "thanostools", *cmd_args, "serve", "--bucket", str(bucket),
                               "--http-address", f"127.0.0.1:{s.http_port}", "--grpc-address", s.grpc_address],
                              stdout=subprocess.DEVNULL, stderr=open(s.log, "wb"), cwd=tmp_path)  # noqa: SIM115
    s.wait_ready()
    s.get("/api/v1/query", {"query": "up", "time": AT})
    s.get("/api/v1/query", {"query": "sum("})
    text = s.get("/metrics").text
    for needle in ('thanos_tools_http_requests_total{code="200",handler="/api/v1/query",method="GET"} 1.0',
                   'thanos_tools_http_requests_total{code="400",handler="/api/v1/query",method="GET"} 1.0',
                   'thanos_tools_http_request_duration_seconds_bucket{code="200",handler="/api/v1/query",le="+Inf"}',
                   'thanos_tools_query_duration_seconds_count{endpoint="query"} 1.0',
                   "thanos_tools_blocks_loaded 1.0", "thanos_tools_bucket_fetched_bytes_total",
                   'thanos_tools_cache_hits_total{cache="memory"}', "thanos_tools_grpc_calls_total",
                   'thanos_tools_block_syncs_total{result="success"}', "process_resident_memory_bytes",
                   'thanos_tools_build_info{version="'):
        assert needle in text, needle
    lines = [json.loads(line) for line in s.stderr().splitlines() if line.strip()]
    assert {"serving", "ready"} <= {line["msg"] for line in lines}
    assert all({"ts", "level", "msg"} <= set(line) for line in lines)


BAD_FLAGS = [
    (["--http-address", "nonsense"], 2, "--http-address"),
    (["--http.config", "/nonexistent/web.yml"], 2, "--http.config"),
    (["--query.rate-limit", "fast"], 2, "--query.rate-limit"),
    (["--grpc-server-tls-cert", "/x.crt"], 2, "--grpc-server-tls-key"),
    (["--min-time", "yesterday-ish"], 2, "invalid time"),
    (["--endpoint", "no-port"], 2, "--endpoint"),
    (["--sync-interval", "0s"], 2, "--sync-interval"),
    (["--cache.max-bytes", "lots"], 2, "--cache.max-bytes"),
]


@pytest.mark.parametrize(("args", "code", "needle"), BAD_FLAGS)
def test_bad_flags(bucket: Path, args: list[str], code: int, needle: str) -> None:
    """Rejected before anything listens, so the command can run in-process."""
    res = run_cli("serve", "--bucket", str(bucket), "--http-address", f"127.0.0.1:{free_port()}",
                  "--grpc-address", f"127.0.0.1:{free_port()}", *args)
    assert res.exit_code == code, res.stderr
    assert needle in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_port_in_use(bucket: Path, serves: ServeFactory) -> None:
    first = serves("--bucket", str(bucket))
    res = run_cli("serve", "--bucket", str(bucket), "--http-address", f"127.0.0.1:{first.http_port}",
                  "--grpc-address", f"127.0.0.1:{free_port()}")
    assert res.exit_code == 1 and "cannot listen for HTTP" in res.stderr and "Traceback" not in res.stderr
