"""The same reads through S3 (a real moto server on 127.0.0.1) with a Thanos objstore config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.clihelp import make_openmetrics, run_cli
from tests.fixtures_prom import needs_promtool, promtool_analyze, promtool_create_blocks, promtool_dump

pytestmark = needs_promtool


@pytest.fixture
def s3_with_blocks(s3_bucket, tmp_path: Path) -> tuple[object, Path, str]:  # type: ignore[no-untyped-def]
    local = promtool_create_blocks(make_openmetrics(series=40, hours=3, seed=5), tmp_path / "local")
    cfg = s3_bucket.write_config(tmp_path)
    res = run_cli("bucket", "upload", "--objstore.config-file", cfg, str(local), "-o", "ids")
    assert res.exit_code == 0, res.stderr
    return s3_bucket, local, cfg


def test_s3_upload_order_and_listing(s3_with_blocks: tuple[object, Path, str]) -> None:
    s3, local, cfg = s3_with_blocks
    keys = s3.object_keys()  # type: ignore[attr-defined]
    blocks = sorted(p.name for p in local.iterdir() if (p / "meta.json").exists())
    for b in blocks:
        assert f"{b}/meta.json" in keys and f"{b}/index" in keys and f"{b}/chunks/000001" in keys
        assert f"{b}/tombstones" not in keys
    res = run_cli("bucket", "ls", "--objstore.config-file", cfg, "-o", "json")
    docs = res.json()
    assert [d["ulid"] for d in docs] == blocks
    for d in docs:
        meta = json.loads((local / d["ulid"] / "meta.json").read_text())
        assert d["stats"] == meta["stats"] and d["minTime"] == meta["minTime"]
        assert d["thanos"]["source"] == "bucket.upload"
        assert {f["rel_path"] for f in d["thanos"]["files"]} == {"chunks/000001", "index", "meta.json"}


def test_s3_dump_and_analyze_match_promtool(s3_with_blocks: tuple[object, Path, str], tmp_path: Path) -> None:
    _s3, local, cfg = s3_with_blocks
    cache = tmp_path / "cache"
    res = run_cli("bucket", "dump", "--objstore.config-file", cfg, "--cache-dir", str(cache))
    assert res.exit_code == 0, res.stderr
    assert res.stdout == promtool_dump(local)
    block = sorted(p.name for p in local.iterdir() if (p / "meta.json").exists())[0]
    res = run_cli("bucket", "analyze", "--objstore.config-file", cfg, "--id", block, "--cache-dir", str(cache))
    theirs = promtool_analyze(local, block)
    assert res.stdout.splitlines()[:6] == theirs.splitlines()[:6]
    # Fetched ranges are cached on disk, keyed by block ULID.
    assert any(block in str(p) for p in cache.rglob("*"))


def test_s3_unreachable_endpoint_is_one_line_error(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("type: S3\nconfig:\n  bucket: nope\n  endpoint: 127.0.0.1:1\n  insecure: true\n"
                   "  access_key: a\n  secret_key: b\n")
    res = run_cli("bucket", "ls", "--objstore.config-file", str(cfg))
    assert res.exit_code == 1
    assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1
    assert "Traceback" not in res.stderr
