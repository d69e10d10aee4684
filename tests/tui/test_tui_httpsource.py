"""The HTTP API source against a real Prometheus (on promtool-made blocks) and a stub server for auth/errors."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.clihelp import START_MS, make_openmetrics
from tests.fixtures_prom import PrometheusServer, promtool_create_blocks
from tests.tui.tuihelp import make_app, settle
from thanostools.core.errors import ConfigError, QueryError, SourceError
from thanostools.tui.httpsource import HttpAuth, PromHTTPClient
from thanostools.tui.sources import CancelToken, HttpSource, QuerySettings
from thanostools.tui.widgets.table import ResultTable

AT = START_MS + 3_600_000


@pytest.fixture(scope="module")
def prom_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from tests.fixtures_prom import PROMETHEUS, PROMTOOL

    if PROMETHEUS is None or PROMTOOL is None:
        pytest.skip("prometheus/promtool not installed")
    root = tmp_path_factory.mktemp("prom")
    data = promtool_create_blocks(make_openmetrics(series=40, hours=2.0), root / "data")
    server = PrometheusServer(data, root)
    try:
        yield server.url
    finally:
        server.stop()


def test_queries_and_labels_against_prometheus(prom_url: str) -> None:
    source = HttpSource(PromHTTPClient(prom_url))
    out = source.instant('count by (job) ({__name__=~".+"})', AT, QuerySettings(), CancelToken())
    assert out.result.result_type == "vector" and out.series_count > 1
    body = json.loads(out.raw_json)  # the Raw tab shows the server's own bytes
    assert body["status"] == "success" and len(body["data"]["result"]) == out.series_count
    # The stats line shows Prometheus's own totalQueryableSamples and peakSamples (asked for with stats=all).
    assert out.samples_what == "samples queried"
    assert out.samples == body["data"]["stats"]["samples"]["totalQueryableSamples"] > 0
    assert out.peak_samples == body["data"]["stats"]["samples"]["peakSamples"]
    rng = source.range("up", AT - 600_000, AT, 60_000, QuerySettings(), CancelToken())
    assert rng.result.result_type == "matrix" and all(s.t.shape[0] == 11 for s in rng.result.series)
    assert rng.result.series[0].t[0] == AT - 600_000
    scalar = source.instant("1 + 1", AT, QuerySettings(), CancelToken())
    assert scalar.result.scalar == (AT, 2.0)
    names = source.label_names(None, START_MS, AT)
    assert "__name__" in names and "job" in names
    assert "up" in source.label_values("__name__", None, START_MS, AT)
    jobs = source.label_values("job", "up", START_MS, AT)
    assert jobs and jobs == sorted(jobs)
    counts = source.metric_counts(START_MS, AT)
    assert counts["up"] == len(source.instant("up", AT, QuerySettings(), CancelToken()).result.series)
    with pytest.raises(QueryError, match="parse error"):
        source.instant("sum(", AT, QuerySettings(), CancelToken())


def test_console_over_the_http_source(prom_url: str, tmp_path: Path) -> None:
    app = make_app(None, tmp_path, source=HttpSource(PromHTTPClient(prom_url)), now=AT)

    async def main() -> None:
        async with app.run_test(size=(120, 36)) as pilot:
            await settle(app, pilot)
            console = app.console_screen
            assert console is not None
            console.editor.load_text("up")
            await pilot.press("enter")
            await settle(app, pilot)
            rows = console.query_one(ResultTable).shown
            assert rows and all(r.series.startswith("up{") for r in rows)
            assert app.sub_title == f"HTTP {prom_url}"
            await pilot.press("f4")  # no blocks behind an HTTP API
            await settle(app, pilot)
            assert app.screen is console

    asyncio.run(main())


class _Stub(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[dict[str, Any]]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = self.rfile.read(length).decode() if length else ""
        _Stub.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "form": form})
        if self.headers.get("Authorization") not in ("Bearer s3cret", "Basic dTpwdw=="):
            self.send_response(401)
            self.end_headers()
            return
        if "bad" in form:
            body = b'{"status":"error","errorType":"bad_data","error":"1:1: parse error: nope"}'
            self.send_response(400)
        else:
            body = b'{"status":"success","data":{"resultType":"scalar","result":[12.5,"7"]},"warnings":["w1"]}'
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def stub_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Stub.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_auth_thanos_params_and_errors(stub_url: str, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    source = HttpSource(PromHTTPClient(stub_url, auth=HttpAuth.from_files(str(token))))
    out = source.instant("x", 12_500, QuerySettings(dedup=False, replica_labels=("rep",)), CancelToken())
    assert out.result.scalar == (12_500, 7.0) and out.warnings == ["w1"]
    assert (out.samples, out.samples_what, out.peak_samples) == (1, "samples returned", None)  # no stats object
    form = _Stub.seen[-1]["form"]
    assert "dedup=false" in form and "replicaLabels%5B%5D=rep" in form and "partial_response=true" in form
    password = tmp_path / "pw"
    password.write_text("pw")
    basic = HttpSource(PromHTTPClient(stub_url, auth=HttpAuth.from_files(None, "u", str(password))))
    assert basic.instant("x", 0, QuerySettings(), CancelToken()).result.scalar == (12_500, 7.0)
    with pytest.raises(QueryError, match="parse error: nope"):
        source.instant("bad", 0, QuerySettings(), CancelToken())
    with pytest.raises(SourceError, match="HTTP 401"):
        HttpSource(PromHTTPClient(stub_url)).instant("x", 0, QuerySettings(), CancelToken())
    with pytest.raises(SourceError, match="cannot reach"):
        HttpSource(PromHTTPClient("http://127.0.0.1:9", timeout_s=2)).instant("x", 0, QuerySettings(), CancelToken())
    with pytest.raises(ConfigError):
        PromHTTPClient("localhost:9090")
