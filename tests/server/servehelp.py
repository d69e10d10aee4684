"""Run the real ``thanos-tools serve`` as a subprocess on free 127.0.0.1 ports, and talk HTTP to it."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fixtures_prom import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


def subprocess_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a CLI subprocess: it imports this checkout's package, whatever the cwd."""
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **(extra or {})}


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Serve:
    """One ``serve`` process; :meth:`stop` sends SIGTERM to its PID and waits."""

    args: list[str]
    workdir: Path
    env: dict[str, str] | None = None
    scheme: str = "http"
    ssl_context: ssl.SSLContext | None = None
    http_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.log = self.workdir / f"serve-{self.http_port}.log"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.http_port}"

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self, *, wait: bool = True, timeout: float = 60) -> Serve:
        cmd = [sys.executable, "-m", "thanostools", "serve", "--http-address", f"127.0.0.1:{self.http_port}",
               "--grpc-address", self.grpc_address, *self.args]
        env = subprocess_env(self.env)
        with open(self.log, "wb") as fh:
            self.proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=self.workdir)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60, headers: dict[str, str] | None = None) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited with {self.proc.returncode}: {self.stderr()[-3000:]}")
            try:
                if self.request("GET", "/-/ready", headers=headers, timeout=2).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"serve did not become ready: {self.stderr()[-3000:]}")

    def stderr(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def request(self, method: str, path: str, params: dict[str, Any] | list[tuple[str, str]] | None = None, *,
                data: dict[str, Any] | list[tuple[str, str]] | bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float = 60) -> Reply:
        query = "?" + urllib.parse.urlencode(params, doseq=True) if params else ""
        body = data if isinstance(data, bytes) or data is None else urllib.parse.urlencode(data, doseq=True).encode()
        req = urllib.request.Request(self.url + path + query, data=body, method=method, headers=headers or {})
        if body is not None and not isinstance(data, bytes):
            req.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self.ssl_context) as r:
                return Reply(r.status, dict(r.headers), r.read())
        except urllib.error.HTTPError as exc:
            return Reply(exc.code, dict(exc.headers), exc.read())

    def get(self, path: str, params: dict[str, Any] | list[tuple[str, str]] | None = None, **kw: Any) -> Reply:
        return self.request("GET", path, params, **kw)

    def post(self, path: str, data: dict[str, Any] | list[tuple[str, str]] | None = None, **kw: Any) -> Reply:
        return self.request("POST", path, data=data or {}, **kw)

    def api(self, path: str, **params: Any) -> Any:
        """GET an API endpoint, assert success and return ``data``."""
        reply = self.get(path, params)
        body = reply.json()
        assert reply.status == 200 and body["status"] == "success", (reply.status, body)
        return body["data"]

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, wait; SIGKILL if it hangs. Returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class ServeFactory:
    """Starts serve processes for a test and stops all of them afterwards."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[Serve] = []

    def __enter__(self) -> ServeFactory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def __call__(self, *args: str, wait: bool = True, **kw: Any) -> Serve:
        s = Serve(list(args), self.workdir, **kw)
        self.started.append(s)
        return s.start(wait=wait)

    def stop_all(self) -> None:
        for s in self.started:
            s.stop()


class BlackHole:
    """A TCP port that accepts connections (in the kernel's backlog) and never answers: a remote StoreAPI
    endpoint behind it holds a query for its whole ``--endpoint.timeout``, without using CPU."""

    def __init__(self) -> None:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self) -> None:
        self.sock.close()
