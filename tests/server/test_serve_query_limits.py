"""One query cannot take down ``thanos-tools query`` or ``serve``: bombs fail with Prometheus' sample-limit
error while the process stays small, and serve answers the next query."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clihelp import START_MS
from tests.core.test_querier import lab, write_raw
from tests.server.servehelp import ServeFactory
from thanostools.core.promql.evaluator import TOO_MANY_SAMPLES

CHECKOUT = Path(__file__).resolve().parents[2]
ENV = {"PYTHONPATH": str(CHECKOUT)}  # the subprocesses run this checkout's package
S = 15_000
N = 480  # two hours of samples
AT = START_MS + N * S
MAX_RSS_KB = 1_500_000
LIMIT = ("--query.max-samples", "100000")
BOMBS = ["max_over_time(up[10000d:1s])", "count_over_time(up[1000d:1ms])", "up[1000d:1ms]"]

# Runs its arguments as a child process and reports the child's exit code, output and peak RSS (KiB).
_MEASURE = """
import json, resource, subprocess, sys
r = subprocess.run(sys.argv[1:], capture_output=True, text=True)
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"code": r.returncode, "stdout": r.stdout, "stderr": r.stderr, "maxrss_kb": rss}))
"""


@pytest.fixture(scope="module")
def bucket(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bucket = tmp_path_factory.mktemp("limits") / "bucket"
    bucket.mkdir()
    t = [START_MS + i * S for i in range(N)]
    write_raw(bucket, [(lab(__name__="up", job="api", instance=str(i)), t, [1.0] * N) for i in range(4)])
    return bucket


@pytest.fixture(scope="module")
def serves(bucket: Path) -> Iterator[ServeFactory]:
    with ServeFactory(bucket.parent) as factory:
        yield factory


def _vm_hwm_kb(pid: int) -> int:
    """Peak resident memory of a running process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc status")


@pytest.mark.parametrize("query", BOMBS[:2])
def test_cli_query_bomb_fails_small(bucket: Path, query: str) -> None:
    cmd = [sys.executable, "-c", _MEASURE, sys.executable, "-m", "thanostools", "query", query,
           "--max-samples", "100000", "--bucket", str(bucket), "--time", str(AT)]
    out = json.loads(subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=CHECKOUT, check=True).stdout)
    assert out["code"] == 1 and out["stdout"] == ""
    assert out["stderr"].splitlines() == [f"error: {TOO_MANY_SAMPLES}"]
    assert out["maxrss_kb"] < MAX_RSS_KB


def test_cli_query_under_the_limit_answers(bucket: Path) -> None:
    cmd = [sys.executable, "-m", "thanostools", "query", "count_over_time(up[2h:1s])", "--max-samples", "100000",
           "--bucket", str(bucket), "--time", str(AT), "-o", "json"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=CHECKOUT)
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)["result"]
    assert len(result) == 4 and {r["value"][1] for r in result} == {"7200"}


def test_serve_answers_bombs_with_422_and_stays_small(bucket: Path, serves: ServeFactory) -> None:
    s = serves("--bucket", str(bucket), *LIMIT, env=ENV)
    assert s.proc is not None
    expected = {"status": "error", "errorType": "execution", "error": TOO_MANY_SAMPLES}
    for query in BOMBS:
        reply = s.get("/api/v1/query", {"query": query, "time": AT / 1000})
        assert (reply.status, reply.json()) == (422, expected), query
    # range queries: a per-step distinct value makes a row per step (10 000 rows of 10 000 steps)
    start = START_MS / 1000
    reply = s.get("/api/v1/query_range", {"query": 'count_values("v", vector(time()))', "start": start,
                                          "end": start + 9_999, "step": "1"})
    assert (reply.status, reply.json()) == (422, expected)
    reply = s.post("/api/v1/query_range", {"query": "max_over_time(up[10000d:1s])", "start": start,
                                           "end": start + 7_200, "step": "60"})
    assert (reply.status, reply.json()) == (422, expected)
    reply = s.get("/api/v1/query_range", {"query": "up", "start": start, "end": start + 11_001, "step": "1"})
    assert reply.status == 400 and reply.json()["error"].startswith("exceeded maximum resolution of 11,000 points")
    assert _vm_hwm_kb(s.proc.pid) < MAX_RSS_KB
    # the server is still there and answers normally
    data = s.api("/api/v1/query", query="count_over_time(up[2h:1s])", time=AT / 1000)
    assert len(data["result"]) == 4 and {r["value"][1] for r in data["result"]} == {"7200"}
    assert s.get("/-/healthy").status == 200
    assert "Traceback" not in s.stderr()
