from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from tests.clihelp import make_openmetrics, run_cli, tree_digest
from tests.fixtures_prom import needs_promtool, promtool_create_blocks, promtool_dump
from tests.fixtures_s3 import S3TestBucket
from thanostools.core.blockio import upload_block, write_marker
from thanostools.core.chunkenc import xor
from thanostools.core.objstore.bucket import open_bucket
from thanostools.core.tsdb.chunks import ENC_XOR
from thanostools.core.tsdb.markers import DeletionMark
from thanostools.core.tsdb.meta import BlockMeta, write_meta_file
from thanostools.core.tsdb.writer import BlockWriter
from thanostools.core.ulid import new_ulid

H = 3_600_000
OLD_MS = 1_600_000_000_000


def block(root: Path, mint: int, maxt: int, *, seed: int = 0) -> BlockMeta:
    w = BlockWriter(str(root), min_time=mint, max_time=maxt, external_labels={"cluster": "eu1"}, source="test")
    for i in range(3):
        t = np.arange(mint, maxt, 15_000, dtype=np.int64)
        w.add_samples((("__name__", "up"), ("i", str(i))), t, (np.arange(t.size) + seed + i) * 1.0)
    return w.finish()


def bad_block(root: Path, mint: int, maxt: int) -> BlockMeta:
    """Series ``a`` has a duplicated chunk and a chunk completely outside the block range."""
    w = BlockWriter(str(root), min_time=mint, max_time=maxt, external_labels={"cluster": "eu1"}, source="test")
    ts = [np.arange(mint, mint + H, 15_000, dtype=np.int64)] * 2 + [np.arange(maxt + H, maxt + 2 * H, 15_000)]
    parts = [xor.encode(t, t * 0.5) for t in ts]
    buf = np.frombuffer(b"".join(parts), np.uint8).copy()
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
    w.add_chunks((("__name__", "a"),), np.full(3, ENC_XOR, np.int64), buf, offsets,
                 np.array([t[0] for t in ts]), np.array([t[-1] for t in ts]), sum(t.size for t in ts))
    return w.finish()




def test_clean_bucket_exits_zero(tmp_path: Path) -> None:
    block(tmp_path, 0, 2 * H)
    block(tmp_path, 2 * H, 4 * H)
    res = run_cli("bucket", "verify", "--bucket", str(tmp_path), "--deep")
    assert res.exit_code == 0, res.stderr
    assert res.stdout == "" and "no issues found (2 blocks checked" in res.stderr
    doc = run_cli("bucket", "verify", "--bucket", str(tmp_path), "-o", "json").json()
    assert doc["clean"] is True and doc["issues"] == []


@needs_promtool
def test_promtool_blocks_verify_clean(tmp_path: Path) -> None:
    root = promtool_create_blocks(make_openmetrics(series=20, hours=3, seed=9), tmp_path / "p")
    res = run_cli("bucket", "verify", "--bucket", str(root), "--deep", "-o", "json")
    assert res.exit_code == 0, res.stdout + res.stderr
    assert res.json()["checked_blocks"] >= 2


def planted(root: Path) -> dict[str, str]:
    """One of each problem verify knows about."""
    a = block(root, 0, 2 * H)
    b = block(root, H, 3 * H, seed=7)  # overlaps a with other data
    c = block(root, 10 * H, 12 * H)
    dup = new_ulid()
    shutil.copytree(root / c.ulid, root / dup)
    m = BlockMeta.from_json((root / dup / "meta.json").read_bytes())  # still names block c
    m.ulid = dup
    write_meta_file(str(root / dup / "meta.json"), m)
    bad = bad_block(root, 20 * H, 22 * H)
    crc = block(root, 30 * H, 32 * H)
    seg = root / crc.ulid / "chunks" / "000001"
    data = bytearray(seg.read_bytes())
    data[30] ^= 0x55
    seg.write_bytes(bytes(data))
    gone = block(root, 40 * H, 42 * H)
    (root / gone.ulid / "chunks" / "000001").unlink()
    partial = new_ulid(OLD_MS)
    (root / partial / "chunks").mkdir(parents=True)
    (root / partial / "chunks" / "000001").write_bytes(b"\0" * 8)
    orphan = new_ulid(OLD_MS)
    write_marker(open_bucket(str(root)), DeletionMark(orphan, 1_600_000_000))
    return {"a": a.ulid, "b": b.ulid, "c": c.ulid, "dup": dup, "bad": bad.ulid, "crc": crc.ulid, "gone": gone.ulid,
            "partial": partial, "orphan": orphan}


def test_planted_issues_are_all_found(tmp_path: Path) -> None:
    ids = planted(tmp_path)
    res = run_cli("bucket", "verify", "--bucket", str(tmp_path), "--deep", "-o", "json")
    assert res.exit_code == 3 and "issue(s) found" in res.stderr
    found = {(i["id"], i["kind"], tuple(i["blocks"])) for i in res.json()["issues"]}
    assert ("overlapped_blocks", "overlap", (ids["a"], ids["b"])) in found
    assert ("duplicated_compaction", "duplicated_compaction", tuple(sorted([ids["c"], ids["dup"]]))) in found
    assert ("index_known_issues", "chunks_outside_range", (ids["bad"],)) in found
    assert ("chunk_integrity", "chunk_crc_mismatch", (ids["crc"],)) in found
    assert ("meta_files", "missing_file", (ids["gone"],)) in found
    assert ("chunk_integrity", "missing_segment", (ids["gone"],)) in found
    assert ("partial_uploads", "partial_upload", (ids["partial"],)) in found
    assert ("markers", "orphan_marker", (ids["orphan"],)) in found
    table = run_cli("bucket", "verify", "--bucket", str(tmp_path))
    assert table.exit_code == 3
    assert "overlapped_blocks" in table.stdout and "suggested actions:" in table.stdout
    assert "chunk_integrity" not in table.stdout  # not without --deep


def test_issue_and_id_selection(tmp_path: Path) -> None:
    ids = planted(tmp_path)
    res = run_cli("bucket", "verify", "--bucket", str(tmp_path), "--issues", "markers,partial_uploads", "-o", "json")
    assert res.exit_code == 3
    assert {i["id"] for i in res.json()["issues"]} == {"markers", "partial_uploads"}
    res = run_cli("bucket", "verify", "--bucket", str(tmp_path), "--id", ids["bad"], "-o", "json")
    assert [i["blocks"] for i in res.json()["issues"]] == [[ids["bad"]]]
    res = run_cli("bucket", "verify", "--bucket", str(tmp_path), "--id", ids["a"], "--issues", "index_known_issues")
    assert res.exit_code == 0
    res = run_cli("bucket", "verify", "--bucket", str(tmp_path), "--id", new_ulid())
    assert res.exit_code == 1 and "not found" in res.stderr
    res = run_cli("bucket", "verify", "--bucket", str(tmp_path), "--issues", "nonsense")
    assert res.exit_code == 2 and "unknown verify check" in res.stderr


def test_unreachable_bucket_exits_one(tmp_path: Path) -> None:
    res = run_cli("bucket", "verify", "--bucket", str(tmp_path / "missing"))
    assert res.exit_code == 1 and res.stderr.startswith("error:") and len(res.stderr.splitlines()) == 1


@needs_promtool
def test_repair_dry_run_then_for_real(tmp_path: Path) -> None:
    root, backup = tmp_path / "bucket", tmp_path / "backup"
    root.mkdir()
    good = block(root, 0, 2 * H)
    bad = bad_block(root, 2 * H, 4 * H)
    before = tree_digest(root)
    res = run_cli("bucket", "verify", "--bucket", str(root), "--repair")
    assert res.exit_code == 3
    assert "repair plan:" in res.stdout and "repair-index" in res.stdout and "dry run" in res.stderr
    assert tree_digest(root) == before
    res = run_cli("bucket", "verify", "--bucket", str(root), "--repair", "--no-dry-run")
    assert res.exit_code == 2 and "backup" in res.stderr
    assert tree_digest(root) == before
    res = run_cli("bucket", "verify", "--bucket", str(root), "--repair", "--no-dry-run", "--backup.bucket",
                  str(backup), "-o", "json")
    assert res.exit_code == 0, res.stderr
    [action] = res.json()["repair"]["actions"]
    assert action["status"] == "done"
    new = action["details"]["new_block"]
    assert "after repair: 0 issue(s) remain" in res.stderr and "audit=upload" in res.stderr
    assert (root / bad.ulid / "deletion-mark.json").exists() and (backup / bad.ulid / "index").exists()
    assert sorted(p.name for p in root.iterdir()) == sorted([good.ulid, bad.ulid, new])
    only_new = tmp_path / "new"
    shutil.copytree(root / new, only_new / new)
    lines = [x for x in promtool_dump(only_new).splitlines() if x.startswith('{__name__="a"}')]
    assert len(lines) == H // 15_000  # one copy of the duplicated chunk, no outsider samples
    assert max(int(x.split()[-1]) for x in lines) < 3 * H


def test_repair_on_s3_via_objstore_config(tmp_path: Path, s3_bucket: S3TestBucket) -> None:
    local = tmp_path / "local"
    bad = bad_block(local, 0, 2 * H)
    upload_block(str(local / bad.ulid), open_bucket(s3_bucket.url))
    cfg = s3_bucket.write_config(tmp_path)
    keys = s3_bucket.object_keys()
    res = run_cli("bucket", "verify", "--objstore.config-file", cfg, "--repair", "-o", "json")
    assert res.exit_code == 3 and s3_bucket.object_keys() == keys
    res = run_cli("bucket", "verify", "--objstore.config-file", cfg, "--repair", "--no-dry-run",
                  "--backup.bucket", str(tmp_path / "bk"))
    assert res.exit_code == 0, res.stderr
    after = s3_bucket.object_keys()
    assert f"{bad.ulid}/deletion-mark.json" in after
    new_metas = [k for k in after if k.endswith("/meta.json") and not k.startswith(bad.ulid)]
    assert len(new_metas) == 1
    assert run_cli("bucket", "verify", "--objstore.config-file", cfg, "--deep").exit_code == 0
