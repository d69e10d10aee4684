from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from tests.clihelp import tree_digest
from tests.fixtures_s3 import S3TestBucket
from thanostools.core import lifecycle
from thanostools.core.blockio import write_marker
from thanostools.core.errors import ConfigError, NotFoundError, SourceError
from thanostools.core.inspect import BlockFilter, parse_label_selectors
from thanostools.core.objstore.bucket import Bucket, open_bucket
from thanostools.core.tsdb.markers import DeletionMark, MarkerKind, NoCompactMark
from thanostools.core.tsdb.meta import BlockMeta
from thanostools.core.tsdb.writer import BlockWriter
from thanostools.core.ulid import new_ulid

H = 3_600_000
DAY = 24 * H
NOW = 1_700_000_000_000


def write_block(root: Path, mint: int, maxt: int, *, labels: dict[str, str] | None = None,
                resolution: int = 0, level: int = 1) -> BlockMeta:
    w = BlockWriter(str(root), min_time=mint, max_time=maxt, external_labels=labels or {"cluster": "eu1"},
                    source="test", resolution=resolution, level=level)
    t = np.arange(mint, min(maxt, mint + H), 60_000, dtype=np.int64)
    w.add_samples((("__name__", "up"),), t, np.ones(t.size))
    return w.finish()




def audit_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [r.kv for r in caplog.records if r.name == "thanostools.audit"]  # type: ignore[attr-defined]


# --- mark / unmark -----------------------------------------------------------------------------------


def test_mark_by_id(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    a, b = write_block(tmp_path, 0, 2 * H), write_block(tmp_path, 2 * H, 4 * H)
    bucket = open_bucket(str(tmp_path))
    before = tree_digest(tmp_path)
    plan = lifecycle.mark(bucket, MarkerKind.DELETION, ids=[a.ulid], details="bad data")
    assert [(x.action, x.block, x.status) for x in plan.actions] == [("mark-deletion", a.ulid, "planned")]
    assert tree_digest(tmp_path) == before and not audit_lines(caplog)
    caplog.set_level(logging.WARNING, logger="thanostools.audit")
    plan = lifecycle.mark(bucket, MarkerKind.DELETION, ids=[a.ulid], details="bad data", dry_run=False, now_s=123)
    assert plan.actions[0].status == "done"
    mark = json.loads((tmp_path / a.ulid / "deletion-mark.json").read_text())
    assert mark == {"id": a.ulid, "version": 1, "details": "bad data", "deletion_time": 123}
    assert not (tmp_path / b.ulid / "deletion-mark.json").exists()
    [line] = audit_lines(caplog)
    assert line["audit"] == "mark-deletion" and line["blocks"] == a.ulid and line["dry_run"] is False
    again = lifecycle.mark(bucket, MarkerKind.DELETION, ids=[a.ulid], details="other", dry_run=False)
    assert again.actions[0].action == "skip" and "already" in again.actions[0].reason
    assert json.loads((tmp_path / a.ulid / "deletion-mark.json").read_text())["details"] == "bad data"
    lifecycle.mark(bucket, MarkerKind.DELETION, ids=[a.ulid], details="other", overwrite=True, dry_run=False)
    assert json.loads((tmp_path / a.ulid / "deletion-mark.json").read_text())["details"] == "other"


def test_mark_by_filter_with_reason(tmp_path: Path) -> None:
    eu = write_block(tmp_path, 0, 2 * H, labels={"cluster": "eu1"})
    write_block(tmp_path, 0, 2 * H, labels={"cluster": "us1"})
    bucket = open_bucket(str(tmp_path))
    flt = BlockFilter(selectors=tuple(parse_label_selectors(["cluster=eu1"])))
    plan = lifecycle.mark(bucket, MarkerKind.NO_COMPACT, flt=flt, reason="index-size-exceeding", dry_run=False)
    assert [x.block for x in plan.actions] == [eu.ulid]
    mark = json.loads((tmp_path / eu.ulid / "no-compact-mark.json").read_text())
    assert mark["reason"] == "index-size-exceeding" and mark["id"] == eu.ulid


def test_mark_needs_a_selection_and_known_ids(tmp_path: Path) -> None:
    write_block(tmp_path, 0, 2 * H)
    bucket = open_bucket(str(tmp_path))
    with pytest.raises(ConfigError):
        lifecycle.mark(bucket, MarkerKind.DELETION)
    with pytest.raises(NotFoundError):
        lifecycle.mark(bucket, MarkerKind.DELETION, ids=[new_ulid()])
    with pytest.raises(ConfigError):
        lifecycle.mark(bucket, MarkerKind.DELETION, ids=["nope"])


def test_unmark(tmp_path: Path) -> None:
    a, b = write_block(tmp_path, 0, 2 * H), write_block(tmp_path, 2 * H, 4 * H)
    orphan = new_ulid()
    bucket = open_bucket(str(tmp_path))
    write_marker(bucket, NoCompactMark(a.ulid, 1))
    write_marker(bucket, NoCompactMark(orphan, 1))
    before = tree_digest(tmp_path)
    plan = lifecycle.unmark(bucket, MarkerKind.NO_COMPACT, ids=[a.ulid, b.ulid, orphan])
    assert tree_digest(tmp_path) == before
    assert sorted((x.action, x.block) for x in plan.actions) == sorted(
        [("unmark-no-compact", a.ulid), ("skip", b.ulid), ("unmark-no-compact", orphan)])
    plan.dry_run = False
    plan.execute()
    assert not (tmp_path / a.ulid / "no-compact-mark.json").exists()
    assert not (tmp_path / orphan).exists()
    assert (tmp_path / a.ulid / "meta.json").exists()


# --- retention ---------------------------------------------------------------------------------------


def test_retention_marks_exactly_the_expired_blocks(tmp_path: Path) -> None:
    old_raw = write_block(tmp_path, NOW - 40 * DAY, NOW - 40 * DAY + 2 * H)
    new_raw = write_block(tmp_path, NOW - 5 * DAY, NOW - 5 * DAY + 2 * H)
    old_5m = write_block(tmp_path, NOW - 40 * DAY, NOW - 38 * DAY, resolution=300_000)
    ancient_1h = write_block(tmp_path, NOW - 400 * DAY, NOW - 380 * DAY, resolution=3_600_000)
    marked_raw = write_block(tmp_path, NOW - 50 * DAY, NOW - 50 * DAY + 2 * H)
    bucket = open_bucket(str(tmp_path))
    write_marker(bucket, DeletionMark(marked_raw.ulid, 1))
    retentions = {0: 30 * DAY, 300_000: 90 * DAY, 3_600_000: 0}
    before = tree_digest(tmp_path)
    plan = lifecycle.retention(bucket, retentions, now=NOW)
    assert tree_digest(tmp_path) == before
    assert {(x.action, x.block) for x in plan.actions} == {("mark-deletion", old_raw.ulid), ("skip", marked_raw.ulid)}
    lifecycle.retention(bucket, retentions, now=NOW, dry_run=False)
    marked = {p.parent.name for p in tmp_path.glob("*/deletion-mark.json")}
    assert marked == {old_raw.ulid, marked_raw.ulid}
    assert {new_raw.ulid, old_5m.ulid, ancient_1h.ulid}.isdisjoint(marked)
    # the boundary: exactly at maxTime + retention the block is kept
    edge = write_block(tmp_path, NOW - 31 * DAY, NOW - 30 * DAY)
    assert not [x for x in lifecycle.retention(bucket, retentions, now=NOW).actions if x.block == edge.ulid]
    with pytest.raises(ConfigError):
        lifecycle.retention(bucket, {0: -1}, now=NOW)


# --- cleanup -----------------------------------------------------------------------------------------


def test_cleanup_removes_only_old_partials_and_old_marked_blocks(tmp_path: Path) -> None:
    keep = write_block(tmp_path, 0, 2 * H)
    old_mark = write_block(tmp_path, 2 * H, 4 * H)
    new_mark = write_block(tmp_path, 4 * H, 6 * H)
    now = NOW
    old_partial, young_partial = new_ulid(now - 3 * DAY), new_ulid(now - H)
    for p in (old_partial, young_partial):
        (tmp_path / p / "chunks").mkdir(parents=True)
        (tmp_path / p / "chunks" / "000001").write_bytes(b"x")
    bucket = open_bucket(str(tmp_path))
    write_marker(bucket, DeletionMark(old_mark.ulid, (now - 3 * DAY) // 1000))
    write_marker(bucket, DeletionMark(new_mark.ulid, (now - H) // 1000))
    before = tree_digest(tmp_path)
    plan = lifecycle.cleanup(bucket, now=now)
    assert tree_digest(tmp_path) == before
    acts = {x.block: x.action for x in plan.actions}
    assert acts == {old_partial: "delete-partial", young_partial: "skip", old_mark.ulid: "delete",
                    new_mark.ulid: "skip"}
    plan = lifecycle.cleanup(bucket, now=now, dry_run=False)
    assert not plan.failed
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([keep.ulid, new_mark.ulid, young_partial])
    # a longer consistency delay does not shorten the 48h partial threshold; a short delete delay deletes sooner
    plan = lifecycle.cleanup(bucket, now=now, delete_delay_ms=H // 2, consistency_delay_ms=0, dry_run=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([keep.ulid, young_partial])


# --- replicate ---------------------------------------------------------------------------------------


def test_replicate_local_with_filters_and_markers(tmp_path: Path) -> None:
    src_dir, dst_dir = tmp_path / "src", tmp_path / "dst"
    a = write_block(src_dir, 0, 2 * H)
    b = write_block(src_dir, 0, 8 * H, level=2)
    c = write_block(src_dir, 0, 2 * H, resolution=300_000)
    gone = write_block(src_dir, 2 * H, 4 * H)
    dst_dir.mkdir()
    src, dst = open_bucket(str(src_dir)), open_bucket(str(dst_dir))
    write_marker(src, NoCompactMark(a.ulid, 5))
    write_marker(src, DeletionMark(gone.ulid, 5))
    rf = lifecycle.ReplicateFilter(resolutions=frozenset({0}), levels=frozenset({1}))
    plan = lifecycle.replicate(src, dst, rf=rf, with_markers=True)
    assert list(dst_dir.iterdir()) == []
    assert {(x.action, x.block) for x in plan.actions} == {("replicate", a.ulid), ("skip", gone.ulid)}
    lifecycle.replicate(src, dst, rf=rf, with_markers=True, dry_run=False)
    assert (dst_dir / a.ulid / "no-compact-mark.json").exists()
    for rel in ("meta.json", "index", "chunks/000001"):
        assert (dst_dir / a.ulid / rel).read_bytes() == (src_dir / a.ulid / rel).read_bytes()
    assert not (dst_dir / b.ulid).exists() and not (dst_dir / c.ulid).exists()
    again = lifecycle.replicate(src, dst, dry_run=False)
    acts = {x.block: (x.action, x.status) for x in again.actions}
    assert acts[a.ulid] == ("skip", "skipped") and acts[b.ulid] == ("replicate", "done")
    with pytest.raises(ConfigError):
        lifecycle.replicate(src, open_bucket(str(src_dir)))


class FailingBucket(Bucket):
    """Fails uploading the index, after the chunks went up."""

    def put_file(self, local_path: str, key: str, *, private: bool = False) -> None:
        if key.endswith("/index"):
            raise SourceError(f"injected failure writing {key}")
        super().put_file(local_path, key, private=private)


def test_replicate_to_s3_skips_existing_and_leaves_no_partial_block(tmp_path: Path, s3_bucket: S3TestBucket) -> None:
    a = write_block(tmp_path, 0, 2 * H)
    b = write_block(tmp_path, 2 * H, 4 * H)
    src, dst = open_bucket(str(tmp_path)), open_bucket(s3_bucket.url)
    lifecycle.copy_block(src, dst, a.ulid)
    plan = lifecycle.replicate(src, dst)
    assert s3_bucket.object_keys() == sorted(f"{a.ulid}/{r}" for r in ("chunks/000001", "index", "meta.json"))
    assert {x.block: x.action for x in plan.actions} == {a.ulid: "skip", b.ulid: "replicate"}
    failing = FailingBucket(dst.spec)
    plan = lifecycle.replicate(src, failing, dry_run=False)
    [failed] = plan.failed
    assert failed.block == b.ulid and "injected" in failed.error
    assert not [k for k in s3_bucket.object_keys() if k.startswith(b.ulid)]
    plan = lifecycle.replicate(src, dst, dry_run=False)
    assert not plan.failed
    assert f"{b.ulid}/meta.json" in s3_bucket.object_keys()
    with pytest.raises(SourceError):
        lifecycle.copy_block(src, dst, b.ulid)


def test_block_with_broken_meta_can_be_marked_and_cleaned_up(tmp_path: Path) -> None:
    a = write_block(tmp_path, 0, 2 * H)
    (tmp_path / a.ulid / "meta.json").write_text("{broken")
    bucket = open_bucket(str(tmp_path))
    plan = lifecycle.mark(bucket, MarkerKind.DELETION, ids=[a.ulid], dry_run=False, now_s=(NOW - 3 * DAY) // 1000)
    assert plan.actions[0].status == "done"
    plan = lifecycle.cleanup(bucket, now=NOW, dry_run=False)
    assert [(x.action, x.status) for x in plan.actions] == [("delete", "done")]
    assert list(tmp_path.iterdir()) == []
