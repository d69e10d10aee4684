"""A real Prometheus API client against ``serve``: ``promtool query instant|range|series|labels``."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from tests.clihelp import START_MS
from tests.core.test_querier import lab, write_raw
from tests.fixtures_prom import needs_promtool, promtool
from tests.server.servehelp import Serve, ServeFactory

pytestmark = [needs_promtool, pytest.mark.promtool]

S = 15_000
N = 41
BASE = START_MS // 1000
USER, PASSWORD = "grafana", "s3cret pass"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    import bcrypt

    root = tmp_path_factory.mktemp("promtool-client")
    bucket = root / "bucket"
    bucket.mkdir()
    t = [START_MS + i * S for i in range(N)]
    write_raw(bucket, [
        (lab(__name__="up", job="api", instance="i1"), t, [1.0] * N),
        (lab(__name__="up", job="db", instance="i2"), t, [0.0] * N),
        (lab(__name__="reqs_total", job="api"), t, [float(10 * i) for i in range(N)]),
    ], ext={"cluster": "c1"})
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    web = root / "web.yml"
    web.write_text(f"basic_auth_users:\n  {USER}: '{hashed}'\n")
    promtool("check", "web-config", str(web))
    factory = ServeFactory(root)
    auth = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
    try:
        s = factory("--bucket", str(bucket), "--http.config", str(web), wait=False)
        s.wait_ready(headers=auth)
        yield s
    finally:
        factory.stop_all()


def url(server: Serve) -> str:
    return f"http://{USER}:{PASSWORD.replace(' ', '%20')}@127.0.0.1:{server.http_port}"


def test_instant(server: Serve) -> None:
    out = promtool("query", "instant", f"--time={BASE + 60}", url(server), "up").stdout
    assert out.splitlines() == [
        f'up{{cluster="c1", instance="i1", job="api"}} => 1 @[{BASE + 60}]',
        f'up{{cluster="c1", instance="i2", job="db"}} => 0 @[{BASE + 60}]',
    ]
    out = promtool("query", "instant", f"--time={BASE + 300}", url(server), "sum(rate(reqs_total[2m]))").stdout
    assert out.strip() == f"{{}} => 0.6666666666666666 @[{BASE + 300}]"
    js = promtool("query", "instant", "-o", "json", f"--time={BASE}", url(server), "scalar(up{job='api'})").stdout
    assert js.strip() == f'[{BASE},"1"]'


def test_range(server: Serve) -> None:
    out = promtool("query", "range", f"--start={BASE + 120}", f"--end={BASE + 240}", "--step=1m", url(server),
                   "sum(rate(reqs_total[1m]))").stdout
    assert out.splitlines() == ["{} =>", f"0.6666666666666666 @[{BASE + 120}]", f"0.6666666666666666 @[{BASE + 180}]",
                                f"0.6666666666666666 @[{BASE + 240}]"]


def test_series_and_labels(server: Serve) -> None:
    out = promtool("query", "series", "--match=up", f"--start={BASE}", f"--end={BASE + 60}", url(server)).stdout
    assert out.splitlines() == ['{__name__="up", cluster="c1", instance="i1", job="api"}',
                                '{__name__="up", cluster="c1", instance="i2", job="db"}']
    # promtool's default range is now ± 9999h, which misses these old samples.
    window = (f"--start={BASE}", f"--end={BASE + 600}")
    assert promtool("query", "labels", *window, url(server), "job").stdout.split() == ["api", "db"]
    assert promtool("query", "labels", *window, url(server), "__name__").stdout.split() == ["reqs_total", "up"]


def test_errors_reach_the_client(server: Serve) -> None:
    res = promtool("query", "instant", url(server), "sum(up", check=False)
    assert res.returncode != 0
    assert 'bad_data: invalid parameter "query": 1:7: parse error: unclosed left parenthesis' in res.stderr
    wrong = url(server).replace(PASSWORD.replace(" ", "%20"), "wrong")
    res = promtool("query", "instant", wrong, "up", check=False)
    assert res.returncode != 0 and "401" in res.stderr
