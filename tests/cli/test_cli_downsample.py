"""``bucket downsample``: plan, dry run, run, rerun, filters, JSON, S3."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.clihelp import run_cli
from tests.fixtures_s3 import S3TestBucket
from thanostools.core.tsdb.writer import BlockWriter

HOUR = 3_600_000
START = 1_700_006_400_000


def write_block(bucket: Path, hours: int, *, name: str = "m", labels: dict[str, str] | None = None) -> str:
    t = START + np.arange(0, hours * HOUR, 30_000, dtype=np.int64)
    w = BlockWriter(str(bucket), min_time=START, max_time=START + hours * HOUR,
                    external_labels=labels or {"cluster": "eu1"}, source="sidecar")
    for i in range(3):
        v = np.cumsum(np.full(t.shape[0], i + 1.0))
        v[t.shape[0] // 2 :] -= v[t.shape[0] // 2]  # a counter reset halfway
        w.add_samples((("__name__", name), ("i", str(i))), t, v)
    return w.finish().ulid


@pytest.fixture
def bucket(tmp_path: Path) -> tuple[Path, str, str]:
    root = tmp_path / "bucket"
    root.mkdir()
    long_block = write_block(root, 48)
    short_block = write_block(root, 24, labels={"cluster": "us1"})
    return root, long_block, short_block


def ls_ids(root: Path, *args: str) -> list[str]:
    res = run_cli("bucket", "ls", "--bucket", str(root), "-o", "ids", *args)
    assert res.exit_code == 0, res.stderr
    return res.stdout.split()


def test_plan_lists_only_blocks_due(bucket: tuple[Path, str, str]) -> None:
    root, long_block, _ = bucket
    res = run_cli("bucket", "downsample", "--bucket", str(root), "--plan")
    assert res.exit_code == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["PASS", "INPUT", "FROM", "UNTIL", "RANGE", "RES", "TARGET", "SERIES", "SAMPLES"]
    assert len(lines) == 2 and lines[1].split()[:2] == ["1", long_block] and " 5m " in lines[1]
    doc = run_cli("bucket", "downsample", "--bucket", str(root), "--plan", "-o", "json").json()
    assert [(d["input"], d["target"], d["series"]) for d in doc] == [(long_block, "5m", 3)]
    assert sorted(os.listdir(root)) == sorted(ls_ids(root))  # nothing written


def test_dry_run_computes_but_uploads_nothing(bucket: tuple[Path, str, str]) -> None:
    root, long_block, _ = bucket
    before = sorted(os.listdir(root))
    res = run_cli("bucket", "downsample", "--bucket", str(root), "--compute", "-o", "json")
    assert res.exit_code == 0, res.stderr
    (row,) = res.json()
    assert row["input"] == long_block and row["status"] == "dry-run" and row["series"] == 3
    assert row["samples"] == 3 * 48 * 12  # one count sample per 5m window
    assert "dry run" in res.stderr
    assert sorted(os.listdir(root)) == before


def test_run_then_rerun(bucket: tuple[Path, str, str]) -> None:
    root, long_block, _ = bucket
    res = run_cli("bucket", "downsample", "--bucket", str(root), "--no-dry-run")
    assert res.exit_code == 0, res.stderr
    new = res.stdout.splitlines()[1].split()[3]
    assert ls_ids(root, "--resolution", "5m") == [new]
    meta = json.loads((root / new / "meta.json").read_text())
    assert meta["thanos"]["downsample"]["resolution"] == 300_000 and meta["thanos"]["files"]
    assert meta["compaction"]["sources"] == [long_block]
    dump = run_cli("bucket", "dump", "--bucket", str(root), "--id", new, "--aggregate", "count", "-o", "json")
    assert all(float(v) == 10 for s in dump.json() for _, v in s["samples"][:-1])  # 10 raw samples per window
    again = run_cli("bucket", "downsample", "--bucket", str(root), "--no-dry-run")
    assert again.exit_code == 0 and again.stdout.count("\n") == 1 and "nothing to downsample" in again.stderr


def test_filters(bucket: tuple[Path, str, str]) -> None:
    root, long_block, _ = bucket
    assert run_cli("bucket", "downsample", "--bucket", str(root), "--plan", "--selector", "cluster=us1",
                   "-o", "json").json() == []
    assert run_cli("bucket", "downsample", "--bucket", str(root), "--plan", "--id", long_block,
                   "-o", "json").json()[0]["input"] == long_block
    res = run_cli("bucket", "downsample", "--bucket", str(root), "--plan", "--resolution", "2m")
    assert res.exit_code == 2 and "invalid resolution" in res.stderr and "Traceback" not in res.stderr


def test_no_downsample_mark_is_respected(bucket: tuple[Path, str, str]) -> None:
    root, long_block, _ = bucket
    (root / long_block / "no-downsample-mark.json").write_text(
        json.dumps({"id": long_block, "version": 1, "no_downsample_time": 1, "reason": "manual"}))
    assert run_cli("bucket", "downsample", "--bucket", str(root), "--plan", "-o", "json").json() == []


def test_downsample_on_s3(tmp_path: Path, s3_bucket: S3TestBucket) -> None:
    local = tmp_path / "local"
    local.mkdir()
    ulid = write_block(local, 48)
    config = s3_bucket.write_config(tmp_path)
    assert run_cli("bucket", "upload", "--objstore.config-file", config, str(local / ulid)).exit_code == 0
    res = run_cli("bucket", "downsample", "--objstore.config-file", config, "--no-dry-run", "-o", "json")
    assert res.exit_code == 0, res.stderr
    (row,) = res.json()
    assert row["status"] == "uploaded"
    keys = s3_bucket.object_keys()
    assert f"{row['output']}/meta.json" in keys and f"{row['output']}/chunks/000001" in keys
