"""Failed logins against a real ``serve``: limited per client address (429 without a bcrypt check), successful
checks cached, every refusal a ``security`` log event. Other client addresses are 127.0.0.x source addresses."""

from __future__ import annotations

import base64
import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clihelp import START_MS
from tests.core.test_querier import lab, write_raw
from tests.server.servehelp import Serve, ServeFactory

USER, PASSWORD = "alice", "correct horse"
AT = f"{(START_MS + 60_000) / 1000:.3f}"
QUERY = f"/api/v1/query?query=count(up)&time={AT}"
BURST = 5


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def call(s: Serve, headers: dict[str, str], source: str = "127.0.0.1") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", s.http_port, timeout=60, source_address=(source, 0))
    try:
        conn.request("GET", QUERY, headers=headers)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import bcrypt

    root = tmp_path_factory.mktemp("authlimits")
    (root / "bucket").mkdir()
    t = [START_MS + i * 15_000 for i in range(20)]
    write_raw(root / "bucket", [(lab(__name__="up", job="api"), t, [1.0] * 20)])
    (root / "web.yml").write_text(
        f"basic_auth_users:\n  {USER}: '{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()}'\n")
    return root


@pytest.fixture(scope="module")
def serves(root: Path) -> Iterator[ServeFactory]:
    with ServeFactory(root) as factory:
        yield factory


def _start(serves: ServeFactory, root: Path, limit: str) -> Serve:
    s = serves("--bucket", str(root / "bucket"), "--http.config", str(root / "web.yml"),
               "--http.auth-failure-limit", limit, wait=False)
    s.wait_ready(headers=basic(USER, PASSWORD))  # also puts alice's credentials in the cache
    return s


def test_a_flood_of_wrong_passwords_gets_429_after_the_limit(serves: ServeFactory, root: Path) -> None:
    s = _start(serves, root, f"0.001:{BURST}")  # one token per 1000 s: no refill within the test
    statuses: list[int] = []
    bodies: list[tuple[int, dict[str, str], bytes]] = []
    lock = threading.Lock()

    def flood(i: int) -> None:
        for _ in range(5):
            reply = call(s, basic(USER, f"wrong-{i}"))
            with lock:
                statuses.append(reply[0])
                bodies.append(reply)

    threads = [threading.Thread(target=flood, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    counts = Counter(statuses)
    assert counts[401] == BURST and counts[429] == 80 - BURST, counts
    _, headers, body = next(b for b in bodies if b[0] == 429)
    assert int(headers["Retry-After"]) >= 1
    assert json.loads(body) == {"status": "error", "errorType": "unavailable",
                                "error": "too many failed logins from this address"}
    # the right password from the flooded address is refused too (no bcrypt for it) …
    assert call(s, basic(USER, PASSWORD + " "))[0] == 429
    # … unless it was verified before: cached successes need no check
    assert call(s, basic(USER, PASSWORD))[0] == 200
    # another address is not affected, and a wrong password there is a plain 401
    assert call(s, basic(USER, PASSWORD), source="127.0.0.2")[0] == 200
    assert call(s, basic(USER, "nope"), source="127.0.0.3")[0] == 401
    assert call(s, {}, source="127.0.0.3")[0] == 401
    log = s.stderr()
    events = [line for line in log.splitlines() if "security=auth_failure" in line]
    assert len(events) == BURST + 2 and all("user=alice" in e for e in events[:BURST])
    assert sum("security=auth_rate_limited" in line for line in log.splitlines()) == 1  # once per streak
    assert "wrong-" not in log and PASSWORD not in log
    metrics = s.get("/metrics", headers=basic(USER, PASSWORD)).text
    assert f'thanos_tools_security_events_total{{kind="auth_failure"}} {BURST + 2}.0' in metrics


def test_login_works_again_after_refill_and_failures_are_never_cached(serves: ServeFactory, root: Path) -> None:
    s = _start(serves, root, "2:2")
    assert call(s, basic(USER, "bad1"))[0] == 401
    assert call(s, basic(USER, "bad1"))[0] == 401  # the same wrong header again: checked again, not cached
    status, headers, _ = call(s, basic(USER, "bad1"))
    assert status == 429
    time.sleep(int(headers["Retry-After"]))  # what a client obeying Retry-After does
    assert call(s, basic("bob", PASSWORD))[0] == 401  # a real check again
    time.sleep(1)
    assert call(s, basic(USER, PASSWORD + "x"))[0] == 401
    time.sleep(1)
    for _ in range(5):  # a verified login is served from the cache: no token spent
        assert call(s, basic(USER, PASSWORD))[0] == 200
