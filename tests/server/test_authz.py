"""Authorization (``--http.authz-config-file``): tenants see only their series over HTTP and gRPC (mTLS CN),
``/-/reload`` needs admin; plus the matcher injection as a property over random queries."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TypedDict

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.clihelp import START_MS
from tests.core.test_querier import lab, write_raw
from tests.grpchelp import Certs, labels_of, make_certs, matcher, series_of, store_client
from tests.server.servehelp import Serve, ServeFactory, subprocess_env
from thanostools._proto.store.storepb import rpc_pb2, types_pb2
from thanostools.core.errors import ConfigError
from thanostools.core.matchers import Matcher, MatchType
from thanostools.core.promql.parser.ast import MatrixSelector, VectorSelector, walk
from thanostools.core.promql.parser.parse import parse_expr
from thanostools.core.promql.parser.printer import pretty
from thanostools.server.authz import load_authz_config, restrict_expr

S = 15_000
N = 21
AT = f"{(START_MS + 300_000) / 1000:.3f}"
PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "root": "root-pw", "mallory": "mallory-pw"}
POLICIES = """users:
  alice: {matchers: ['{tenant="alice"}']}
  bob: {matchers: ['{tenant="bob"}', '{job!="secret"}']}
  root: {admin: true}
"""


def basic(user: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{PASSWORDS[user]}".encode()).decode()}


# --- unit: config and matcher injection ------------------------------------------------------------


def test_config_parsing(tmp_path: Path) -> None:
    path = tmp_path / "authz.yml"
    path.write_text(POLICIES)
    config = load_authz_config(str(path))
    assert config is not None
    assert [str(m) for m in config.users["bob"].matchers] == ['tenant="bob"', 'job!="secret"']
    assert config.users["root"].admin and not config.users["root"].matchers and not config.users["alice"].admin
    for text, message in [("users: {alice: {matcher: ['{a=\"b\"}']}}", "unknown field 'matcher'"),
                          ("tenants: {}", "unknown field 'tenants'"),
                          ("users: {alice: {matchers: ['{a=']}}", "users.alice.matchers"),
                          ("users: {alice: {admin: yes please}}", "admin must be true or false"),
                          ("users: [alice]", "users must be a mapping"),
                          ("users: {alice: {matchers: '{a=\"b\"}'}}", "must be a list")]:
        path.write_text(text)
        with pytest.raises(ConfigError, match=message):
            load_authz_config(str(path))


TENANT = (Matcher(MatchType.EQ, "tenant", "alice"), Matcher(MatchType.NRE, "env", "dev|test"))
_NAMES = st.sampled_from(["up", "http_requests_total", "node_cpu_seconds_total"])
_MATCHERS = st.lists(st.tuples(st.sampled_from(["tenant", "job", "env"]), st.sampled_from(["=", "!=", "=~", "!~"]),
                               st.sampled_from(["alice", "bob", ".+", ".*", "a|b"])), max_size=3)


_OFFSETS = st.sampled_from(["", " offset 5m", " @ 100"])


@st.composite
def _selector(draw: st.DrawFn) -> str:
    """A selector without modifiers (they go after a range, so callers add them)."""
    name = draw(st.one_of(st.none(), _NAMES))
    ms = draw(_MATCHERS)
    if name is None and not any(op in ("=", "=~") and v in ("alice", "bob", ".+") for _, op, v in ms):
        ms = [*ms, ("job", "=~", ".+")]
    body = ",".join(f'{n}{op}"{v}"' for n, op, v in ms)
    return f"{name or ''}{{{body}}}" if body or not name else name


SELECTOR = _selector()


def _expr(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.builds(lambda a, b, op: f"{a} {op} {b}", children, children, st.sampled_from(["+", "and", "or", "/"])),
        st.builds(lambda a, agg: f"{agg} by (job) ({a})", children, st.sampled_from(["sum", "max", "count"])),
        st.builds(lambda a, b: f"topk(scalar({b}), {a})", children, children),
        st.builds(lambda a: f"({a})", children),
        st.builds(lambda a: f"-{a}", children),
        st.builds(lambda s, o: f"rate({s}[5m]{o})", SELECTOR, _OFFSETS),
        st.builds(lambda a: f"max_over_time(({a})[10m:1m])", children),
        st.builds(lambda a: f'label_replace({a}, "x", "$1", "job", "(.*)")', children),
        st.builds(lambda s: f"absent({s})", SELECTOR),
    )


QUERIES = st.recursive(st.one_of(st.builds(lambda s, o: s + o, SELECTOR, _OFFSETS), st.just("vector(1)")), _expr,
                       max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(QUERIES)
def test_every_selector_of_a_rewritten_query_carries_the_tenant_matchers(query: str) -> None:
    expr = parse_expr(query)
    restricted = restrict_expr(expr, TENANT)
    before = [n for n in walk(expr) if isinstance(n, VectorSelector)]
    after = [n for n in walk(restricted) if isinstance(n, VectorSelector)]
    assert len(after) == len(before)
    for old, new in zip(before, after, strict=True):
        assert new.matchers == (*old.matchers, *TENANT)
        assert (new.name, new.offset, new.timestamp) == (old.name, old.offset, old.timestamp)
    assert all(isinstance(n.vector_selector, VectorSelector) for n in walk(restricted) if isinstance(n, MatrixSelector))
    assert restrict_expr(parse_expr(pretty(restricted)), ()) == restricted  # still a valid query, same meaning
    assert pretty(restrict_expr(expr, ())) == pretty(expr)


# --- real serve: HTTP and gRPC ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import bcrypt

    root = tmp_path_factory.mktemp("authz")
    bucket = root / "bucket"
    bucket.mkdir()
    t = [START_MS + i * S for i in range(N)]
    series = [(lab(__name__="up", tenant=tenant, job=job), t, [float(k)] * N)
              for k, (tenant, job) in enumerate([("alice", "api"), ("alice", "db"), ("bob", "api"),
                                                 ("bob", "secret"), ("carol", "api")])]
    series.append((lab(__name__="up", job="shared"), t, [9.0] * N))  # no tenant label at all
    write_raw(bucket, series)
    hashed = {u: bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode() for u, p in PASSWORDS.items()}
    (root / "web.yml").write_text("basic_auth_users:\n" + "".join(f"  {u}: '{h}'\n" for u, h in hashed.items()))
    (root / "authz.yml").write_text(POLICIES)
    return root


@pytest.fixture(scope="module")
def certs(root: Path) -> Certs:
    pytest.importorskip("cryptography")
    return make_certs(root / "certs", clients=["alice", "bob"])


@pytest.fixture(scope="module")
def server(root: Path, certs: Certs) -> Iterator[Serve]:
    factory = ServeFactory(root)
    try:
        s = factory("--bucket", str(root / "bucket"), "--http.config", str(root / "web.yml"),
                    "--http.authz-config-file", str(root / "authz.yml"), "--query-log-file", str(root / "query.log"),
                    "--grpc-server-tls-cert", str(certs.server_cert), "--grpc-server-tls-key", str(certs.server_key),
                    "--grpc-server-tls-client-ca", str(certs.ca), wait=False)
        s.wait_ready(headers=basic("root"))
        yield s
    finally:
        factory.stop_all()


class VectorRow(TypedDict):
    """One element of an instant query's vector result, as the JSON API sends it."""

    metric: dict[str, str]
    value: list[float | str]  # [unix seconds, "sample value"]


def tenants_of(result: list[VectorRow]) -> list[tuple[str, str]]:
    return sorted((r["metric"].get("tenant", ""), r["metric"].get("job", "")) for r in result)


def query(s: Serve, user: str, q: str, *, post: bool = False,
          headers: Mapping[str, str] | None = None) -> list[VectorRow]:
    params = {"query": q, "time": AT}
    sent = {**basic(user), **(headers or {})}
    reply = s.post("/api/v1/query", params, headers=sent) if post else s.get("/api/v1/query", params, headers=sent)
    body = reply.json()
    assert reply.status == 200 and body["status"] == "success", (reply.status, body)
    result: list[VectorRow] = body["data"]["result"]
    return result


def test_tenants_see_only_their_series(server: Serve) -> None:
    alice = [("alice", "api"), ("alice", "db")]
    assert tenants_of(query(server, "alice", "up")) == alice
    assert tenants_of(query(server, "alice", '{tenant=~".+"}')) == alice
    assert tenants_of(query(server, "alice", '{__name__=~".+"}', post=True)) == alice
    assert query(server, "alice", 'up{tenant="bob"}') == []
    assert query(server, "alice", 'up{tenant!="alice"}') == []
    assert query(server, "alice", 'up{job="shared"}') == []
    assert query(server, "alice", 'max_over_time(up{tenant="bob"}[5m:1m])') == []
    assert query(server, "alice", 'up or on() vector(1) * up{tenant="carol"}') != []  # only alice's rows
    assert tenants_of(query(server, "alice", 'up or up{tenant="carol"}')) == alice
    assert query(server, "alice", "count(up)")[0]["value"][1] == "2"
    assert query(server, "alice", 'absent(up{tenant="bob"})')[0]["value"][1] == "1"
    # headers a tenancy proxy might read change nothing
    assert tenants_of(query(server, "alice", "up", headers={"X-Scope-OrgID": "bob", "THANOS-TENANT": "bob"})) == alice
    # several selector strings are ANDed: bob never sees job="secret"
    assert tenants_of(query(server, "bob", "up")) == [("bob", "api")]
    assert query(server, "bob", 'up{job="secret"}') == []
    # a user without matchers (the admin) sees everything
    assert len(query(server, "root", "up")) == 6
    reply = server.get("/api/v1/query_range", {"query": '{tenant=~".+"}', "start": AT, "end": AT, "step": "15"},
                       headers=basic("alice"))
    assert tenants_of(reply.json()["data"]["result"]) == alice


def test_series_and_label_endpoints_are_restricted(server: Serve) -> None:
    def data(path: str, user: str, **params: str) -> list[object]:
        replies = [server.get(path, params, headers=basic(user))]
        if "/label/" not in path:  # label values is GET only, as in Prometheus
            replies.append(server.post(path, params, headers=basic(user)))
        for reply in replies:
            assert reply.status == 200, reply.text
            assert reply.json() == replies[0].json()
        result: list[object] = reply.json()["data"]
        return result

    series = data("/api/v1/series", "alice", **{"match[]": '{tenant=~".+"}'})
    assert sorted(s["job"] for s in series) == ["api", "db"]  # type: ignore[index]
    assert data("/api/v1/series", "alice", **{"match[]": '{job="shared"}'}) == []
    assert data("/api/v1/label/tenant/values", "alice") == ["alice"]
    assert data("/api/v1/label/job/values", "bob") == ["api"]
    assert data("/api/v1/label/job/values", "alice", **{"match[]": '{tenant="bob"}'}) == []
    assert data("/api/v1/labels", "alice", **{"match[]": "up"}) == ["__name__", "job", "tenant"]
    assert data("/api/v1/label/tenant/values", "root") == ["alice", "bob", "carol"]


def test_users_without_a_policy_are_refused(server: Serve) -> None:
    for path, params in [("/api/v1/query", {"query": "up", "time": AT}), ("/api/v1/series", {"match[]": "up"}),
                         ("/api/v1/labels", {}), ("/api/v1/label/job/values", {}),
                         ("/api/v1/query_exemplars", {"query": "up"}),
                         ("/api/v1/query_range", {"query": "up", "start": AT, "end": AT, "step": "15"})]:
        reply = server.get(path, params, headers=basic("mallory"))
        assert reply.status == 403, (path, reply.text)
        assert reply.json() == {"status": "error", "errorType": "forbidden",
                                "error": "user 'mallory' has no authorization policy"}
    assert "security=forbidden" in server.stderr()


def test_query_log_names_the_identity(server: Serve, root: Path) -> None:
    query(server, "bob", "sum(up) by (job)")
    entries = [json.loads(line) for line in (root / "query.log").read_text().splitlines()]
    mine = [e for e in entries if e.get("query") == "sum(up) by (job)"]
    assert mine and mine[-1]["user"] == "bob" and mine[-1]["status"] == 200


# --- gRPC with the mTLS CN as identity --------------------------------------------------------------


def _channel(server: Serve, certs: Certs, cn: str | None) -> grpc.Channel:
    key, cert = (certs.client_key, certs.client_cert) if cn is None else \
        (certs.ca.parent / f"{cn}.key", certs.ca.parent / f"{cn}.crt")
    creds = grpc.ssl_channel_credentials(certs.ca.read_bytes(), key.read_bytes(), cert.read_bytes())
    return grpc.secure_channel(server.grpc_address, creds)


def _grpc_series(server: Serve, certs: Certs, cn: str | None, *ms: types_pb2.LabelMatcher) -> list[tuple[str, str]]:
    with _channel(server, certs, cn) as ch:
        req = rpc_pb2.SeriesRequest(min_time=START_MS, max_time=START_MS + N * S, matchers=list(ms))
        found = [dict(labels_of(s)) for s in series_of(list(store_client(ch).Series(req, timeout=60)))]
    return sorted((f.get("tenant", ""), f.get("job", "")) for f in found)


def test_grpc_store_api_is_restricted_by_client_certificate(server: Serve, certs: Certs, root: Path) -> None:
    any_tenant = matcher("tenant", ".+", types_pb2.LabelMatcher.RE)
    name = matcher("__name__", "up")
    assert _grpc_series(server, certs, "alice", any_tenant) == [("alice", "api"), ("alice", "db")]
    assert _grpc_series(server, certs, "alice", name, matcher("tenant", "bob")) == []
    assert _grpc_series(server, certs, "bob", name) == [("bob", "api")]
    with _channel(server, certs, "alice") as ch:
        stub = store_client(ch)
        values = stub.LabelValues(rpc_pb2.LabelValuesRequest(label="tenant", start=START_MS, end=START_MS + N * S),
                                  timeout=60)
        assert list(values.values) == ["alice"]
        names = stub.LabelNames(rpc_pb2.LabelNamesRequest(start=START_MS, end=START_MS + N * S, matchers=[name]),
                                timeout=60)
        assert list(names.names) == ["__name__", "job", "tenant"]
    with pytest.raises(grpc.RpcError) as err:  # CN "client" has no policy
        _grpc_series(server, certs, None, name)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    entries = [json.loads(line) for line in (root / "query.log").read_text().splitlines()]
    assert any(e["endpoint"] == "grpc/Series" and e["user"] == "alice" for e in entries)


# --- reload ----------------------------------------------------------------------------------------


def test_reload_needs_admin_and_reloads_the_policies(server: Serve, root: Path) -> None:
    assert server.post("/-/reload", headers=basic("alice")).status == 403
    assert server.post("/-/reload", headers=basic("mallory")).status == 403
    (root / "authz.yml").write_text(POLICIES.replace('tenant="alice"', 'tenant="carol"'))
    try:
        assert server.post("/-/reload", headers=basic("root")).status == 200
        assert tenants_of(query(server, "alice", "up")) == [("carol", "api")]
        (root / "authz.yml").write_text(POLICIES + "  eve: {matchers: [], tenant: x}\n")
        bad = server.post("/-/reload", headers=basic("root"))
        assert bad.status == 500 and "unknown field 'tenant'" in bad.text
        assert tenants_of(query(server, "alice", "up")) == [("carol", "api")]  # the old policies stay
    finally:
        (root / "authz.yml").write_text(POLICIES)
    statuses = [server.post("/-/reload", headers=basic("root")).status for _ in range(6)]
    assert statuses[0] in (200, 429) and 429 in statuses  # rate limited
    assert set(statuses) <= {200, 429}


def test_unknown_keys_fail_at_startup_with_exit_2(root: Path, tmp_path: Path) -> None:
    bad = tmp_path / "authz.yml"
    bad.write_text("users: {alice: {matchers: ['{tenant=\"alice\"}'], role: admin}}\n")
    res = subprocess.run([sys.executable, "-m", "thanostools", "serve", "--bucket", str(root / "bucket"),
                          "--http.authz-config-file", str(bad), "--http-address", "127.0.0.1:0", "--grpc-address", ""],
                         capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"error: --http.authz-config-file {bad}: users.alice: unknown field 'role' (use matchers, admin)"]
