"""HTTP details of a real ``serve``: one UTF-8 rule for GET and POST, JSON error envelopes for requests aiohttp
cannot parse or that are too large, and no ``Server`` header naming library versions."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from tests.clihelp import START_MS
from tests.core.test_querier import lab, write_raw
from tests.server.servehelp import Serve, ServeFactory

AT = f"{(START_MS + 60_000) / 1000:.3f}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    root = tmp_path_factory.mktemp("httpdetails")
    (root / "bucket").mkdir()
    t = [START_MS + i * 15_000 for i in range(10)]
    write_raw(root / "bucket", [(lab(__name__="up", job="é"), t, [1.0] * 10)])
    factory = ServeFactory(root)
    try:
        yield factory("--bucket", str(root / "bucket"))
    finally:
        factory.stop_all()


def raw(s: Serve, request: bytes) -> tuple[int, dict[str, str], str]:
    with socket.create_connection(("127.0.0.1", s.http_port), timeout=30) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body.decode()


def test_invalid_utf8_is_refused_alike_by_get_and_post(server: Serve) -> None:
    expected = {"status": "error", "errorType": "bad_data", "error": 'invalid parameter "query": invalid UTF-8'}
    get = raw(server, f"GET /api/v1/query?query=up%ff&time={AT} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
              .encode())
    body = f"query=up%ff&time={AT}".encode()
    post = raw(server, b"POST /api/v1/query HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
               b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: " + str(len(body)).encode() +
               b"\r\n\r\n" + body)
    raw_bytes = raw(server, b"POST /api/v1/query HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                    b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 9\r\n\r\nquery=u\xffp")
    for status, headers, text in (get, post, raw_bytes):
        assert status == 400 and json.loads(text) == expected, (status, text)
        assert headers["content-type"].startswith("application/json")
    # valid UTF-8 (percent-encoded or not) is fine both ways
    for reply in (server.get("/api/v1/query", {"query": 'up{job="é"}', "time": AT}),
                  server.post("/api/v1/query", {"query": 'up{job="é"}', "time": AT})):
        assert reply.status == 200 and len(reply.json()["data"]["result"]) == 1


@pytest.mark.parametrize("request_bytes", [
    b"GARBAGE\r\n\r\n",
    b"GET /api/v1/query HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n",
    b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /api/v1/query HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
])
def test_unparsable_requests_get_the_json_envelope(server: Serve, request_bytes: bytes) -> None:
    status, headers, text = raw(server, request_bytes)
    assert status == 400, text
    body = json.loads(text)
    assert body["status"] == "error" and body["errorType"] == "bad_data" and body["error"]
    assert "\n" not in body["error"]
    assert headers["content-type"].startswith("application/json") and headers["server"] == "thanos-tools"


def test_too_large_body_is_413_json(server: Serve) -> None:
    big = b"query=" + b"1%2B" * 800_000
    reply = server.request("POST", "/api/v1/query", data=big,
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert reply.status == 413
    body = reply.json()
    assert body["status"] == "error" and body["errorType"] == "bad_data" and "body size" in body["error"]


def test_no_server_header_with_versions(server: Serve) -> None:
    for path in ("/-/healthy", "/api/v1/query?query=up", "/nope", "/metrics"):
        reply = server.get(path)
        assert reply.headers.get("Server") == "thanos-tools", (path, reply.headers)
    reply = server.post("/api/v1/status/buildinfo")
    assert reply.status == 405 and reply.headers.get("Server") == "thanos-tools"
