from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from tests.clihelp import run_cli, tree_digest
from tests.fixtures_s3 import S3TestBucket
from thanostools.core.blockio import write_marker
from thanostools.core.objstore.bucket import open_bucket
from thanostools.core.tsdb.markers import DeletionMark
from thanostools.core.tsdb.meta import BlockMeta
from thanostools.core.tsdb.writer import BlockWriter
from thanostools.core.ulid import new_ulid

H = 3_600_000
DAY = 24 * H
NOW = int(time.time() * 1000)


def block(root: Path, mint: int, maxt: int, *, cluster: str = "eu1", resolution: int = 0) -> BlockMeta:
    w = BlockWriter(str(root), min_time=mint, max_time=maxt, external_labels={"cluster": cluster}, source="test",
                    resolution=resolution)
    t = np.arange(mint, mint + H, 60_000, dtype=np.int64)
    w.add_samples((("__name__", "up"),), t, np.ones(t.size))
    return w.finish()




@pytest.fixture
def bucket_dir(tmp_path: Path) -> dict[str, str]:
    """Old and recent blocks, a block marked for deletion long ago, an old partial upload."""
    root = tmp_path / "bucket"
    old = block(root, NOW - 60 * DAY, NOW - 60 * DAY + 2 * H)
    recent = block(root, NOW - 3 * H, NOW - H, cluster="us1")
    old_5m = block(root, NOW - 60 * DAY, NOW - 58 * DAY, resolution=300_000)
    marked = block(root, NOW - 10 * DAY, NOW - 10 * DAY + 2 * H)
    write_marker(open_bucket(str(root)), DeletionMark(marked.ulid, (NOW - 5 * DAY) // 1000))
    partial = new_ulid(NOW - 5 * DAY)
    (root / partial / "chunks").mkdir(parents=True)
    (root / partial / "chunks" / "000001").write_bytes(b"\0" * 8)
    return {"root": str(root), "old": old.ulid, "recent": recent.ulid, "old_5m": old_5m.ulid,
            "marked": marked.ulid, "partial": partial}


def test_every_mutating_command_changes_nothing_in_dry_run(bucket_dir: dict[str, str], tmp_path: Path) -> None:
    root = Path(bucket_dir["root"])
    before = tree_digest(root)
    dst = tmp_path / "dst"
    commands = [
        ["mark", "--kind", "deletion", "--id", bucket_dir["old"]],
        ["mark", "--kind", "no-compact", "--selector", "cluster=eu1"],
        ["unmark", "--kind", "deletion", "--id", bucket_dir["marked"]],
        ["retention", "--retention.resolution-raw", "30d"],
        ["cleanup"],
        ["replicate", "--to", str(dst)],
        ["verify", "--repair"],
    ]
    for cmd in commands:
        res = run_cli("bucket", *cmd, "--bucket", str(root))
        assert res.exit_code in (0, 3), (cmd, res.stderr)
        assert tree_digest(root) == before, cmd
        if cmd[0] != "verify":
            assert "dry run:" in res.stderr and "planned" in res.stdout, cmd
    assert not dst.exists() or not any(dst.iterdir())


def test_mark_and_unmark(bucket_dir: dict[str, str]) -> None:
    root = bucket_dir["root"]
    res = run_cli("bucket", "mark", "--bucket", root, "--kind", "no-downsample", "--id", bucket_dir["old"],
                  "--details", "keep raw", "--no-dry-run", "-o", "json")
    assert res.exit_code == 0, res.stderr
    [action] = res.json()["actions"]
    assert action["status"] == "done" and action["action"] == "mark-no-downsample"
    mark = json.loads((Path(root) / bucket_dir["old"] / "no-downsample-mark.json").read_text())
    assert mark["details"] == "keep raw" and mark["reason"] == "manual"
    assert "audit=mark-no-downsample" in res.stderr
    res = run_cli("bucket", "mark", "--bucket", root, "--kind", "no-downsample", "--id", bucket_dir["old"],
                  "--no-dry-run")
    assert res.exit_code == 0 and "skip" in res.stdout and "already has" in res.stdout
    res = run_cli("bucket", "unmark", "--bucket", root, "--kind", "no-downsample", "--selector", "cluster=eu1",
                  "--no-dry-run")
    assert res.exit_code == 0, res.stderr
    assert not (Path(root) / bucket_dir["old"] / "no-downsample-mark.json").exists()


def test_mark_with_thanos_flags(bucket_dir: dict[str, str]) -> None:
    """`thanos tools bucket mark --id X --marker no-compact-mark.json --details …` and `--remove`, as in Thanos."""
    root, old = bucket_dir["root"], bucket_dir["old"]
    res = run_cli("bucket", "mark", "--bucket", root, "--id", old, "--marker", "no-compact-mark.json",
                  "--details", "investigating", "--no-dry-run")
    assert res.exit_code == 0, res.stderr
    mark = json.loads((Path(root) / old / "no-compact-mark.json").read_text())
    assert mark["details"] == "investigating"
    res = run_cli("bucket", "mark", "--bucket", root, "--id", old, "--marker", "no-compact-mark.json", "--remove")
    assert res.exit_code == 0 and "dry run:" in res.stderr and (Path(root) / old / "no-compact-mark.json").exists()
    res = run_cli("bucket", "mark", "--bucket", root, "--id", old, "--marker", "no-compact-mark.json", "--remove",
                  "--no-dry-run")
    assert res.exit_code == 0, res.stderr
    assert not (Path(root) / old / "no-compact-mark.json").exists()


def test_mark_errors(bucket_dir: dict[str, str]) -> None:
    root = bucket_dir["root"]
    res = run_cli("bucket", "mark", "--bucket", root, "--kind", "deletion")
    assert res.exit_code == 2 and "--id or a filter" in res.stderr
    res = run_cli("bucket", "mark", "--bucket", root, "--kind", "deletion", "--id", new_ulid())
    assert res.exit_code == 1 and "not found" in res.stderr
    res = run_cli("bucket", "mark", "--bucket", root, "--kind", "bogus", "--id", bucket_dir["old"])
    assert res.exit_code == 2
    res = run_cli("bucket", "mark", "--bucket", root, "--id", bucket_dir["old"])
    assert res.exit_code == 2 and "--kind" in res.stderr and "--marker" in res.stderr
    res = run_cli("bucket", "mark", "--bucket", root, "--marker", "meta.json", "--id", bucket_dir["old"])
    assert res.exit_code == 2 and "unknown marker kind 'meta.json'" in res.stderr
    res = run_cli("bucket", "mark", "--bucket", root, "--kind", "deletion", "--marker", "no-compact-mark.json",
                  "--id", bucket_dir["old"])
    assert res.exit_code == 2 and "name different markers" in res.stderr


def test_retention(bucket_dir: dict[str, str]) -> None:
    root = bucket_dir["root"]
    res = run_cli("bucket", "retention", "--bucket", root, "--retention.resolution-raw", "30d", "-o", "json")
    planned = {(a["action"], a["block"]) for a in res.json()["actions"]}
    assert planned == {("mark-deletion", bucket_dir["old"])}
    res = run_cli("bucket", "retention", "--bucket", root, "--retention.resolution-raw", "7d",
                  "--retention.resolution-5m", "90d", "--no-dry-run")
    assert res.exit_code == 0, res.stderr
    marked = {p.parent.name for p in Path(root).glob("*/deletion-mark.json")}
    assert marked == {bucket_dir["old"], bucket_dir["marked"]}
    res = run_cli("bucket", "retention", "--bucket", root, "--retention.resolution-raw", "soon")
    assert res.exit_code == 2


def test_cleanup(bucket_dir: dict[str, str]) -> None:
    root = Path(bucket_dir["root"])
    res = run_cli("bucket", "cleanup", "--bucket", str(root), "-o", "json")
    acts = {a["block"]: a["action"] for a in res.json()["actions"]}
    assert acts == {bucket_dir["marked"]: "delete", bucket_dir["partial"]: "delete-partial"}
    res = run_cli("bucket", "cleanup", "--bucket", str(root), "--delete-delay", "30d", "--no-dry-run")
    assert res.exit_code == 0, res.stderr
    assert not (root / bucket_dir["partial"]).exists() and (root / bucket_dir["marked"] / "meta.json").exists()
    res = run_cli("bucket", "cleanup", "--bucket", str(root), "--no-dry-run")
    assert res.exit_code == 0 and "audit=delete" in res.stderr
    left = sorted(p.name for p in root.iterdir())
    assert left == sorted([bucket_dir["old"], bucket_dir["recent"], bucket_dir["old_5m"]])


def test_cleanup_honours_the_partial_upload_age_it_is_given(tmp_path: Path) -> None:
    root = tmp_path / "bucket"
    block(root, NOW - 3 * H, NOW - H)
    fresh = new_ulid(NOW - 10 * 60_000)  # an upload that stopped 10 minutes ago
    (root / fresh / "chunks").mkdir(parents=True)
    (root / fresh / "chunks" / "000001").write_bytes(b"\0" * 8)
    assert run_cli("bucket", "verify", "--bucket", str(root), "--deep").exit_code == 3
    res = run_cli("bucket", "cleanup", "--bucket", str(root), "--consistency-delay", "0s", "--delete-delay", "0s",
                  "--no-dry-run", "-o", "json")
    assert res.exit_code == 0, res.stderr
    (kept,) = res.json()["actions"]
    assert kept["action"] == "skip" and "--partial-upload-age 48h" in kept["reason"]
    assert (root / fresh).exists()
    res = run_cli("bucket", "cleanup", "--bucket", str(root), "--consistency-delay", "0s", "--partial-upload-age",
                  "5m", "--no-dry-run")
    assert res.exit_code == 0, res.stderr
    assert not (root / fresh).exists()
    assert any("audit=delete-partial" in line and fresh in line for line in res.stderr.splitlines())
    assert run_cli("bucket", "verify", "--bucket", str(root), "--deep").exit_code == 0


def test_replicate_local_and_s3(bucket_dir: dict[str, str], tmp_path: Path, s3_bucket: S3TestBucket) -> None:
    root = bucket_dir["root"]
    res = run_cli("bucket", "replicate", "--bucket", root)
    assert res.exit_code == 2 and "destination" in res.stderr
    dst = tmp_path / "dst"
    res = run_cli("bucket", "replicate", "--bucket", root, "--to", str(dst), "--resolution", "raw",
                  "--selector", "cluster=us1", "--no-dry-run")
    assert res.exit_code == 0, res.stderr
    assert sorted(p.name for p in dst.iterdir()) == [bucket_dir["recent"]]
    cfg = s3_bucket.write_config(tmp_path)
    res = run_cli("bucket", "replicate", "--bucket", root, "--to.objstore.config-file", cfg, "--compaction-level",
                  "1", "--no-dry-run", "-o", "json")
    assert res.exit_code == 0, res.stderr
    acts = {a["block"]: (a["action"], a["status"]) for a in res.json()["actions"]}
    assert acts[bucket_dir["marked"]] == ("skip", "skipped")  # marked for deletion in the source
    assert acts[bucket_dir["old"]] == ("replicate", "done")
    metas = sorted(k.split("/")[0] for k in s3_bucket.object_keys() if k.endswith("/meta.json"))
    assert metas == sorted([bucket_dir["old"], bucket_dir["recent"], bucket_dir["old_5m"]])
    res = run_cli("bucket", "replicate", "--bucket", root, "--to.objstore.config-file", cfg, "-o", "json")
    assert all(a["action"] == "skip" for a in res.json()["actions"])
    assert run_cli("bucket", "ls", "--objstore.config-file", cfg, "-o", "ids").stdout.split() == \
        run_cli("bucket", "ls", "--bucket", root, "-o", "ids", "--exclude-delete").stdout.split()
