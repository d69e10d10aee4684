"""Blocks we write are accepted by the real tools: promtool analyze/dump and a prometheus server."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.clihelp import START_MS, run_cli, special_series
from tests.fixtures_prom import StartPrometheus, needs_promtool, promtool, promtool_dump
from thanostools.core.goformat import format_g, go_labels_string
from thanostools.core.tsdb.writer import BlockWriter

pytestmark = needs_promtool


def _write_block(parent: Path) -> tuple[str, list[str]]:
    """One block of special-value series plus many regular ones; returns (ulid, expected dump lines)."""
    series = list(special_series(START_MS))
    t = START_MS + np.arange(0, 7_200_000, 15_000, dtype=np.int64)
    for i in range(300):
        v = (np.cumsum(np.ones(t.size)) * (i + 1)).view(np.uint64)
        series.append(((("__name__", "gen_total"), ("i", f"{i:04d}"), ("job", "x")), t, v))
    series.sort(key=lambda s: s[0])
    w = BlockWriter(str(parent), external_labels={"cluster": "test"}, source="test")
    lines: list[str] = []
    for labels, ts, vs in series:
        w.add_samples(labels, ts, vs)
        prefix = go_labels_string(labels)
        lines += [f"{prefix} {format_g(x)} {tt}" for tt, x in zip(ts.tolist(), vs.view(np.float64).tolist(),
                                                                   strict=True)]
    meta = w.finish()
    return meta.ulid, lines


def test_promtool_reads_our_block(tmp_path: Path) -> None:
    ulid, expected = _write_block(tmp_path)
    assert promtool_dump(tmp_path).splitlines() == expected
    (tmp_path / "wal").mkdir()
    out = promtool("tsdb", "analyze", "--extended", str(tmp_path), ulid).stdout
    assert "Series: 302" in out
    res = run_cli("bucket", "dump", "--bucket", str(tmp_path))
    assert res.stdout.splitlines() == expected


def test_generated_bucket_is_valid_for_promtool(tmp_path: Path) -> None:
    res = run_cli("bucket", "generate", "--bucket", str(tmp_path), "--series", "500", "--duration", "4h",
                  "--start", str(START_MS), "--seed", "7", "-o", "json")
    assert res.exit_code == 0, res.stderr
    metas = res.json()
    assert len(metas) == 2
    ours = run_cli("bucket", "dump", "--bucket", str(tmp_path)).stdout
    assert ours == promtool_dump(tmp_path)
    again = tmp_path / "again"
    run_cli("bucket", "generate", "--bucket", str(again), "--series", "500", "--duration", "4h",
            "--start", str(START_MS), "--seed", "7")
    assert run_cli("bucket", "dump", "--bucket", str(again)).stdout == ours


@pytest.mark.prometheus
def test_prometheus_server_loads_our_blocks(tmp_path: Path, prometheus_server: StartPrometheus) -> None:
    data = tmp_path / "data"
    data.mkdir()
    ulid, _ = _write_block(data)
    meta = json.loads((data / ulid / "meta.json").read_text())
    server = prometheus_server(data)
    t = (meta["maxTime"] - 1) / 1000
    at = (START_MS + 7_185_000) / 1000  # last sample of the gen_total series
    body = json.loads(server.get("/api/v1/query", query='count({__name__=~".+"})', time=str(at)))
    assert body["status"] == "success"
    assert body["data"]["result"][0]["value"][1] == "301"  # the "edge" series has no sample in the last 5m
    body = json.loads(server.get("/api/v1/series", **{"match[]": '{__name__=~".+"}', "start": str(START_MS / 1000),
                                                      "end": str(t)}))
    assert len(body["data"]) == 302
