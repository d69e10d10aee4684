"""`bucket import` of both text formats, block splitting, labels, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

from tests.clihelp import run_cli

PROM_TEXT = """# HELP up Whether the target is up.
# TYPE up gauge
up{job="a",instance="x:1"} 1 7190000
up{job="a",instance="x:1"} 0 7210000
up{job="b",instance="y:2"} 1 7200000
http_requests_total{code="200"} 10 7100000
http_requests_total{code="200"} 12 7100000
"""


def test_import_prometheus_text_splits_blocks(tmp_path: Path) -> None:
    src = tmp_path / "metrics.prom"
    src.write_text(PROM_TEXT)
    res = run_cli("bucket", "import", "--bucket", str(tmp_path / "b"), str(src), "--format", "prometheus",
                  "--label", "cluster=eu1", "-o", "json")
    assert res.exit_code == 0, res.stderr
    metas = sorted(res.json(), key=lambda m: m["minTime"])
    assert [(m["minTime"], m["maxTime"]) for m in metas] == [(7100000, 7190001), (7200000, 7210001)]
    assert all(m["thanos"]["labels"] == {"cluster": "eu1"} for m in metas)
    out = run_cli("bucket", "dump", "--bucket", str(tmp_path / "b")).stdout.splitlines()
    assert out == [
        '{__name__="http_requests_total", code="200"} 10 7100000',  # duplicate timestamp: the first wins
        '{__name__="up", instance="x:1", job="a"} 1 7190000',
        '{__name__="up", instance="x:1", job="a"} 0 7210000',
        '{__name__="up", instance="y:2", job="b"} 1 7200000',
    ]
    ls = run_cli("bucket", "ls", "--bucket", str(tmp_path / "b"), "--selector", "cluster=eu1", "-o", "json")
    assert len(json.loads(ls.stdout)) == 2


def test_import_block_duration(tmp_path: Path) -> None:
    src = tmp_path / "m.prom"
    src.write_text(PROM_TEXT)
    res = run_cli("bucket", "import", "--bucket", str(tmp_path / "b"), str(src), "--block-duration", "1d", "-o", "ids")
    assert res.exit_code == 0, res.stderr
    assert len(res.stdout.split()) == 1


def test_import_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.om"
    bad.write_text('m{a="1"} 1 1000\nm{a="1"} oops 1015\n# EOF\n')
    res = run_cli("bucket", "import", "--bucket", str(tmp_path / "b"), str(bad))
    assert res.exit_code == 1
    assert "bad.om:2" in res.stderr and res.stderr.count("\n") == 1
    assert not (tmp_path / "b").exists() or list((tmp_path / "b").iterdir()) == []
    res = run_cli("bucket", "import", "--bucket", str(tmp_path / "b"), str(tmp_path / "missing.om"))
    assert res.exit_code != 0 and "missing.om" in res.stderr
    res = run_cli("bucket", "import", "--bucket", str(tmp_path / "b"), str(bad), "--label", "novalue")
    assert res.exit_code == 2
