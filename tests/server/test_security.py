"""Security and robustness of ``serve``: TLS/mTLS, basic auth (bcrypt), bearer tokens, gRPC mTLS flags,
query limits (timeout, samples, series, concurrency, rate), the query log, tampered chunks."""

from __future__ import annotations

import base64
import json
import shutil
import ssl
import threading
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.clihelp import START_MS
from tests.core.test_querier import lab, write_raw
from tests.fixtures_prom import PROMTOOL, promtool
from tests.grpchelp import Certs, info_client, make_certs
from tests.server.servehelp import BlackHole, Reply, Serve, ServeFactory
from thanostools._proto.info.infopb import rpc_pb2 as info_pb2

S = 15_000
N = 41
USER, PASSWORD = "alice", "correct horse"
TOKEN = "tok-0123456789abcdef"
AT = f"{(START_MS + 600_000) / 1000:.3f}"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("security")
    bucket = root / "bucket"
    bucket.mkdir()
    t = [START_MS + i * S for i in range(N)]
    write_raw(bucket, [(lab(__name__="reqs_total", job="api", code=str(c)), t, [float(i * c) for i in range(N)])
                       for c in (200, 201, 202, 203, 500)], ext={"cluster": "c1"})
    return root


@pytest.fixture(scope="module")
def serves(root: Path) -> Iterator[ServeFactory]:
    with ServeFactory(root) as factory:
        yield factory


@pytest.fixture(scope="module")
def certs(root: Path) -> Certs:
    pytest.importorskip("cryptography")
    return make_certs(root / "certs")


def _client_ctx(certs: Certs, *, cert: bool = True, other: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    if cert:
        pair = (certs.other_client_cert, certs.other_client_key) if other else (certs.client_cert, certs.client_key)
        ctx.load_cert_chain(str(pair[0]), str(pair[1]))
    return ctx


# --- TLS, mTLS and basic auth over HTTP, mTLS over gRPC ----------------------------------------------


@pytest.fixture(scope="module")
def tls_server(root: Path, serves: ServeFactory, certs: Certs) -> Serve:
    import bcrypt

    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode().replace("$2b$", "$2y$")
    web = root / "web-tls.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {certs.server_cert}\n  key_file: {certs.server_key}\n"
                   f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {certs.ca}\n"
                   f"http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
                   f"basic_auth_users:\n  {USER}: '{hashed}'\n")
    if PROMTOOL is not None:
        promtool("check", "web-config", str(web))
    s = serves("--bucket", str(root / "bucket"), "--http.config", str(web), "--grpc-server-tls-cert",
               str(certs.server_cert), "--grpc-server-tls-key", str(certs.server_key), "--grpc-server-tls-client-ca",
               str(certs.ca), wait=False, scheme="https", ssl_context=_client_ctx(certs))
    s.wait_ready(headers=basic(USER, PASSWORD))
    return s


def test_tls_with_client_cert_and_password(tls_server: Serve) -> None:
    ok = tls_server.get("/api/v1/query", {"query": "count(reqs_total)", "time": AT}, headers=basic(USER, PASSWORD))
    assert ok.status == 200 and ok.json()["data"]["result"][0]["value"][1] == "5"
    assert ok.headers["X-Frame-Options"] == "deny"
    for headers in ({}, basic(USER, "wrong"), basic("mallory", PASSWORD), {"Authorization": "Basic !!!"},
                    {"Authorization": f"Bearer {TOKEN}"}):
        refused = tls_server.get("/api/v1/query", {"query": "up"}, headers=headers)
        assert refused.status == 401 and refused.headers["WWW-Authenticate"].startswith("Basic")
    assert tls_server.get("/metrics", headers=basic(USER, "wrong")).status == 401


def test_tls_refuses_clients_without_a_trusted_cert(tls_server: Serve, certs: Certs) -> None:
    for ctx in (_client_ctx(certs, cert=False), _client_ctx(certs, other=True)):
        other = Serve([], tls_server.workdir, scheme="https", ssl_context=ctx, http_port=tls_server.http_port)
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            other.get("/-/healthy", headers=basic(USER, PASSWORD))
    plain = Serve([], tls_server.workdir, http_port=tls_server.http_port)
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        plain.get("/-/healthy")
    assert tls_server.get("/-/healthy", headers=basic(USER, PASSWORD)).status == 200


def test_grpc_mtls_flags(tls_server: Serve, certs: Certs) -> None:
    def info(creds: grpc.ChannelCredentials) -> info_pb2.InfoResponse:
        with grpc.secure_channel(tls_server.grpc_address, creds) as ch:
            return info_client(ch).Info(info_pb2.InfoRequest(), timeout=10)

    good = grpc.ssl_channel_credentials(certs.ca.read_bytes(), certs.client_key.read_bytes(),
                                        certs.client_cert.read_bytes())
    assert info(good).ComponentType == "store"
    for bad in (grpc.ssl_channel_credentials(certs.ca.read_bytes()),
                grpc.ssl_channel_credentials(certs.ca.read_bytes(), certs.other_client_key.read_bytes(),
                                             certs.other_client_cert.read_bytes())):
        with pytest.raises(grpc.RpcError):
            info(bad)


# --- bearer tokens, basic auth without TLS, the query log ------------------------------------------


@pytest.fixture(scope="module")
def token_server(root: Path, serves: ServeFactory) -> Serve:
    import bcrypt

    tokens = root / "tokens"
    tokens.write_text(f"# tokens for the tests\nother-token\n{TOKEN}\n")
    web = root / "web-basic.yml"
    web.write_text(f"basic_auth_users:\n  {USER}: '{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()}'\n")
    s = serves("--bucket", str(root / "bucket"), "--http.bearer-token-file", str(tokens), "--http.config", str(web),
               "--query-log-file", str(root / "query.log"), wait=False)
    s.wait_ready(headers={"Authorization": f"Bearer {TOKEN}"})
    return s


def test_bearer_tokens(token_server: Serve) -> None:
    q = {"query": "count(reqs_total)", "time": AT}
    assert token_server.get("/api/v1/query", q, headers={"Authorization": f"Bearer {TOKEN}"}).status == 200
    assert token_server.get("/api/v1/query", q, headers=basic(USER, PASSWORD)).status == 200
    for wrong in (f"Bearer {TOKEN}x", "Bearer ", f"Bearer {TOKEN[:-1]}", f"Token {TOKEN}"):
        assert token_server.get("/api/v1/query", q, headers={"Authorization": wrong}).status == 401
    assert token_server.get("/api/v1/query", q).status == 401


def test_query_log(token_server: Serve, root: Path) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    token_server.get("/api/v1/query", {"query": "sum(reqs_total)", "time": AT}, headers=auth)
    token_server.get("/api/v1/query_range", {"query": "sum(up", "start": "1", "end": "2", "step": "1"}, headers=auth)
    token_server.post("/api/v1/series", {"match[]": "reqs_total"}, headers=basic(USER, PASSWORD))
    lines = [json.loads(line) for line in (root / "query.log").read_text().splitlines()]
    ok = next(e for e in lines if e.get("query") == "sum(reqs_total)")
    assert ok["endpoint"] == "query" and ok["status"] == 200 and ok["user"] == "token-2"
    assert ok["client"] == "127.0.0.1" and ok["params"] == {"time": AT}
    assert ok["series"] == 5 and ok["samples"] > 0 and ok["duration_s"] >= 0 and ok["time"].endswith("Z")
    bad = next(e for e in lines if e.get("query") == "sum(up")
    assert bad["status"] == 400 and bad["error_type"] == "bad_data" and bad["endpoint"] == "query_range"
    series = next(e for e in lines if e["endpoint"] == "series")
    assert series["user"] == USER and series["params"] == {"match[]": "reqs_total"}


# --- limits ----------------------------------------------------------------------------------------


def _concurrently(s: Serve, queries: list[dict[str, str]]) -> list[Reply]:
    replies: list[Reply | None] = [None] * len(queries)

    def run(i: int) -> None:
        replies[i] = s.get("/api/v1/query", queries[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(queries))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(r is not None for r in replies)
    return [r for r in replies if r is not None]


def _drain(s: Serve) -> None:
    """Wait until no query runs: interrupted queries leave their slots once their current step is done."""
    deadline = time.monotonic() + 30
    while "thanos_tools_queries_running 0.0" not in s.get("/metrics").text:
        assert time.monotonic() < deadline, "queries still running"
        time.sleep(0.05)


def test_limits_trip_cleanly(root: Path, serves: ServeFactory) -> None:
    s = serves("--bucket", str(root / "bucket"), "--query.max-samples", "1000", "--query.max-series", "3")
    samples = s.get("/api/v1/query", {"query": 'count_over_time(reqs_total{code="200"}[1h:100ms])', "time": AT})
    assert samples.status == 422 and samples.json()["errorType"] == "execution"
    assert "too many samples" in samples.json()["error"]
    series = s.get("/api/v1/query", {"query": "reqs_total", "time": AT})
    assert series.status == 422 and "too many series" in series.json()["error"]
    timeout = s.get("/api/v1/query", {"query": 'reqs_total{code="200"}', "time": AT, "timeout": "0s"})
    assert timeout.status == 503 and timeout.json()["errorType"] == "timeout"
    assert timeout.json()["error"].startswith("query timed out in ")
    # a query over a limit fails alone: the one next to it is answered
    both = _concurrently(s, [{"query": "reqs_total", "time": AT}, {"query": 'reqs_total{code="200"}', "time": AT},
                             {"query": 'reqs_total{code="201"}', "time": AT, "timeout": "0s"}])
    assert [r.status for r in both] == [422, 200, 503]
    assert s.get("/-/healthy").status == 200


def test_concurrency_queue_then_503(root: Path, serves: ServeFactory) -> None:
    """Queries held up by an endpoint that never answers fill the slots and the queue; the rest get 503."""
    hole = BlackHole()
    try:
        s = serves("--bucket", str(root / "bucket"), "--endpoint", hole.address, "--endpoint.timeout", "3s",
                   "--query.timeout", "1s", "--query.max-concurrent", "2")
        replies = _concurrently(s, [{"query": "count(reqs_total)", "time": AT}] * 12)
        assert {r.status for r in replies} == {503}
        kinds = [r.json()["errorType"] for r in replies]
        assert kinds.count("timeout") == 2 and kinds.count("unavailable") == 10, kinds
        busy = [r.json()["error"] for r in replies if r.json()["errorType"] == "unavailable"]
        assert all(e.startswith("server busy") for e in busy)
        assert 'thanos_tools_queries_rejected_total{reason="concurrency"} 10.0' in s.get("/metrics").text
        _drain(s)  # the held queries end with the endpoint timeout and free their slots
        assert s.get("/api/v1/status/buildinfo").status == 200
    finally:
        hole.close()


def test_rate_limit_429(root: Path, serves: ServeFactory) -> None:
    s = serves("--bucket", str(root / "bucket"), "--query.rate-limit", "0.05:2")
    q = {"query": "count(reqs_total)", "time": AT}
    statuses = [s.get("/api/v1/query", q) for _ in range(4)]
    assert [r.status for r in statuses[:2]] == [200, 200]
    limited = statuses[2]
    assert limited.status == 429 and int(limited.headers["Retry-After"]) >= 1
    assert "rate limit" in limited.json()["error"]
    assert s.get("/api/v1/status/buildinfo").status == 200  # cheap endpoints are not limited
    assert s.get("/-/healthy").status == 200


# --- integrity -------------------------------------------------------------------------------------


def test_tampered_chunk(root: Path, serves: ServeFactory, tmp_path: Path) -> None:
    bucket = tmp_path / "bucket"
    shutil.copytree(root / "bucket", bucket)
    block = next(p for p in bucket.iterdir() if (p / "meta.json").exists())
    seg = block / "chunks" / "000001"
    data = bytearray(seg.read_bytes())
    data[8 + 10] ^= 0xFF
    seg.write_bytes(bytes(data))
    s = serves("--bucket", str(bucket))
    q = {"query": "count(reqs_total)", "time": AT}
    warned = s.get("/api/v1/query", q).json()
    assert warned["status"] == "success" and block.name in warned["warnings"][0]
    assert "checksum mismatch" in warned["warnings"][0]
    failed = s.get("/api/v1/query", {**q, "partial_response": "false"})
    assert failed.status == 500 and failed.json()["errorType"] == "internal" and block.name in failed.json()["error"]
    assert "security=checksum_mismatch" in s.stderr() and block.name in s.stderr()
    assert 'thanos_tools_security_events_total{kind="checksum"}' in s.get("/metrics").text
    assert "Traceback" not in s.stderr()
