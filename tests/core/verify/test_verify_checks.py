from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.clihelp import make_openmetrics, tree_digest
from tests.fixtures_prom import needs_promtool, promtool_create_blocks, promtool_dump
from tests.fixtures_s3 import S3TestBucket
from thanostools.core.blockio import download_block, upload_block, write_marker
from thanostools.core.chunkenc import xor
from thanostools.core.errors import ConfigError
from thanostools.core.inspect import scan_bucket
from thanostools.core.objstore.bucket import Bucket, open_bucket
from thanostools.core.tsdb.block import Block
from thanostools.core.tsdb.chunks import ENC_XOR, frame_records, record_bounds
from thanostools.core.tsdb.markers import DeletionMark
from thanostools.core.tsdb.meta import BlockMeta, read_meta_file, write_meta_file
from thanostools.core.tsdb.writer import BlockWriter
from thanostools.core.ulid import new_ulid
from thanostools.core.verify.compare import compare_blocks
from thanostools.core.verify.health import index_health
from thanostools.core.verify.repair import plan_repair
from thanostools.core.verify.report import (
    CHUNK_INTEGRITY,
    DUPLICATED_COMPACTION,
    INDEX_KNOWN_ISSUES,
    MARKERS,
    META_FILES,
    OVERLAPPED_BLOCKS,
    PARTIAL_UPLOADS,
    VerifyReport,
)
from thanostools.core.verify.runner import choose_checks, verify_bucket

H = 3_600_000
LABELS = {"cluster": "eu1"}
OLD_MS = 1_600_000_000_000  # ULID time of leftovers: far older than 48h


def write_block(root: Path, mint: int, maxt: int, *, series: int = 4, labels: dict[str, str] | None = None,
                seed: int = 0) -> BlockMeta:
    w = BlockWriter(str(root), min_time=mint, max_time=maxt, external_labels=labels or LABELS, source="test")
    for i in range(series):
        t = np.arange(mint, maxt, 15_000, dtype=np.int64)
        w.add_samples((("__name__", "up"), ("i", f"{i:02d}")), t, (np.arange(t.size) + seed * 1000 + i) * 1.0)
    return w.finish()


def _chunks(spans: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    parts, mint, maxt, n = [], [], [], 0
    for lo, hi in spans:
        t = np.arange(lo, hi, 15_000, dtype=np.int64)
        parts.append(xor.encode(t, t / 1000.0))
        mint.append(int(t[0]))
        maxt.append(int(t[-1]))
        n += t.size
    buf = np.frombuffer(b"".join(parts), np.uint8).copy()
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
    return buf, offsets, np.array(mint, np.int64), np.array(maxt, np.int64), n


def write_bad_block(root: Path) -> BlockMeta:
    """Block [0, 2h): series a has a duplicated chunk, an Issue-347 chunk and a complete outsider."""
    w = BlockWriter(str(root), min_time=0, max_time=2 * H, external_labels=LABELS, source="test")
    spans = [(0, H), (0, H), (2 * H, 2 * H + 60_000), (3 * H, 3 * H + 60_000)]
    buf, offsets, mint, maxt, n = _chunks(spans)
    w.add_chunks((("__name__", "a"),), np.full(4, ENC_XOR, np.int64), buf, offsets, mint, maxt, n)
    buf, offsets, mint, maxt, n = _chunks([(0, 2 * H)])
    w.add_chunks((("__name__", "b"),), np.full(1, ENC_XOR, np.int64), buf, offsets, mint, maxt, n)
    return w.finish()


def write_malformed_block(root: Path) -> BlockMeta:
    """Series out of order and label names out of order: only possible by going around the writer's checks."""
    w = BlockWriter(str(root), min_time=0, max_time=2 * H, external_labels=LABELS, source="test")
    series = [((("__name__", "z"),), 0), ((("job", "x"), ("__name__", "m")), 0), ((("__name__", "c"),), 0),
              ((("__name__", "m"), ("job", "x")), H)]  # the last one equals the second once its labels are sorted
    for labels, start in series:
        buf, offsets, mint, maxt, n = _chunks([(start, start + H)])
        framed = frame_records(np.full(1, ENC_XOR, np.int64), buf, offsets)
        refs = w._segments.write_records(framed.buf, record_bounds(framed))
        w._index.add(labels, mint, maxt, refs)
        w.num_samples += n
        w.num_chunks += 1
    return w.finish()


def copy_as_new_block(root: Path, meta: BlockMeta) -> str:
    """The same block under a new ULID with the same compaction section: a compaction that ran twice."""
    ulid = new_ulid()
    shutil.copytree(root / meta.ulid, root / ulid)
    m = BlockMeta.from_json((root / ulid / "meta.json").read_bytes())  # still names the original block
    m.ulid = ulid
    write_meta_file(str(root / ulid / "meta.json"), m)
    return ulid




def issues(report: VerifyReport, check: str) -> list[dict[str, object]]:
    return [i.to_dict() for i in report.issues if i.id == check]


# --- clean buckets -----------------------------------------------------------------------------------


def test_clean_bucket_has_no_issues(tmp_path: Path) -> None:
    for k in range(3):
        write_block(tmp_path, k * 2 * H, (k + 1) * 2 * H, seed=k)
    write_block(tmp_path, 0, 2 * H, labels={"cluster": "us1"})  # same time, other group
    report = verify_bucket(open_bucket(str(tmp_path)), deep=True)
    assert report.clean, [i.message for i in report.issues]
    assert report.checked_blocks == 4


@needs_promtool
def test_promtool_blocks_are_clean(tmp_path: Path) -> None:
    root = promtool_create_blocks(make_openmetrics(series=30, hours=5, seed=2), tmp_path / "prom")
    report = verify_bucket(open_bucket(str(root)), deep=True)
    assert report.clean, [i.message for i in report.issues]
    assert report.checked_blocks >= 2


def test_choose_checks() -> None:
    assert choose_checks() == [OVERLAPPED_BLOCKS, INDEX_KNOWN_ISSUES, DUPLICATED_COMPACTION]
    assert CHUNK_INTEGRITY in choose_checks(deep=True)
    assert choose_checks([MARKERS]) == [MARKERS]
    with pytest.raises(ConfigError):
        choose_checks(["nope"])


# --- overlaps ----------------------------------------------------------------------------------------


def test_overlap_is_explained(tmp_path: Path) -> None:
    a = write_block(tmp_path, 0, 2 * H)
    b = write_block(tmp_path, H, 3 * H, seed=1)
    report = verify_bucket(open_bucket(str(tmp_path)))
    [issue] = issues(report, OVERLAPPED_BLOCKS)
    assert issue["kind"] == "overlap" and issue["blocks"] == [a.ulid, b.ulid]
    details = issue["details"]
    assert isinstance(details, dict)
    assert details["overlapping_time"] == [H, 2 * H]
    assert details["redundant"] == []
    assert "do not delete" in str(issue["action"])
    assert issues(report, DUPLICATED_COMPACTION) == []


def test_overlap_of_identical_data_suggests_marking_the_redundant_block(tmp_path: Path) -> None:
    a = write_block(tmp_path, 0, 2 * H)
    b = write_block(tmp_path, 0, 2 * H)  # same samples, own ULID and sources
    [issue] = issues(verify_bucket(open_bucket(str(tmp_path))), OVERLAPPED_BLOCKS)
    assert issue["kind"] == "duplicates"
    details = issue["details"]
    assert isinstance(details, dict)
    [red] = details["redundant"]
    keep, drop = sorted([a.ulid, b.ulid])
    assert red["ulid"] == drop and red["covered_by"] == keep and red["relation"] == "identical_data"
    assert f"--id {drop}" in str(issue["action"])


def test_compare_blocks_names_the_missing_series(tmp_path: Path) -> None:
    a = write_block(tmp_path, 0, 2 * H, series=4)
    b = write_block(tmp_path, 0, 2 * H, series=3)
    result = compare_blocks(Block.open_dir(str(tmp_path / a.ulid)), Block.open_dir(str(tmp_path / b.ulid)))
    assert not result.identical and result.series == 3
    assert result.reason == f'only {a.ulid} has series up{{i="03"}}'


def test_overlap_with_different_values_is_not_a_duplicate(tmp_path: Path) -> None:
    a = write_block(tmp_path, 0, 2 * H)
    b = write_block(tmp_path, 0, 2 * H, seed=3)  # same shape, different values
    result = compare_blocks(Block.open_dir(str(tmp_path / a.ulid)), Block.open_dir(str(tmp_path / b.ulid)))
    assert not result.identical and "values differ" in result.reason
    [issue] = issues(verify_bucket(open_bucket(str(tmp_path))), OVERLAPPED_BLOCKS)
    assert issue["kind"] == "overlap"


def test_duplicated_compaction(tmp_path: Path) -> None:
    a = write_block(tmp_path, 0, 2 * H)
    dup = copy_as_new_block(tmp_path, a)
    report = verify_bucket(open_bucket(str(tmp_path)))
    [issue] = issues(report, DUPLICATED_COMPACTION)
    keep, other = sorted([a.ulid, dup])
    details = issue["details"]
    assert isinstance(details, dict)
    assert issue["repairable"] and (details["keep"], details["redundant"]) == (keep, [other])
    [overlap] = issues(report, OVERLAPPED_BLOCKS)
    assert overlap["kind"] == "duplicates"


# --- index health ------------------------------------------------------------------------------------


def test_index_issues_are_found(tmp_path: Path) -> None:
    bad = write_bad_block(tmp_path)
    write_block(tmp_path, 2 * H, 4 * H)
    report = verify_bucket(open_bucket(str(tmp_path)))
    [issue] = issues(report, INDEX_KNOWN_ISSUES)
    assert issue["blocks"] == [bad.ulid] and issue["repairable"]
    assert issue["kind"] == "chunks_outside_range"
    d = issue["details"]
    assert isinstance(d, dict)
    assert (d["duplicated_chunks"], d["issue347_outsiders"], d["complete_outsiders"], d["outsiders"]) == (1, 1, 1, 2)
    assert d["critical_outsiders"] == 1 and d["overlapping_chunks"] == 0
    assert d["total_series"] == 2 and d["total_chunks"] == 5


def test_malformed_index_is_found(tmp_path: Path) -> None:
    meta = write_malformed_block(tmp_path)
    block = Block.open_dir(str(tmp_path / meta.ulid))
    h = index_health(block.index, block.meta)
    assert h.unsorted_series >= 1 and h.out_of_order_labels == 1 and h.any_error
    [issue] = issues(verify_bucket(open_bucket(str(tmp_path))), INDEX_KNOWN_ISSUES)
    assert issue["kind"] == "malformed_index" and issue["repairable"]


def test_index_stats_match_what_the_writer_recorded(tmp_path: Path) -> None:
    meta = write_block(tmp_path, 0, 2 * H, series=50)
    block = Block.open_dir(str(tmp_path / meta.ulid))
    h = index_health(block.index, block.meta, batch_size=7)  # stats carry across batches
    assert meta.thanos is not None
    assert h.series_max_size == meta.thanos.index_stats.series_max_size
    assert 0 < h.chunk_max_size <= meta.thanos.index_stats.chunk_max_size + 64


# --- deep checks -------------------------------------------------------------------------------------


def test_bad_crc_is_found_only_by_deep(tmp_path: Path) -> None:
    meta = write_block(tmp_path, 0, 2 * H)
    seg = tmp_path / meta.ulid / "chunks" / "000001"
    data = bytearray(seg.read_bytes())
    data[40] ^= 0xFF
    seg.write_bytes(bytes(data))
    bucket = open_bucket(str(tmp_path))
    assert verify_bucket(bucket).clean
    [issue] = issues(verify_bucket(bucket, deep=True), CHUNK_INTEGRITY)
    assert issue["kind"] == "chunk_crc_mismatch" and issue["blocks"] == [meta.ulid]
    d = issue["details"]
    assert isinstance(d, dict)
    [bad] = d["bad_chunks"]
    assert bad["file"] == "chunks/000001" and "checksum" in bad["error"]


def test_missing_chunk_file_is_found(tmp_path: Path) -> None:
    meta = write_block(tmp_path, 0, 2 * H)
    (tmp_path / meta.ulid / "chunks" / "000001").unlink()
    report = verify_bucket(open_bucket(str(tmp_path)), deep=True)
    [files] = issues(report, META_FILES)
    assert files["kind"] == "missing_file" and "chunks/000001" in str(files["message"])
    [chunks] = issues(report, CHUNK_INTEGRITY)
    assert chunks["blocks"] == [meta.ulid]


def test_uploaded_file_hash_and_size_mismatch(tmp_path: Path) -> None:
    local, remote = tmp_path / "local", tmp_path / "bucket"
    remote.mkdir()
    meta = write_block(local, 0, 2 * H)
    bucket = open_bucket(str(remote))
    upload_block(str(local / meta.ulid), bucket, hash_files=True)
    assert verify_bucket(bucket, deep=True).clean
    index = remote / meta.ulid / "index"
    data = bytearray(index.read_bytes())
    data[6] ^= 0x01  # inside the symbol table: same size, different hash
    index.write_bytes(bytes(data))
    seg = remote / meta.ulid / "chunks" / "000001"
    seg.write_bytes(seg.read_bytes() + b"\0")
    [issue] = issues(verify_bucket(bucket, deep=True, checks=[META_FILES]), META_FILES)
    kinds = {p["kind"]: p["file"] for p in issue["details"]["problems"]}  # type: ignore[index]
    assert kinds == {"hash_mismatch": "index", "size_mismatch": "chunks/000001"}


def test_partial_upload_orphan_and_broken_markers(tmp_path: Path) -> None:
    good = write_block(tmp_path, 0, 2 * H)
    partial = new_ulid(OLD_MS)
    (tmp_path / partial / "chunks").mkdir(parents=True)
    (tmp_path / partial / "index").write_bytes(b"x" * 10)
    orphan = new_ulid(OLD_MS)
    bucket = open_bucket(str(tmp_path))
    write_marker(bucket, DeletionMark(orphan, 1_600_000_000))
    (tmp_path / good.ulid / "no-compact-mark.json").write_text("{not json")
    report = verify_bucket(bucket, deep=True)
    [p] = issues(report, PARTIAL_UPLOADS)
    assert p["blocks"] == [partial] and "cleanup" in str(p["action"])
    kinds = {(i["kind"], i["blocks"][0]) for i in issues(report, MARKERS)}  # type: ignore[index]
    assert kinds == {("orphan_marker", orphan), ("broken_marker", good.ulid)}
    assert not issues(report, INDEX_KNOWN_ISSUES)


def test_marked_blocks_are_skipped_and_ids_restrict(tmp_path: Path) -> None:
    a = write_block(tmp_path, 0, 2 * H)
    b = write_block(tmp_path, H, 3 * H, seed=1)
    c = write_bad_block(tmp_path / "x")
    shutil.move(str(tmp_path / "x" / c.ulid), str(tmp_path / c.ulid))
    shutil.rmtree(tmp_path / "x")
    bucket = open_bucket(str(tmp_path))
    report = verify_bucket(bucket, ids=[c.ulid])
    assert sorted(i.id for i in report.issues) == [INDEX_KNOWN_ISSUES, OVERLAPPED_BLOCKS]
    assert all(c.ulid in i.blocks for i in report.issues)
    write_marker(bucket, DeletionMark(b.ulid, 1_600_000_000))
    write_marker(bucket, DeletionMark(c.ulid, 1_600_000_000))
    assert verify_bucket(bucket).clean
    assert not verify_bucket(bucket, include_deleted=True).clean
    assert verify_bucket(bucket, ids=[a.ulid]).checked_blocks == 1


# --- repair ------------------------------------------------------------------------------------------


def _dump_series(dump: str, name: str) -> list[str]:
    return [line for line in dump.splitlines() if line.startswith(f'{{__name__="{name}"}}')]


def _check_repaired(backup: Bucket, bad: BlockMeta, new_dir: Path) -> None:
    """The original is in the backup; the new block keeps range and sources, has only the good chunks."""
    assert backup.exists(f"{bad.ulid}/meta.json") and backup.exists(f"{bad.ulid}/index")
    meta = read_meta_file(str(new_dir / "meta.json"))
    assert meta.thanos is not None and meta.thanos.source == "bucket.repair"
    assert (meta.min_time, meta.max_time, meta.sources) == (bad.min_time, bad.max_time, bad.sources)
    assert meta.stats.num_chunks == 2 and meta.stats.num_series == 2


@needs_promtool
def test_repair_local_bucket(tmp_path: Path) -> None:
    root, backup_dir = tmp_path / "bucket", tmp_path / "backup"
    root.mkdir()
    bad = write_bad_block(root)
    bucket, backup = open_bucket(str(root)), open_bucket(str(backup_dir))
    report = verify_bucket(bucket)
    before = tree_digest(root)
    plan = plan_repair(bucket, report, backup=None, dry_run=True)
    assert [(a.action, a.block, a.status) for a in plan.actions] == [("repair-index", bad.ulid, "planned")]
    assert tree_digest(root) == before and not backup_dir.exists()
    with pytest.raises(ConfigError):
        plan_repair(bucket, report, backup=None, dry_run=False)
    backup_dir.mkdir()
    plan = plan_repair(bucket, report, backup=backup, dry_run=False)
    [action] = plan.actions
    assert action.status == "done", action.error
    new = str(action.details["new_block"])
    assert json.loads((root / bad.ulid / "deletion-mark.json").read_text())["details"] == f"repaired: replaced by {new}"
    assert verify_bucket(bucket, deep=True).clean
    fresh = tmp_path / "fresh"
    shutil.copytree(root / new, fresh / new)
    _check_repaired(backup, bad, fresh / new)
    dump = promtool_dump(fresh)
    a_lines = _dump_series(dump, "a")
    assert len(a_lines) == H // 15_000  # the duplicated chunk's samples appear once
    stamps = [int(re.split(r"\s+", line)[-1]) for line in a_lines]
    assert max(stamps) < H and len(set(stamps)) == len(stamps)  # outsiders gone
    assert len(_dump_series(dump, "b")) == 2 * H // 15_000


def test_repair_malformed_index_reorders(tmp_path: Path) -> None:
    root = tmp_path / "bucket"
    root.mkdir()
    meta = write_malformed_block(root)
    bucket = open_bucket(str(root))
    plan = plan_repair(bucket, verify_bucket(bucket), backup=open_bucket(str(tmp_path / "bk")), dry_run=False)
    assert [a.status for a in plan.actions] == ["done"], plan.actions[0].error
    assert verify_bucket(bucket, deep=True).clean
    new = str(plan.actions[0].details["new_block"])
    block = Block.open_dir(str(root / new))
    batches = list(block.select())
    assert [dict(lab)["__name__"] for b in batches for lab in b.labels] == ["c", "m", "z"] and meta.ulid != new
    assert [np.diff(b.offsets).tolist() for b in batches] == [[240, 480, 240]]  # m merged from two series


def test_repair_duplicated_compaction(tmp_path: Path) -> None:
    root = tmp_path / "bucket"
    root.mkdir()
    a = write_block(root, 0, 2 * H)
    dup = copy_as_new_block(root, a)
    keep, other = sorted([a.ulid, dup])
    bucket = open_bucket(str(root))
    report = verify_bucket(bucket, checks=[DUPLICATED_COMPACTION])
    plan = plan_repair(bucket, report, backup=open_bucket(str(tmp_path / "bk")), dry_run=False)
    assert [(x.action, x.block, x.status) for x in plan.actions] == [("backup-and-mark", other, "done")]
    assert (root / other / "deletion-mark.json").exists() and not (root / keep / "deletion-mark.json").exists()
    assert (tmp_path / "bk" / other / "meta.json").read_bytes() == (root / other / "meta.json").read_bytes()
    assert verify_bucket(bucket).clean


@needs_promtool
def test_repair_on_s3(s3_bucket: S3TestBucket, tmp_path: Path) -> None:
    local = tmp_path / "local"
    bad = write_bad_block(local)
    bucket = open_bucket(s3_bucket.url)
    upload_block(str(local / bad.ulid), bucket)
    report = verify_bucket(bucket, deep=True)
    assert [i.id for i in report.issues] == [INDEX_KNOWN_ISSUES]
    keys_before = s3_bucket.object_keys()
    plan_repair(bucket, report, backup=None, dry_run=True)
    assert s3_bucket.object_keys() == keys_before
    (tmp_path / "backup").mkdir()
    backup = open_bucket(str(tmp_path / "backup"))
    plan = plan_repair(bucket, report, backup=backup, dry_run=False)
    [action] = plan.actions
    assert action.status == "done", action.error
    new = str(action.details["new_block"])
    keys = s3_bucket.object_keys()
    assert f"{bad.ulid}/deletion-mark.json" in keys and f"{new}/meta.json" in keys
    assert verify_bucket(bucket, deep=True).clean
    fresh = tmp_path / "fresh"
    download_block(bucket, new, fresh)
    _check_repaired(backup, bad, fresh / new)
    a_lines = _dump_series(promtool_dump(fresh), "a")
    assert len(a_lines) == H // 15_000
    assert [b.ulid for b in scan_bucket(backup).blocks] == [bad.ulid]


def test_chunk_partly_outside_is_critical_and_not_repaired(tmp_path: Path) -> None:
    w = BlockWriter(str(tmp_path), min_time=0, max_time=2 * H, external_labels=LABELS, source="test")
    buf, offsets, mint, maxt, n = _chunks([(2 * H - 60_000, 2 * H + 60_000)])
    w.add_chunks((("__name__", "a"),), np.full(1, ENC_XOR, np.int64), buf, offsets, mint, maxt, n)
    meta = w.finish()
    bucket = open_bucket(str(tmp_path))
    report = verify_bucket(bucket)
    [issue] = report.issues
    assert issue.kind == "chunks_outside_range" and not issue.repairable and "partly outside" in issue.action
    before = tree_digest(tmp_path)
    plan = plan_repair(bucket, report, backup=open_bucket(str(tmp_path / "bk")), dry_run=False)
    assert [(a.action, a.block) for a in plan.actions] == [("skip", meta.ulid)]
    assert tree_digest(tmp_path) == before
