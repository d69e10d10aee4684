"""End to end: the real ``thanos-tools tui`` in a pseudo-terminal (tmux), typed at and read off the screen."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.tui.tuihelp import make_bucket

TMUX = shutil.which("tmux")
pytestmark = pytest.mark.skipif(TMUX is None, reason="tmux not installed (apt-get install tmux)")


class Tmux:
    """One tmux server on a private socket (inside the test's tmp dir), running one command in a 120×36 window."""

    def __init__(self, socket: Path) -> None:
        assert TMUX is not None
        self.base = [TMUX, "-S", str(socket), "-f", os.devnull]

    def run(self, *args: str) -> str:
        return subprocess.run([*self.base, *args], capture_output=True, text=True, check=True, timeout=30).stdout

    def start(self, command: list[str], env: dict[str, str]) -> None:
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        self.run("new-session", "-d", "-s", "tt", "-x", "120", "-y", "36", f"env {exports} {shlex.join(command)}")

    def screen(self) -> str:
        """The visible text; empty once the session has ended."""
        assert TMUX is not None
        out = subprocess.run([*self.base, "capture-pane", "-p", "-t", "tt"], capture_output=True, text=True,
                             timeout=30)
        return out.stdout if out.returncode == 0 else ""

    def wait_for(self, ok: Callable[[str], bool], timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.screen()
            if ok(text):
                return text
            time.sleep(0.2)
        raise AssertionError(f"screen never matched; last screen:\n{text}")

    def kill(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True, timeout=30)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    session = Tmux(tmp_path / "tmux.sock")
    try:
        yield session
    finally:
        session.kill()


def test_real_tui_in_a_terminal(tmux: Tmux, tmp_path: Path) -> None:
    bucket = make_bucket(tmp_path / "bucket")
    env = {"THANOS_TOOLS_DATA_DIR": str(tmp_path / "data"), "TERM": "xterm-256color", "COLUMNS": "120",
           "LINES": "36", "PATH": os.environ.get("PATH", "")}
    tmux.start([sys.executable, "-m", "thanostools", "tui", "--bucket", str(bucket)], env)
    tmux.wait_for(lambda s: "thanos-tools" in s and "Table" in s)
    # The bucket's data is old: the console moves its time range to the newest block on its own.
    tmux.wait_for(lambda s: "2023-11-15T02:00:00Z" in s)
    tmux.run("send-keys", "-t", "tt", "-l", "count by (cluster) (up)")
    tmux.run("send-keys", "-t", "tt", "Escape")  # close the completion menu
    tmux.run("send-keys", "-t", "tt", "C-j")
    screen = tmux.wait_for(lambda s: "instant · 2 series" in s)
    rows = [line.split() for line in screen.splitlines() if '{cluster="' in line]
    assert [r[:2] for r in rows] == [['{cluster="eu1"}', "2"], ['{cluster="us1"}', "2"]]
    tmux.run("send-keys", "-t", "tt", "C-q")
    tmux.wait_for(lambda s: "Table" not in s, timeout=20)  # the app quit (and the session with it)
    history = (tmp_path / "data" / "history.json").read_text()
    assert "count by (cluster) (up)" in history
