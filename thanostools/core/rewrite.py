"""Block rewrites (``bucket relabel`` / ``bucket rewrite``, FORMATS.md §11.7) and external-label edits.

A series rewrite reads the source index once to plan (relabel first, then deletions; series that become equal
are merged, series relabelled to nothing dropped), then writes the new block in label order, copying untouched
chunks byte for byte and decoding only chunks that lose samples or belong to merged series. Raw (XOR) and
downsampled (AggrChunk) blocks are both handled.

An external-label edit changes no data, so it is a meta-only rewrite: index and chunks are copied byte for
byte under a new ULID with the edited ``thanos.labels``. ``compaction.sources`` are kept, so 5m/1h blocks
whose labels are edited the same way keep covering the raw block and are not downsampled again.

Resumable: a source block whose rewrite (same ``thanos.rewrites`` entry, labels and time range) is already in
the bucket is not rewritten again; it is only marked for deletion if that step was missing.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from thanostools.core import labels as labelset
from thanostools.core.audit import audit
from thanostools.core.blockio import download_block, upload_block, work_dir, write_marker
from thanostools.core.errors import ConfigError
from thanostools.core.inspect import BlockFilter, BlockInfo
from thanostools.core.labels import Labels
from thanostools.core.localfs import WorkDir
from thanostools.core.pipeline.delete import DeleteStats, Deletions
from thanostools.core.pipeline.equal import MergeEqual, MergeEqualStats
from thanostools.core.pipeline.read import read_series
from thanostools.core.pipeline.relabel import Relabel, RelabelStats, plan_relabel
from thanostools.core.pipeline.table import ChunkedSeries
from thanostools.core.pipeline.write import WriteStats, write_series
from thanostools.core.relabel import DeletionRequest, RelabelConfig, valid_label_name
from thanostools.core.tsdb.block import Block, open_bucket_block
from thanostools.core.tsdb.markers import DeletionMark, now_seconds
from thanostools.core.tsdb.meta import (
    SOURCE_BUCKET_REWRITE,
    ZERO_TIME,
    BlockMeta,
    BlockStats,
    ThanosMeta,
    read_meta_file,
    write_meta_file,
)
from thanostools.core.tsdb.writer import BlockWriter
from thanostools.core.ulid import new_ulid
from thanostools.core.workspace import BucketWorkspace

CHANGE_LOG = "change.log"
REWRITTEN_DETAILS = "block rewritten"


# --- what to change ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RewriteSpec:
    relabels: tuple[RelabelConfig, ...] = ()
    deletions: tuple[DeletionRequest, ...] = ()
    set_labels: tuple[tuple[str, str], ...] = ()  # external labels to set (an empty value removes)
    drop_labels: tuple[str, ...] = ()  # external labels to remove

    def __post_init__(self) -> None:
        for name, _ in self.set_labels:
            if not valid_label_name(name):
                raise ConfigError(f"--external-labels: {name!r} is not a valid label name")
        clash = {n for n, _ in self.set_labels} & set(self.drop_labels)
        if clash:
            raise ConfigError(f"external label {sorted(clash)[0]!r} is both set and dropped")

    @property
    def changes_series(self) -> bool:
        return bool(self.relabels or self.deletions)

    @property
    def changes_labels(self) -> bool:
        return bool(self.set_labels or self.drop_labels)

    def external_labels(self, old: Mapping[str, str]) -> dict[str, str]:
        new = {k: v for k, v in old.items() if k not in self.drop_labels}
        new.update(self.set_labels)
        return {k: v for k, v in sorted(new.items()) if v}

    def rewrite_entry(self, sources: Sequence[str]) -> dict[str, Any]:
        """The ``thanos.rewrites`` entry this rewrite appends (keys omitted when empty, as Go writes it)."""
        entry: dict[str, Any] = {}
        if sources:
            entry["sources"] = list(sources)
        if self.deletions:
            entry["deletions_applied"] = [d.to_meta() for d in self.deletions]
        if self.relabels:
            entry["relabels_applied"] = [r.to_meta() for r in self.relabels]
        return entry


# --- statistics and the change log ----------------------------------------------------------------------


@dataclass
class RewriteStats:
    series_in: int = 0
    series_out: int = 0
    series_dropped: int = 0  # relabelled to nothing
    series_deleted: int = 0  # removed whole by a deletion request
    series_relabelled: int = 0  # label set changed
    series_merged: int = 0  # input series folded into another one with the same new labels
    series_trimmed: int = 0  # lost samples to deletion intervals
    samples_in: int = 0
    samples_out: int = 0
    samples_dropped: int = 0
    samples_deleted: int = 0
    samples_deduplicated: int = 0
    chunks_in: int = 0
    chunks_out: int = 0
    chunks_reencoded: int = 0

    @property
    def changed(self) -> bool:
        """Whether the rewrite changed any series or sample (otherwise its output would equal its input)."""
        return any((self.series_dropped, self.series_deleted, self.series_relabelled, self.series_merged,
                    self.series_trimmed, self.samples_dropped, self.samples_deleted, self.samples_deduplicated,
                    self.chunks_reencoded, self.series_in != self.series_out, self.samples_in != self.samples_out))

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


# --- one block ------------------------------------------------------------------------------------------


@dataclass
class BlockRewriteResult:
    stats: RewriteStats
    changes: list[str]
    meta: BlockMeta | None = None  # the new block; None for dry runs and for outputs left without series
    path: str | None = None


def rewrite_block(block: Block, spec: RewriteSpec, out_dir: str | None, *,
                  external_labels: Mapping[str, str] | None = None, batch_series: int = 2000) -> BlockRewriteResult:
    """Relabel and delete series of ``block`` into ``out_dir/<new ULID>`` (with its ``change.log``).

    ``out_dir`` None is a dry run: everything is computed, nothing written. A result without series is not
    written either (``meta`` stays None).
    """
    stats = RewriteStats()
    changes: list[str] = []
    labels = dict(external_labels) if external_labels is not None else dict(block.meta.external_labels)
    if out_dir is None:
        deletions = _run(block, spec, stats, changes, lambda batches: _drain(batches), batch_series)
        return _finish_stats(BlockRewriteResult(stats, changes + deletions.changes()))
    m = block.meta
    writer = BlockWriter(out_dir, min_time=m.min_time, max_time=m.max_time, external_labels=labels,
                         resolution=m.resolution, source=SOURCE_BUCKET_REWRITE, level=m.level)
    try:
        deletions = _run(block, spec, stats, changes,
                         lambda batches: write_series(batches, writer, WriteStats()), batch_series)
        changes += deletions.changes()
        if stats.series_out == 0:
            writer.abort()
            return _finish_stats(BlockRewriteResult(stats, changes))
        written = writer.finish()
    except BaseException:
        writer.abort()
        raise
    meta = rewritten_meta(m, written, spec, labels)
    write_meta_file(writer.dir, meta)
    with open(os.path.join(writer.dir, CHANGE_LOG), "w", encoding="utf-8") as fh:
        fh.writelines(line + "\n" for line in changes)
    return _finish_stats(BlockRewriteResult(stats, changes, meta, writer.dir))


def _run(block: Block, spec: RewriteSpec, stats: RewriteStats, changes: list[str],
         sink: Callable[[Iterable[ChunkedSeries]], None], batch_series: int) -> Deletions:
    """The pipeline: read → relabel → delete whole series → merge equal ones → trim → ``sink``. Relabel lines
    go to ``changes`` (index order); the returned deletions hold theirs (label order)."""
    relabel_stats = RelabelStats()
    plan = plan_relabel(block, spec.relabels, relabel_stats, changes, batch_series=batch_series) \
        if spec.relabels else None
    stones = dict(block.tombstones) if block.tombstones else {}
    merge = MergeEqual(block.ulid, stones, MergeEqualStats())
    deletions = Deletions(block.ulid, block.meta.resolution, spec.deletions, stones, DeleteStats(), merge.merged)
    batches = _count_in(read_series([block], batch_series=batch_series, symbols=plan.symbols if plan else None,
                                    refs=plan.read_order if plan else None), stats)
    if plan is not None:
        batches = Relabel(plan, relabel_stats)(batches)
    if spec.deletions:
        batches = deletions.whole(batches)
    if plan is not None:
        batches = merge(batches)
    if spec.deletions or stones:
        batches = deletions.trim(batches)
    sink(_count_out(batches, stats))
    for part in (relabel_stats, deletions.stats, merge.stats):
        for name, value in part.__dict__.items():
            setattr(stats, name, getattr(stats, name) + value)
    return deletions


def _count_in(batches: Iterable[ChunkedSeries], stats: RewriteStats) -> Iterator[ChunkedSeries]:
    for batch in batches:
        stats.series_in += len(batch)
        stats.chunks_in += len(batch.chunks)
        stats.samples_in += int(batch.sample_counts().sum())
        yield batch


def _count_out(batches: Iterable[ChunkedSeries], stats: RewriteStats) -> Iterator[ChunkedSeries]:
    for batch in batches:
        with_chunks = int(np.count_nonzero(np.diff(batch.chunks.series_bounds(len(batch)))))
        stats.series_out += with_chunks
        stats.chunks_out += len(batch.chunks)
        stats.samples_out += int(batch.sample_counts().sum())
        yield batch


def _drain(batches: Iterable[ChunkedSeries]) -> None:
    for _ in batches:
        pass


def _finish_stats(result: BlockRewriteResult) -> BlockRewriteResult:
    s = result.stats
    s.samples_deleted = s.samples_in - s.samples_out - s.samples_dropped - s.samples_deduplicated
    return result


def rewritten_meta(src: BlockMeta, written: BlockMeta, spec: RewriteSpec, external_labels: Mapping[str, str],
                   *, keep_sources: bool = False) -> BlockMeta:
    """The source meta with the new ULID (also as the only source unless ``keep_sources``), new stats, labels,
    ``thanos.source = bucket.rewrite`` and a ``thanos.rewrites`` entry; time range and level unchanged."""
    meta = src.copy()
    meta.ulid = written.ulid
    if not keep_sources:
        meta.sources = [written.ulid]
    meta.stats = BlockStats(num_samples=written.stats.num_samples, num_series=written.stats.num_series,
                            num_chunks=written.stats.num_chunks)
    thanos = meta.thanos or ThanosMeta()
    thanos.labels = dict(external_labels)
    thanos.source = SOURCE_BUCKET_REWRITE
    if written.thanos is not None:
        thanos.segment_files = list(written.thanos.segment_files)
        thanos.index_stats = written.thanos.index_stats
    thanos.files = []
    thanos.upload_time = ZERO_TIME
    thanos.rewrites = [*thanos.rewrites, spec.rewrite_entry(src.sources)]
    meta.thanos = thanos
    return meta


# --- external labels: meta-only rewrite and group preview ---------------------------------------------------


def copy_with_labels(bucket_block: str, work: str, src: BlockMeta, spec: RewriteSpec,
                     external_labels: Mapping[str, str]) -> BlockMeta:
    """Turn a downloaded block directory into a new block (new ULID, same bytes) with edited labels."""
    written = src.copy()
    written.ulid = new_ulid()
    target = os.path.join(work, written.ulid)
    os.rename(bucket_block, target)
    meta = rewritten_meta(src, written, spec, external_labels, keep_sources=True)
    write_meta_file(target, meta)
    return read_meta_file(target)


@dataclass
class GroupMerge:
    """Blocks of several groups (resolution + external labels) that end up in one group after the edit."""

    resolution: int
    labels: dict[str, str]
    merged_from: list[dict[str, str]]
    blocks: int


def preview_group_merges(blocks: Iterable[BlockInfo], selected: Iterable[str], spec: RewriteSpec) -> list[GroupMerge]:
    chosen = set(selected)
    after: dict[tuple[int, Labels], list[Labels]] = {}
    for b in blocks:
        if "deletion" in b.marks:
            continue
        old = b.meta.external_labels
        new = labelset.from_dict(spec.external_labels(dict(old))) if b.ulid in chosen else old
        after.setdefault((b.meta.resolution, new), []).append(old)
    merges = []
    for (res, new), olds in sorted(after.items()):
        origins = sorted(set(olds))
        if len(origins) > 1:
            merges.append(GroupMerge(res, dict(new), [dict(o) for o in origins], len(olds)))
    return merges


# --- the bucket procedure ---------------------------------------------------------------------------------


@dataclass
class BlockReport:
    source: str
    # would-rewrite, would-empty, rewritten, emptied, already-rewritten, is-rewrite-output, unchanged
    status: str
    resolution: int
    labels_before: dict[str, str]
    labels_after: dict[str, str]
    new_ulid: str | None = None
    stats: RewriteStats | None = None
    changes: int = 0
    change_log: str | None = None
    marked: bool = False
    seconds: float = 0.0


@dataclass
class RewriteReport:
    dry_run: bool
    blocks: list[BlockReport] = field(default_factory=list)
    group_merges: list[GroupMerge] = field(default_factory=list)


def find_rewrite(src: BlockMeta, spec: RewriteSpec, labels: Mapping[str, str],
                 blocks: Iterable[BlockInfo]) -> BlockInfo | None:
    """An existing, live block that is exactly this rewrite of ``src`` (left behind by an interrupted run)."""
    entry = spec.rewrite_entry(src.sources)
    for b in blocks:
        m = b.meta
        if m.ulid == src.ulid or "deletion" in b.marks or m.thanos is None or not m.thanos.rewrites:
            continue
        if (m.min_time, m.max_time, m.resolution) != (src.min_time, src.max_time, src.resolution):
            continue
        if m.thanos.labels == dict(labels) and m.thanos.rewrites[-1] == entry:
            return b
    return None


def is_rewrite_output(meta: BlockMeta, spec: RewriteSpec, labels: Mapping[str, str]) -> bool:
    """Whether ``meta`` is itself what this rewrite produces (so re-running the command leaves it alone)."""
    if meta.thanos is None or not meta.thanos.rewrites or meta.thanos.labels != dict(labels):
        return False
    last = {k: v for k, v in meta.thanos.rewrites[-1].items() if k != "sources"}
    return last == {k: v for k, v in spec.rewrite_entry([]).items()}


@dataclass
class _Context:
    workspace: BucketWorkspace
    spec: RewriteSpec
    dry_run: bool
    mark_original: bool
    work: WorkDir
    change_log_dir: str | None
    blocks: list[BlockInfo]


def rewrite_bucket(workspace: BucketWorkspace, spec: RewriteSpec, *, block_filter: BlockFilter | None = None,
                   dry_run: bool = True, mark_original: bool = True, tmp_dir: str | None = None,
                   change_log_dir: str | None = None,
                   progress: Callable[[str], None] | None = None) -> RewriteReport:
    """Rewrite every selected block (not marked for deletion): upload the new block (meta.json last), then mark
    the source for deletion. Dry runs compute everything and change nothing."""
    if not spec.changes_series and not spec.changes_labels:
        raise ConfigError("nothing to do: give a relabel config, a deletion config or external label changes")
    infos = workspace.scan(refresh=True).blocks
    selected = [b for b in infos if "deletion" not in b.marks and (block_filter is None or block_filter.accepts(b))]
    report = RewriteReport(dry_run)
    if spec.changes_labels:
        report.group_merges = preview_group_merges(infos, [b.ulid for b in selected], spec)
    if change_log_dir:
        os.makedirs(change_log_dir, exist_ok=True)
    with work_dir(workspace.bucket, "rewrite", tmp_dir) as work:
        ctx = _Context(workspace, spec, dry_run, mark_original, work, change_log_dir, infos)
        for info in selected:
            if progress:
                progress(f"rewriting {info.ulid}")
            report.blocks.append(_rewrite_one(ctx, info))
    return report


def _rewrite_one(ctx: _Context, info: BlockInfo) -> BlockReport:
    started = time.monotonic()
    old = dict(info.meta.external_labels)
    new = ctx.spec.external_labels(old) if ctx.spec.changes_labels else old
    rep = BlockReport(info.ulid, "unchanged", info.meta.resolution, old, new)
    if not ctx.spec.changes_series and new == old:
        return rep
    if is_rewrite_output(info.meta, ctx.spec, new):
        rep.status = "is-rewrite-output"
        return rep
    done = find_rewrite(info.meta, ctx.spec, new, ctx.blocks)
    if done is not None:
        rep.status, rep.new_ulid = "already-rewritten", done.ulid
        rep.marked = _mark(ctx, info.ulid)
        return rep
    if ctx.spec.changes_series:
        _series_rewrite(ctx, info, new, rep)
    else:
        _labels_rewrite(ctx, info, new, rep)
    rep.seconds = time.monotonic() - started
    return rep


def _open(ctx: _Context, ulid: str) -> tuple[Block, str]:
    if ctx.workspace.bucket.is_local:
        return open_bucket_block(ctx.workspace.bucket, ulid), ""
    path = download_block(ctx.workspace.bucket, ulid, os.path.join(ctx.work.path, "in"))
    return Block.open_dir(path), path


def _series_rewrite(ctx: _Context, info: BlockInfo, labels: dict[str, str], rep: BlockReport) -> None:
    block, downloaded = _open(ctx, info.ulid)
    try:
        out_parent = None if ctx.dry_run else os.path.join(ctx.work.path, "out")
        if out_parent:
            os.makedirs(out_parent, exist_ok=True)
        result = rewrite_block(block, ctx.spec, out_parent, external_labels=labels)
    finally:
        if downloaded:
            shutil.rmtree(downloaded, ignore_errors=True)
    rep.stats, rep.changes = result.stats, len(result.changes)
    if not result.stats.changed and labels == dict(info.meta.external_labels):
        return  # nothing matched: the block stays as it is, nothing is written or marked ("unchanged")
    rep.change_log = _save_change_log(ctx, info.ulid, result.changes)
    if ctx.dry_run:
        rep.status = "would-rewrite" if result.stats.series_out else "would-empty"
        return
    if result.meta is None or result.path is None:
        rep.status = "emptied"
    else:
        _upload(ctx, info.ulid, result.path, result.meta)
        rep.status, rep.new_ulid = "rewritten", result.meta.ulid
    rep.marked = _mark(ctx, info.ulid)


def _labels_rewrite(ctx: _Context, info: BlockInfo, labels: dict[str, str], rep: BlockReport) -> None:
    m = info.meta
    rep.stats = RewriteStats(series_in=m.stats.num_series, series_out=m.stats.num_series,
                             samples_in=m.stats.num_samples, samples_out=m.stats.num_samples,
                             chunks_in=m.stats.num_chunks, chunks_out=m.stats.num_chunks)
    if ctx.dry_run:
        rep.status = "would-rewrite"
        return
    path = download_block(ctx.workspace.bucket, info.ulid, os.path.join(ctx.work.path, "in"))
    meta = copy_with_labels(path, ctx.work.path, m, ctx.spec, labels)
    _upload(ctx, info.ulid, os.path.join(ctx.work.path, meta.ulid), meta)
    rep.status, rep.new_ulid = "rewritten", meta.ulid
    rep.marked = _mark(ctx, info.ulid)


def _upload(ctx: _Context, source: str, path: str, meta: BlockMeta) -> None:
    bucket = ctx.workspace.bucket
    upload_block(path, bucket, source=SOURCE_BUCKET_REWRITE, private=True, work=ctx.work)
    audit("rewrite", [source, meta.ulid], bucket=bucket.url, details={"series": meta.stats.num_series})
    shutil.rmtree(path, ignore_errors=True)


def _mark(ctx: _Context, ulid: str) -> bool:
    if not ctx.mark_original or ctx.dry_run:
        return False
    written = write_marker(ctx.workspace.bucket, DeletionMark(ulid, now_seconds(), REWRITTEN_DETAILS))
    if written:
        audit("mark-deletion", [ulid], bucket=ctx.workspace.bucket.url, details={"details": REWRITTEN_DETAILS})
    return True


def _save_change_log(ctx: _Context, ulid: str, changes: Sequence[str]) -> str | None:
    if not ctx.change_log_dir:
        return None
    path = os.path.join(ctx.change_log_dir, f"{ulid}.{CHANGE_LOG}")
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(line + "\n" for line in changes)
    return path


__all__ = [
    "BlockReport",
    "BlockRewriteResult",
    "GroupMerge",
    "RewriteReport",
    "RewriteSpec",
    "RewriteStats",
    "copy_with_labels",
    "find_rewrite",
    "is_rewrite_output",
    "preview_group_merges",
    "rewrite_block",
    "rewrite_bucket",
    "rewritten_meta",
]
