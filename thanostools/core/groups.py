"""Compaction groups and the meta-level filters Thanos applies before planning (FORMATS.md §8.1, §8.7).

A group is (downsampling resolution, external labels minus replica labels); its key string is
``"<resolution>@<XXH64 of the labels>"``. Blocks are only ever compacted, compared for overlaps or
deduplicated within their group.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from thanostools.core import labels as labelset
from thanostools.core.tsdb.markers import DeletionMark
from thanostools.core.tsdb.meta import (
    SOURCE_BUCKET_REPAIR,
    SOURCE_COMPACTOR,
    SOURCE_COMPACTOR_REPAIR,
    BlockMeta,
)
from thanostools.core.ulid import ulid_time_ms

# Value given to the first replica label when removing the replica labels leaves no labels.
DEDUPED_VALUE = "deduped"

# Blocks from these sources are never "too fresh": the component wrote them itself, atomically.
NEVER_TOO_FRESH = frozenset({SOURCE_COMPACTOR, SOURCE_COMPACTOR_REPAIR, SOURCE_BUCKET_REPAIR})


def group_labels(meta: BlockMeta, replica_labels: Sequence[str] = ()) -> labelset.Labels:
    """External labels of the block with the replica labels removed."""
    labels = meta.external_labels
    if not replica_labels:
        return labels
    stripped = labelset.without(labels, replica_labels)
    if not stripped:
        return ((replica_labels[0], DEDUPED_VALUE),)
    return stripped


def group_key(meta: BlockMeta, replica_labels: Sequence[str] = ()) -> str:
    """``"<resolution>@<label hash>"``, e.g. ``0@17241709254077376921``."""
    return f"{meta.resolution}@{labelset.label_hash(group_labels(meta, replica_labels))}"


def sort_by_time(metas: Iterable[BlockMeta]) -> list[BlockMeta]:
    """By minTime, ties by maxTime then ULID, so results are deterministic."""
    return sorted(metas, key=lambda m: (m.min_time, m.max_time, m.ulid))


def group_blocks(metas: Iterable[BlockMeta], replica_labels: Sequence[str] = ()) -> dict[str, list[BlockMeta]]:
    """Metas by group key (keys in sorted order), each group sorted by minTime."""
    groups: dict[str, list[BlockMeta]] = {}
    for meta in metas:
        groups.setdefault(group_key(meta, replica_labels), []).append(meta)
    return {key: sort_by_time(groups[key]) for key in sorted(groups)}


def block_sources(meta: BlockMeta) -> frozenset[str]:
    """``compaction.sources``; a block listing none counts as its own only source."""
    return frozenset(meta.sources) if meta.sources else frozenset({meta.ulid})


def deduplicate_filter(
    metas: Iterable[BlockMeta], replica_labels: Sequence[str] = ()
) -> tuple[list[BlockMeta], list[BlockMeta]]:
    """Split into (kept, duplicates): within a group, a block whose sources are all inside the
    sources of a kept block is a leftover of a finished compaction.

    Blocks with more sources are considered first, ties by ULID, so the most compacted block and,
    among identical ones, the oldest ULID is kept.
    """
    kept: list[BlockMeta] = []
    duplicates: list[BlockMeta] = []
    for group in group_blocks(metas, replica_labels).values():
        ordered = sorted(group, key=lambda m: (-len(block_sources(m)), m.ulid))
        kept_sources: list[frozenset[str]] = []
        for meta in ordered:
            sources = block_sources(meta)
            if any(sources <= other for other in kept_sources):
                duplicates.append(meta)
            else:
                kept.append(meta)
                kept_sources.append(sources)
    return sort_by_time(kept), sort_by_time(duplicates)


def block_age_reference_ms(meta: BlockMeta) -> int:
    """When the block appeared: its upload time, else the ULID timestamp."""
    uploaded = meta.thanos.upload_time_ms if meta.thanos is not None else None
    return uploaded if uploaded is not None else ulid_time_ms(meta.ulid)


def consistency_filter(
    metas: Iterable[BlockMeta], delay_ms: int, now_ms: int
) -> tuple[list[BlockMeta], list[BlockMeta]]:
    """Split into (kept, too_fresh): blocks younger than the consistency delay may still be
    being uploaded by something else, except those our own kind of component produced."""
    kept: list[BlockMeta] = []
    fresh: list[BlockMeta] = []
    for meta in metas:
        source = meta.thanos.source if meta.thanos is not None else ""
        young = now_ms - block_age_reference_ms(meta) < delay_ms
        (fresh if young and source not in NEVER_TOO_FRESH else kept).append(meta)
    return kept, fresh


def deletion_mark_filter(
    metas: Iterable[BlockMeta], marks: Mapping[str, DeletionMark], delay_ms: int, now_ms: int
) -> tuple[list[BlockMeta], list[BlockMeta]]:
    """Split into (kept, ignored): blocks whose deletion mark is older than ``delay_ms`` are ignored
    (the compactor uses half its delete delay)."""
    kept: list[BlockMeta] = []
    ignored: list[BlockMeta] = []
    for meta in metas:
        mark = marks.get(meta.ulid)
        old = mark is not None and now_ms - mark.deletion_time * 1000 > delay_ms
        (ignored if old else kept).append(meta)
    return kept, ignored


def overlaps(a: BlockMeta, b: BlockMeta) -> bool:
    """Half-open ``[minTime, maxTime)`` ranges intersect."""
    return a.min_time < b.max_time and b.min_time < a.max_time


def overlapping_runs(metas: Iterable[BlockMeta]) -> list[list[BlockMeta]]:
    """Maximal runs of blocks connected by time overlap, each with ≥ 2 blocks, sorted by minTime.

    A sweep by minTime keeping the greatest maxTime seen so far: a block starting before it joins
    the current run (the planner's "overlaps first" rule, applied to every run, not only the first).
    """
    runs: list[list[BlockMeta]] = []
    current: list[BlockMeta] = []
    reach = 0
    for meta in sort_by_time(metas):
        if current and meta.min_time < reach:
            current.append(meta)
            reach = max(reach, meta.max_time)
            continue
        if len(current) >= 2:
            runs.append(current)
        current = [meta]
        reach = meta.max_time
    if len(current) >= 2:
        runs.append(current)
    return runs


def overlap_range(run: Sequence[BlockMeta]) -> tuple[int, int]:
    """The span ``[min minTime, max maxTime)`` covered by a run."""
    return min(m.min_time for m in run), max(m.max_time for m in run)
