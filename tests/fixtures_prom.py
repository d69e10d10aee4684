"""Fixtures around the real Prometheus tools (Debian package ``prometheus``): promtool and the server."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import pytest

PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")

needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (apt-get install prometheus)")
needs_prometheus = pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not installed")


def promtool(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, check=check, timeout=600)


def promtool_create_blocks(openmetrics: str | bytes, out_dir: Path, *, block_duration: str | None = None) -> Path:
    """Run ``promtool tsdb create-blocks-from openmetrics`` on text written to a file; returns out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    src = out_dir.parent / (out_dir.name + ".om")
    src.write_bytes(openmetrics.encode() if isinstance(openmetrics, str) else openmetrics)
    args = ["tsdb", "create-blocks-from", "openmetrics"]
    if block_duration:
        args.append(f"--max-block-duration={block_duration}")
    promtool(*args, str(src), str(out_dir))
    return out_dir


def promtool_dump(data_dir: Path, *extra: str) -> str:
    """``promtool tsdb dump``; creates the empty ``wal/`` it insists on (and removes it again)."""
    wal = data_dir / "wal"
    made = not wal.exists()
    wal.mkdir(exist_ok=True)
    try:
        return promtool("tsdb", "dump", *extra, str(data_dir)).stdout
    finally:
        if made:
            shutil.rmtree(wal, ignore_errors=True)


def promtool_analyze(data_dir: Path, block: str | None = None, *extra: str) -> str:
    wal = data_dir / "wal"
    made = not wal.exists()
    wal.mkdir(exist_ok=True)
    try:
        args = ["tsdb", "analyze", *extra, str(data_dir)]
        if block:
            args.append(block)
        return promtool(*args).stdout
    finally:
        if made:
            shutil.rmtree(wal, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrometheusServer:
    """A real ``prometheus`` on 127.0.0.1 over a given data dir, with no scrape targets."""

    def __init__(self, data_dir: Path, workdir: Path, extra_args: Sequence[str] = ()) -> None:
        assert PROMETHEUS is not None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 1h\n")
        self.log = workdir / "prometheus.log"
        self._logfh = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={data_dir}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=100y",
             "--query.lookback-delta=5m", *extra_args],
            stdout=self._logfh, stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("prometheus did not become ready")

    def get(self, path: str, **params: str) -> bytes:
        q = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{q}", timeout=60) as r:
            data: bytes = r.read()
            return data

    def query(self, query: str, at_ms: int) -> Any:
        """``/api/v1/query`` at ``at_ms``, parsed."""
        return json.loads(self.get("/api/v1/query", query=query, time=str(at_ms / 1000)))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._logfh.close()


NATIVE_HISTOGRAM_QUERIES = ('{__name__=~"nh_.*"}[2900s]', "rate(nh_int_counter[1m])",
                            "histogram_quantile(0.9, nh_gauge)", "sum(rate(nh_float_counter[5m]))")


def native_histogram_answers(start: StartPrometheus, data_dirs: Sequence[Path], at_ms: int) -> list[list[Any]]:
    """What a real prometheus (native histograms on) answers to NATIVE_HISTOGRAM_QUERIES over each data dir: the
    check that blocks we write or merge read as the originals do."""
    answers = []
    for data_dir in data_dirs:
        work = data_dir.with_name(data_dir.name + "-work")
        work.mkdir()
        server = start(data_dir, work, ["--enable-feature=native-histograms"])
        try:
            answers.append([server.query(q, at_ms) for q in NATIVE_HISTOGRAM_QUERIES])
        finally:
            server.stop()
    return answers


class StartPrometheus(Protocol):
    """What the ``prometheus_server`` fixture gives: starts a server, in ``workdir`` or the test's tmp_path."""

    def __call__(self, data_dir: Path, workdir: Path | None = None,
                 extra_args: Sequence[str] = ()) -> PrometheusServer: ...


@pytest.fixture
def prometheus_server(tmp_path: Path) -> Iterator[StartPrometheus]:
    """Factory: ``prometheus_server(data_dir, workdir)`` starts one; all are stopped at teardown."""
    started: list[PrometheusServer] = []

    class _Factory(PrometheusServer):
        def __init__(self, data_dir: Path, workdir: Path | None = None, extra_args: Sequence[str] = ()) -> None:
            super().__init__(data_dir, workdir or tmp_path, extra_args)
            started.append(self)

    if PROMETHEUS is None:
        pytest.skip("prometheus not installed")
    yield _Factory
    for s in started:
        s.stop()


__all__ = [
    "PrometheusServer",
    "free_port",
    "needs_prometheus",
    "needs_promtool",
    "prometheus_server",
    "promtool",
    "promtool_analyze",
    "promtool_create_blocks",
    "promtool_dump",
]
os.environ.setdefault("NO_COLOR", "1")
