from __future__ import annotations

from thanostools.core.constants import RESOLUTION_5M
from thanostools.core.groups import (
    consistency_filter,
    deduplicate_filter,
    deletion_mark_filter,
    group_blocks,
    group_key,
    group_labels,
    overlap_range,
    overlapping_runs,
)
from thanostools.core.labels import label_hash
from thanostools.core.tsdb.markers import DeletionMark
from thanostools.core.tsdb.meta import (
    SOURCE_COMPACTOR,
    BlockMeta,
    ThanosMeta,
    format_go_time_ns,
)
from thanostools.core.ulid import new_ulid

H = 3_600_000
NOW = 1_700_000_000_000


def meta(mint: int, maxt: int, *, labels: dict[str, str] | None = None, res: int = 0,
         sources: list[str] | None = None, ulid: str | None = None, source: str = "sidecar",
         upload_ms: int | None = None, ulid_ms: int = NOW - 10 * H) -> BlockMeta:
    ulid = ulid or new_ulid(ulid_ms)
    thanos = ThanosMeta(labels=labels if labels is not None else {"cluster": "a"}, resolution=res, source=source)
    if upload_ms is not None:
        thanos.upload_time = format_go_time_ns(upload_ms * 1_000_000)
    return BlockMeta(ulid=ulid, min_time=mint, max_time=maxt, sources=sources or [ulid], thanos=thanos)


def test_group_key_format_and_replica_removal() -> None:
    a = meta(0, H, labels={"cluster": "a", "replica": "0"})
    b = meta(0, H, labels={"cluster": "a", "replica": "1"})
    assert group_key(a) != group_key(b)
    assert group_key(a, ["replica"]) == group_key(b, ["replica"])
    assert group_key(a, ["replica"]) == f"0@{label_hash((('cluster', 'a'),))}"
    c = meta(0, H, labels={"replica": "0"}, res=RESOLUTION_5M)
    assert group_labels(c, ["replica", "rule_replica"]) == (("replica", "deduped"),)
    assert group_key(c, ["replica"]).startswith("300000@")


def test_group_blocks_sorted_by_min_time() -> None:
    blocks = [meta(2 * H, 3 * H), meta(0, H), meta(H, 2 * H), meta(0, H, labels={"cluster": "b"})]
    groups = group_blocks(blocks)
    assert len(groups) == 2
    assert list(groups) == sorted(groups)
    a_group = groups[group_key(blocks[0])]
    assert [m.min_time for m in a_group] == [0, H, 2 * H]


def test_deduplicate_filter_drops_compaction_leftovers() -> None:
    s1, s2, s3 = meta(0, H), meta(H, 2 * H), meta(2 * H, 3 * H)
    compacted = meta(0, 3 * H, sources=sorted([s1.ulid, s2.ulid, s3.ulid]))
    partial = meta(0, 2 * H, sources=sorted([s1.ulid, s2.ulid]))
    other = meta(0, H, labels={"cluster": "b"}, sources=[s1.ulid])  # other group: kept
    kept, dups = deduplicate_filter([s1, s2, s3, compacted, partial, other])
    assert {m.ulid for m in kept} == {compacted.ulid, other.ulid}
    assert {m.ulid for m in dups} == {s1.ulid, s2.ulid, s3.ulid, partial.ulid}


def test_deduplicate_filter_identical_sources_keeps_smallest_ulid() -> None:
    src = [new_ulid(NOW - 20 * H)]
    a = meta(0, H, sources=src, ulid=new_ulid(NOW - 5 * H))
    b = meta(0, H, sources=src, ulid=new_ulid(NOW - 4 * H))
    kept, dups = deduplicate_filter([b, a])
    assert [m.ulid for m in kept] == [a.ulid]
    assert [m.ulid for m in dups] == [b.ulid]


def test_consistency_filter() -> None:
    old = meta(0, H, ulid_ms=NOW - 2 * H)
    fresh_ulid = meta(0, H, ulid_ms=NOW - 60_000)
    fresh_upload = meta(0, H, ulid_ms=NOW - 10 * H, upload_ms=NOW - 60_000)
    fresh_compactor = meta(0, H, ulid_ms=NOW - 60_000, source=SOURCE_COMPACTOR)
    kept, fresh = consistency_filter([old, fresh_ulid, fresh_upload, fresh_compactor], 30 * 60_000, NOW)
    assert {m.ulid for m in kept} == {old.ulid, fresh_compactor.ulid}
    assert {m.ulid for m in fresh} == {fresh_ulid.ulid, fresh_upload.ulid}


def test_deletion_mark_filter() -> None:
    a, b, c = meta(0, H), meta(0, H), meta(0, H)
    marks = {a.ulid: DeletionMark(a.ulid, (NOW - 2 * H) // 1000), b.ulid: DeletionMark(b.ulid, (NOW - 60_000) // 1000)}
    kept, ignored = deletion_mark_filter([a, b, c], marks, H, NOW)
    assert [m.ulid for m in ignored] == [a.ulid]
    assert {m.ulid for m in kept} == {b.ulid, c.ulid}


def test_overlapping_runs() -> None:
    a, b = meta(0, 2 * H), meta(H, 3 * H)
    c = meta(2 * H + 1, 4 * H)  # overlaps b only: joins the run
    d = meta(4 * H, 5 * H)  # touches c, half-open: no overlap
    e, f = meta(6 * H, 7 * H), meta(6 * H, 7 * H)
    runs = overlapping_runs([f, e, d, c, b, a])
    assert [[m.ulid for m in r] for r in runs] == [[a.ulid, b.ulid, c.ulid], sorted([e.ulid, f.ulid])]
    assert overlap_range(runs[0]) == (0, 4 * H)
    assert overlapping_runs([a, d]) == []
    assert overlapping_runs([]) == []
