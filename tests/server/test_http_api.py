"""The Prometheus HTTP API of a real ``thanos-tools serve`` process: every endpoint, GET and POST, the exact
envelope and number formats (FORMATS.md §10), error types and status codes, and malformed input."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clihelp import START_MS
from tests.core.test_querier import lab, write_raw
from tests.server.servehelp import Serve, ServeFactory

S = 15_000
N = 41  # 10 minutes of samples
BASE = START_MS // 1000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    root = tmp_path_factory.mktemp("api")
    bucket = root / "bucket"
    bucket.mkdir()
    t = [START_MS + i * S for i in range(N)]
    for replica in ("a", "b"):
        write_raw(bucket, [
            (lab(__name__="up", job="api", instance="i1"), t, [1.0] * N),
            (lab(__name__="up", job="db", instance="i2"), t, [0.0] * N),
            (lab(__name__="reqs_total", job="api", code="200"), t, [float(10 * i) for i in range(N)]),
            (lab(__name__="reqs_total", job="api", code="500"), t, [float(i) for i in range(N)]),
            (lab(__name__="tiny", job="api"), t, [1e-7] * N),
            (lab(__name__="html", job="<a&b>"), t, [1e21] * N),
        ], ext={"cluster": "c1", "replica": replica})
    factory = ServeFactory(root)
    try:
        yield factory("--bucket", str(bucket), "--query.replica-label", "replica")
    finally:
        factory.stop_all()


def at(ms: int) -> str:
    return f"{ms / 1000:.3f}"


# --- envelope and number formats -------------------------------------------------------------------


def test_instant_vector_exact_text(server: Serve) -> None:
    r = server.get("/api/v1/query", {"query": "tiny", "time": at(START_MS + 60_500)})
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.text == ('{"status":"success","data":{"resultType":"vector","result":[{"metric":'
                      f'{{"__name__":"tiny","cluster":"c1","job":"api"}},"value":[{BASE + 60}.500,"1e-07"]}}]}}}}')


def test_dedup_default_and_off(server: Serve) -> None:
    params = {"query": "up", "time": at(START_MS + 60_000)}
    deduped = server.api("/api/v1/query", **params)["result"]
    assert [s["metric"] for s in deduped] == [{"__name__": "up", "cluster": "c1", "instance": "i1", "job": "api"},
                                              {"__name__": "up", "cluster": "c1", "instance": "i2", "job": "db"}]
    both = server.api("/api/v1/query", **params, dedup="false")["result"]
    assert len(both) == 4 and {s["metric"]["replica"] for s in both} == {"a", "b"}
    other = server.api("/api/v1/query", **params, **{"replicaLabels[]": "cluster"})["result"]
    assert len(other) == 4 and all("cluster" not in s["metric"] for s in other)


def test_scalar_string_and_escaping(server: Serve) -> None:
    r = server.get("/api/v1/query", {"query": "1e-7", "time": "300.5"})
    assert r.text == '{"status":"success","data":{"resultType":"scalar","result":[300.5,"0.0000001"]}}'
    r = server.get("/api/v1/query", {"query": '"<a&b>"', "time": "1.234"})
    assert r.text == '{"status":"success","data":{"resultType":"string","result":[1.234,"\\u003ca\\u0026b\\u003e"]}}'
    r = server.get("/api/v1/query", {"query": "html", "time": at(START_MS)})
    assert '"job":"\\u003ca\\u0026b\\u003e"' in r.text and '"1e+21"' in r.text


def test_range_matrix_timestamps_and_stats(server: Serve) -> None:
    params = {"query": "tiny", "start": at(START_MS), "end": at(START_MS + 30_500), "step": "15.25"}
    r = server.get("/api/v1/query_range", params)
    assert r.text == ('{"status":"success","data":{"resultType":"matrix","result":[{"metric":'
                      '{"__name__":"tiny","cluster":"c1","job":"api"},"values":'
                      f'[[{BASE},"1e-07"],[{BASE + 15}.250,"1e-07"],[{BASE + 30}.500,"1e-07"]]}}]}}}}')
    stats = server.api("/api/v1/query_range", **params, stats="all")["stats"]
    assert set(stats["timings"]) == {"evalTotalTime", "resultSortTime", "queryPreparationTime", "innerEvalTime",
                                     "execQueueTime", "execTotalTime"}
    assert stats["samples"] == {"totalQueryableSamplesPerStep": [[BASE, 1], [BASE + 15.25, 1], [BASE + 30.5, 1]],
                                "totalQueryableSamples": 3, "peakSamples": 3}
    timings = stats["timings"]
    assert timings["execTotalTime"] >= timings["evalTotalTime"] >= timings["innerEvalTime"] > 0
    summary = server.api("/api/v1/query_range", **params, stats="1")["stats"]
    assert summary["samples"] == {"totalQueryableSamples": 3, "peakSamples": 3}


def test_post_form_and_body_wins(server: Serve) -> None:
    url_params = {"query": "up", "time": at(START_MS)}
    r = server.request("POST", "/api/v1/query", url_params, data={"query": "tiny"})
    assert r.status == 200 and r.json()["data"]["result"][0]["metric"]["__name__"] == "tiny"
    r = server.post("/api/v1/query_range", {"query": "sum(rate(reqs_total[1m]))", "start": at(START_MS + 120_000),
                                            "end": at(START_MS + 180_000), "step": "1m"})
    assert r.json()["data"]["result"][0]["values"] == [[BASE + 120, "0.7333333333333333"],
                                                       [BASE + 180, "0.7333333333333333"]]


def test_thanos_extras_accepted(server: Serve) -> None:
    params = {"query": "rate(reqs_total[2m])", "start": at(START_MS), "end": at(START_MS + 300_000), "step": "60",
              "engine": "thanos", "partial_response": "false", "max_source_resolution": "auto", "analyze": "true"}
    assert len(server.api("/api/v1/query_range", **params)["result"]) == 2
    for mrs in ("0s", "5m", "1h", "300", "auto"):
        assert server.get("/api/v1/query", {"query": "up", "max_source_resolution": mrs}).status == 200


# --- series and labels -----------------------------------------------------------------------------


def test_series(server: Serve) -> None:
    data = server.api("/api/v1/series", **{"match[]": "up", "start": at(START_MS), "end": at(START_MS + 60_000)})
    assert data == [{"__name__": "up", "cluster": "c1", "instance": "i1", "job": "api"},
                    {"__name__": "up", "cluster": "c1", "instance": "i2", "job": "db"}]
    r = server.post("/api/v1/series", [("match[]", "up"), ("match[]", "tiny"), ("dedup", "false"), ("limit", "3")])
    body = r.json()
    assert len(body["data"]) == 3 and body["warnings"] == ["results truncated due to limit"]
    assert server.api("/api/v1/series", **{"match[]": "nope"}) == []


def test_labels_and_values(server: Serve) -> None:
    assert server.api("/api/v1/labels") == ["__name__", "cluster", "code", "instance", "job"]
    assert server.api("/api/v1/labels", dedup="0") == ["__name__", "cluster", "code", "instance", "job", "replica"]
    assert server.api("/api/v1/labels", **{"match[]": "up"}) == ["__name__", "cluster", "instance", "job"]
    assert server.post("/api/v1/labels", {"match[]": "tiny"}).json()["data"] == ["__name__", "cluster", "job"]
    assert server.api("/api/v1/label/__name__/values") == ["html", "reqs_total", "tiny", "up"]
    assert server.api("/api/v1/label/job/values", **{"match[]": "up"}) == ["api", "db"]
    assert server.api("/api/v1/label/nope/values") == []
    limited = server.get("/api/v1/label/__name__/values", {"limit": "2"}).json()
    assert limited["data"] == ["html", "reqs_total"] and limited["warnings"] == ["results truncated due to limit"]
    far = {"start": "1", "end": "2"}
    assert server.api("/api/v1/label/__name__/values", **far) == []


# --- the other endpoints ---------------------------------------------------------------------------


def test_small_endpoints(server: Serve) -> None:
    assert server.get("/api/v1/metadata").text == '{"status":"success","data":{}}'
    assert server.get("/api/v1/query_exemplars", {"query": "up"}).text == '{"status":"success","data":[]}'
    assert server.post("/api/v1/query_exemplars", {"query": "up"}).text == '{"status":"success","data":[]}'
    info = server.api("/api/v1/status/buildinfo")
    assert list(info) == ["version", "revision", "branch", "buildUser", "buildDate", "goVersion"]
    runtime = server.api("/api/v1/status/runtimeinfo")
    assert {"startTime", "CWD", "reloadConfigSuccess", "lastConfigTime", "corruptionCount"} <= set(runtime)
    flags = server.api("/api/v1/status/flags")
    assert flags["http-address"] == f"127.0.0.1:{server.http_port}" and flags["query.replica-label"] == "replica"
    assert all(isinstance(v, str) for v in flags.values())


def test_format_and_parse_query(server: Serve) -> None:
    assert server.api("/api/v1/format_query", query="sum(rate(up[5m])) by (job)") == "sum by (job) (rate(up[5m]))"
    assert server.post("/api/v1/format_query", {"query": "1+2"}).json()["data"] == "1 + 2"
    tree = server.api("/api/v1/parse_query", query='sum by (job) (rate(up{a="b"}[5m]))')
    assert tree["type"] == "aggregation" and tree["op"] == "sum" and tree["grouping"] == ["job"]
    call = tree["expr"]
    assert call["type"] == "call" and call["func"]["name"] == "rate" and call["func"]["argTypes"] == ["matrix"]
    sel = call["args"][0]
    assert sel["type"] == "matrixSelector" and sel["range"] == 300_000
    assert {"name": "a", "type": "=", "value": "b"} in sel["matchers"]


def test_parse_and_format_a_10000_term_chain(server: Serve) -> None:
    chain = " + ".join(["x"] * 10_000)
    res = server.post("/api/v1/parse_query", {"query": chain})
    assert res.status == 200
    assert res.text.count('"binaryExpr"') == 9_999 and res.text.count('"vectorSelector"') == 10_000
    # Prometheus's pretty printer indents each link of a chain one level deeper: the text grows with n², so 1,000.
    formatted = server.post("/api/v1/format_query", {"query": " + ".join(["x"] * 1_000)})
    assert formatted.status == 200 and formatted.json()["data"].split() == " + ".join(["x"] * 1_000).split()


def test_pages(server: Serve) -> None:
    index = server.get("/")
    assert index.status == 200 and index.headers["Content-Type"].startswith("text/html")
    for link in ("/api/v1/status/buildinfo", "/metrics", "/-/healthy", "/-/ready"):
        assert f'href="{link}"' in index.text
    assert server.get("/-/healthy").status == 200
    assert server.get("/-/ready").status == 200


# --- errors ----------------------------------------------------------------------------------------

ERRORS = [
    ("/api/v1/query", {"query": "sum(up"}, 400, "bad_data",
     'invalid parameter "query": 1:7: parse error: unclosed left parenthesis'),
    ("/api/v1/query", {"query": "up", "time": "abc"}, 400, "bad_data",
     'invalid parameter "time": cannot parse "abc" to a valid timestamp'),
    ("/api/v1/query", {"query": "up", "timeout": "x"}, 400, "bad_data",
     'invalid parameter "timeout": cannot parse "x" to a valid duration'),
    ("/api/v1/query", {"query": "reqs_total + on() reqs_total", "time": at(START_MS)}, 422, "execution", None),
    ("/api/v1/query", {"query": "up", "dedup": "maybe"}, 400, "bad_data",
     '\'dedup\' parameter: strconv.ParseBool: parsing "maybe": invalid syntax'),
    ("/api/v1/query", {"query": "up", "partial_response": "2"}, 400, "bad_data", None),
    ("/api/v1/query", {"query": "up", "max_source_resolution": "-300"}, 400, "bad_data",
     "negative 'max_source_resolution' is not accepted. Try a positive integer"),
    ("/api/v1/query", {"query": "up", "max_source_resolution": "soon"}, 400, "bad_data",
     '\'max_source_resolution\' parameter: cannot parse "soon" to a valid duration'),
    ("/api/v1/query_range", {"query": "up", "start": "10", "end": "5", "step": "1"}, 400, "bad_data",
     'invalid parameter "end": end timestamp must not be before start time'),
    ("/api/v1/query_range", {"query": "up", "start": "1", "end": "5", "step": "0"}, 400, "bad_data",
     'invalid parameter "step": zero or negative query resolution step widths are not accepted. '
     "Try a positive integer"),
    ("/api/v1/query_range", {"query": "up", "start": "0", "end": "100000", "step": "1"}, 400, "bad_data",
     "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"),
    ("/api/v1/query_range", {"query": "up[5m]", "start": "0", "end": "10", "step": "1"}, 400, "bad_data",
     'invalid parameter "query": invalid expression type "range vector" for range query, '
     "must be Scalar or instant Vector"),
    ("/api/v1/query_range", {"query": "up", "end": "10", "step": "1"}, 400, "bad_data",
     'invalid parameter "start": cannot parse "" to a valid timestamp'),
    ("/api/v1/series", {}, 400, "bad_data", "no match[] parameter provided"),
    ("/api/v1/series", {"match[]": '{job=~".*"}'}, 400, "bad_data",
     "match[] must contain at least one non-empty matcher"),
    ("/api/v1/series", {"match[]": "up{"}, 400, "bad_data", None),
    ("/api/v1/labels", {"limit": "-1"}, 400, "bad_data", 'invalid parameter "limit": limit must be non-negative'),
    ("/api/v1/label/1bad/values", {}, 400, "bad_data", 'invalid label name: "1bad"'),
    ("/api/v1/format_query", {"query": ")"}, 400, "bad_data", None),
    ("/api/v1/query_exemplars", {"query": "up", "start": "10", "end": "5"}, 400, "bad_data", None),
]


@pytest.mark.parametrize(("path", "params", "status", "error_type", "message"), ERRORS)
def test_errors(server: Serve, path: str, params: dict[str, str], status: int, error_type: str,
                message: str | None) -> None:
    for reply in (server.get(path, params), server.post(path, params) if "label/" not in path else None):
        if reply is None:
            continue
        body = reply.json()
        assert (reply.status, body["status"], body["errorType"]) == (status, "error", error_type), body
        assert reply.headers.get("Cache-Control") == "no-store"
        if message is not None:
            assert body["error"] == message


def test_unknown_endpoint_and_method(server: Serve) -> None:
    assert server.get("/api/v1/nope").status == 404
    assert server.get("/nope").status == 404
    for method in ("PUT", "DELETE", "PATCH"):
        assert server.request(method, "/api/v1/query", {"query": "up"}).status == 405
    assert server.post("/api/v1/label/job/values").status == 405
    assert server.get("/-/reload").status == 405


def _raw(server: Serve, payload: bytes) -> int:
    """Send raw bytes; the HTTP status of the answer."""
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as sock:
        sock.sendall(payload)
        chunks = []
        while True:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                break
            if not data:
                break
            chunks.append(data)
        head = b"".join(chunks).split(b"\r\n", 1)[0].split()
        return int(head[1])


def test_survives_malformed_requests(server: Serve) -> None:
    assert _raw(server, b"\x00\x01garbage\r\n\r\n") == 400
    assert _raw(server, b"GET /api/v1/query?query=" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n") in (400, 414)
    bad_utf8 = b"GET /api/v1/query?query=%ff%fe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    assert _raw(server, bad_utf8) == 400
    huge = server.request("POST", "/api/v1/query", data=b"query=" + b"1+" * 2_000_000 + b"1",
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert huge.status == 413
    deep = server.post("/api/v1/query", {"query": "(" * 5000 + "1" + ")" * 5000})
    assert deep.status == 400 and deep.json()["errorType"] == "bad_data"
    json_body = server.request("POST", "/api/v1/query", data=b"{}", headers={"Content-Type": "application/json"})
    assert json_body.status == 400
    huge_range = server.get("/api/v1/query", {"query": "count_over_time(up[100y])", "time": at(START_MS + 60_000)})
    assert huge_range.status == 200
    assert server.get("/-/healthy").status == 200
    assert "Traceback" not in server.stderr()


# --- feature flags ----------------------------------------------------------------------------------


def test_experimental_functions_are_refused_without_the_flag(server: Serve) -> None:
    r = server.get("/api/v1/query", {"query": 'sort_by_label(up, "job")', "time": at(START_MS + 60_000)})
    assert r.status == 400
    body = r.json()
    assert body["errorType"] == "bad_data" and 'function "sort_by_label" is not enabled' in body["error"]
    assert server.api("/api/v1/query", query="first_over_time(tiny[1m])", time=at(START_MS + 60_000))["result"]


def test_experimental_functions_with_the_flag(tmp_path: Path) -> None:
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    t = [START_MS + i * S for i in range(N)]
    write_raw(bucket, [(lab(__name__="up", job=job), t, [1.0] * N) for job in ("db", "api")])
    with ServeFactory(tmp_path) as factory:
        flagged = factory("--bucket", str(bucket), "--enable-feature=promql-experimental-functions")
        result = flagged.api("/api/v1/query", query='sort_by_label(up, "job")', time=at(START_MS + 60_000))["result"]
        assert [s["metric"]["job"] for s in result] == ["api", "db"]
        assert flagged.api("/api/v1/status/flags")["enable-feature"] == "promql-experimental-functions"
