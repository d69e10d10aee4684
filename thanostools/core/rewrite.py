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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from thanostools.core import labels as labelset
from thanostools.core.audit import audit
from thanostools.core.blockio import download_block, upload_block, work_dir, write_marker
from thanostools.core.chunkenc import xor
from thanostools.core.chunkenc.cutting import fixed_size_bounds
from thanostools.core.downsample import aggrops
from thanostools.core.errors import ConfigError, UnsupportedError
from thanostools.core.goformat import go_labels_string
from thanostools.core.inspect import BlockFilter, BlockInfo
from thanostools.core.labels import Labels
from thanostools.core.localfs import WorkDir
from thanostools.core.pipeline.merge import Merged, MergeInput, chain, decode_live, encode_runs
from thanostools.core.pipeline.table import ChunkedSeries, ChunkTable
from thanostools.core.pipeline.write import WriteStats, write_batch
from thanostools.core.relabel import DeletionRequest, RelabelConfig, deletion_intervals, relabel, valid_label_name
from thanostools.core.tsdb.block import Block, open_bucket_block
from thanostools.core.tsdb.chunks import ENC_AGGR, ENC_XOR
from thanostools.core.tsdb.labelkeys import LabelKeys, SymbolTable
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
from thanostools.core.tsdb.tombstones import Intervals, deleted_mask, merge_intervals
from thanostools.core.tsdb.writer import BlockWriter
from thanostools.core.ulid import new_ulid
from thanostools.core.workspace import BucketWorkspace

I64 = NDArray[np.int64]
CHANGE_LOG = "change.log"
REWRITTEN_DETAILS = "block rewritten"
SAMPLES_PER_CHUNK = 120


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

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def _go_intervals(intervals: Intervals) -> str:
    return "[" + " ".join(f"{{{a} {b}}}" for a, b in intervals) + "]"


def _deleted_line(labels: Labels, intervals: Intervals) -> str:
    return f"Deleted {go_labels_string(labels)} {_go_intervals(intervals)}"


def _relabelled_line(old: Labels, new: Labels) -> str:
    return f"Relabelled {go_labels_string(old)} {go_labels_string(new)}"


# --- reading the source index -------------------------------------------------------------------------------


@dataclass
class _SourceIndex:
    """Every series of the source block with its chunk metas (no chunk data)."""

    labels: list[Labels]
    refs: I64
    chunk_off: I64
    mint: I64
    maxt: I64
    ref: I64
    encoding: I64
    samples: I64

    def chunks(self, i: int) -> range:
        return range(int(self.chunk_off[i]), int(self.chunk_off[i + 1]))

    def series_samples(self, i: int) -> int:
        return int(self.samples[self.chunk_off[i] : self.chunk_off[i + 1]].sum())


def _scan_index(block: Block) -> _SourceIndex:
    labels: list[Labels] = []
    parts: dict[str, list[I64]] = {k: [] for k in ("refs", "counts", "mint", "maxt", "ref", "enc", "samples")}
    for sb in block.index.iter_series():
        labels.extend(sb.labels)
        heads = block.chunks.headers(sb.chunk_ref)
        for key, arr in (("refs", sb.refs), ("counts", np.diff(sb.chunk_offsets)), ("mint", sb.chunk_mint),
                         ("maxt", sb.chunk_maxt), ("ref", sb.chunk_ref), ("enc", heads.encodings),
                         ("samples", heads.num_samples)):
            parts[key].append(np.asarray(arr, dtype=np.int64))

    def cat(key: str) -> I64:
        return np.concatenate(parts[key]) if parts[key] else np.zeros(0, np.int64)

    counts = cat("counts")
    return _SourceIndex(labels, cat("refs"), np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                        cat("mint"), cat("maxt"), cat("ref"), cat("enc"), cat("samples"))


# --- planning the output series -------------------------------------------------------------------------


@dataclass
class _Output:
    labels: Labels
    inputs: list[int]  # positions in the source index, in index order
    intervals: Intervals  # deleted by requests (empty: none)
    delete_all: bool = False


def _span(src: _SourceIndex, inputs: Iterable[int]) -> Intervals:
    """[first chunk mint, last chunk maxt] over some series, as Thanos logs whole deletions ([] without chunks)."""
    chunks = [c for i in inputs for c in src.chunks(i)]
    if not chunks:
        return []
    return [(min(int(src.mint[c]) for c in chunks), max(int(src.maxt[c]) for c in chunks))]


def _plan_series(src: _SourceIndex, spec: RewriteSpec, stats: RewriteStats,
                 changes: list[str]) -> list[_Output]:
    """Relabel every series (logging drops and label changes in index order), then group by new labels and
    match deletion requests against them. Outputs come sorted by labels."""
    groups: dict[Labels, list[int]] = {}
    for i, old in enumerate(src.labels):
        new = relabel(old, spec.relabels) if spec.relabels else old
        if not new:
            changes.append(_deleted_line(old, _span(src, [i])))
            stats.series_dropped += 1
            stats.samples_dropped += src.series_samples(i)
            continue
        if new != old:
            changes.append(_relabelled_line(old, new))
            stats.series_relabelled += 1
        groups.setdefault(new, []).append(i)
    outputs: list[_Output] = []
    for new in sorted(groups):
        inputs = groups[new]
        stats.series_merged += len(inputs) - 1
        found = deletion_intervals(new, spec.deletions) if spec.deletions else None
        if found == []:
            stats.series_deleted += len(inputs)
        outputs.append(_Output(new, inputs, found or [], delete_all=found == []))
    return outputs


def _deleted_ranges(chunk_ranges: Iterable[tuple[int, int]], intervals: Intervals) -> Intervals:
    """What Thanos logs for a series losing ``intervals``: whole chunk ranges for chunks inside one interval,
    the overlap with the intervals for chunks that are cut."""
    out: Intervals = []
    for lo, hi in chunk_ranges:
        if any(a <= lo and hi <= b for a, b in intervals):
            out.append((lo, hi))
            continue
        out.extend((max(a, lo), min(b, hi)) for a, b in intervals if a <= hi and lo <= b)
    return merge_intervals(out)


# --- building output chunks -------------------------------------------------------------------------------


Part = tuple[int, bytes | int, int, int, int]  # encoding, new payload or source chunk position, mint, maxt, samples
Built = tuple[ChunkTable, I64]  # one output series' chunks and their sample counts


class _SeriesBuilder:
    """Turns planned output series into encoded chunks, reading from one batch of source chunks.

    After ``build``, ``deleted`` holds the ranges the deletion requests removed (for the change log); the source
    block's own tombstones are applied too but not logged.
    """

    def __init__(self, block: Block, src: _SourceIndex, wanted: I64, stats: RewriteStats) -> None:
        self.block = block
        self.src = src
        batch = block.chunks.read(src.ref[wanted], framed=True)
        self.batch = batch
        none = np.zeros(wanted.shape[0], dtype=np.int64)
        self.rows = ChunkTable([batch.buf], none, src.mint[wanted], src.maxt[wanted], batch.encodings, batch.starts,
                               batch.ends, none, none, none, none)
        position = {c: k for k, c in enumerate(wanted.tolist())}
        self.position = position  # source chunk index -> index in batch
        self.stats = stats
        self.deleted: Intervals = []

    def payload(self, c: int) -> bytes:
        return self.batch.data(self.position[c])

    def tombstones(self, i: int) -> Intervals:
        return self.block.tombstones.get(int(self.src.refs[i]), []) if self.block.tombstones else []

    def build(self, out: _Output) -> Built | None:
        self.deleted = []
        chunks = [c for i in out.inputs for c in self.src.chunks(i)]
        encs = {int(self.src.encoding[c]) for c in chunks}
        if len(out.inputs) == 1:
            return self._single(chunks, out.intervals, self.tombstones(out.inputs[0]))
        if encs <= {ENC_XOR}:
            return self._merge_xor(out)
        if encs == {ENC_AGGR}:
            return self._merge_aggr(out)
        raise UnsupportedError(f"block {self.block.ulid}: cannot merge series into {go_labels_string(out.labels)}: "
                               f"chunk encodings {sorted(encs)} (only float and downsampled float chunks)")

    def _verbatim(self, c: int) -> Part:
        s = self.src
        return int(s.encoding[c]), self.position[c], int(s.mint[c]), int(s.maxt[c]), int(s.samples[c])

    def _table(self, parts: Sequence[Part]) -> Built:
        """The chunks of ``parts`` in their order: source chunks as they are (whole records), new ones framed."""
        kept = [k for k, p in enumerate(parts) if not isinstance(p[1], bytes)]
        fresh = [k for k, p in enumerate(parts) if isinstance(p[1], bytes)]
        tables = [self.rows.pick(np.array([parts[k][1] for k in kept], dtype=np.int64))]
        if fresh:
            payloads = [p for k in fresh if isinstance(p := parts[k][1], bytes)]
            sizes = np.array([len(p) for p in payloads], dtype=np.int64)
            tables.append(ChunkTable.encoded(
                np.array([parts[k][0] for k in fresh], dtype=np.int64), np.frombuffer(b"".join(payloads), np.uint8),
                np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64), np.zeros(len(fresh), dtype=np.int64),
                np.array([parts[k][2] for k in fresh], dtype=np.int64),
                np.array([parts[k][3] for k in fresh], dtype=np.int64)))
        order = np.argsort(np.array(kept + fresh, dtype=np.int64), kind="stable")
        counts = np.array([parts[k][4] for k in kept + fresh], dtype=np.int64)
        return ChunkTable.concat(tables).pick(order), counts[order]

    def _single(self, chunks: Sequence[int], intervals: Intervals, stones: Intervals) -> Built | None:
        s = self.src
        self.deleted = _deleted_ranges(((int(s.mint[c]), int(s.maxt[c])) for c in chunks), intervals)
        cut = merge_intervals(intervals + stones)
        reach = max(self.block.meta.resolution - 1, 0)
        parts: list[Part] = []
        for c in chunks:
            # A downsampled chunk's counter starts with a raw sample up to one window before its mint.
            lo, hi = int(s.mint[c]) - (reach if s.encoding[c] == ENC_AGGR else 0), int(s.maxt[c])
            if not any(a <= hi and lo <= b for a, b in cut):
                parts.append(self._verbatim(c))
                continue
            self.stats.chunks_reencoded += 1
            part = self._trim(c, cut)
            if part is not None:
                parts.append(part)
        return self._table(parts) if parts else None

    def _trim(self, c: int, intervals: Intervals) -> Part | None:
        enc = int(self.src.encoding[c])
        if enc == ENC_XOR:
            t, v = xor.decode(self.payload(c))
            keep = ~deleted_mask(t, intervals)
            if not keep.any():
                return None
            t, v = t[keep], v[keep]
            return ENC_XOR, xor.encode(t, v), int(t[0]), int(t[-1]), int(t.shape[0])
        if enc == ENC_AGGR:
            return _aggr_part(aggrops.filter_aggr(aggrops.decode_aggr(self.payload(c)), intervals))
        raise UnsupportedError(f"block {self.block.ulid}: cannot delete samples from chunks of encoding {enc}")

    def _merge_xor(self, out: _Output) -> Built | None:
        """All chunks of the merged series decoded at once and chained (of equal timestamps the first series
        in index order wins), then cut at 120 samples a chunk — the merge modifier's chain."""
        chunks = np.array([self.position[c] for i in out.inputs for c in self.src.chunks(i)], dtype=np.int64)
        stones = {int(self.src.refs[i]): self.tombstones(i) for i in out.inputs}
        if chunks.size == 0:
            return None
        rows = self.rows.pick(chunks)
        rows.ref = np.repeat(self.src.refs[out.inputs], [len(self.src.chunks(i)) for i in out.inputs])
        t, v, run, src = decode_live(rows, np.zeros(len(rows), dtype=np.int64),
                                     [MergeInput(self.block.ulid, 0, 0, {r: s for r, s in stones.items() if s})])
        total = int(t.shape[0])
        merged = chain(t, v, run, src)
        t, v = merged.t, merged.v
        self.stats.samples_deduplicated += total - int(t.shape[0])
        self.stats.chunks_reencoded += sum(len(self.src.chunks(i)) for i in out.inputs)
        if out.intervals:
            # Thanos re-encodes the merged series first (120 samples a chunk) and logs against those chunks.
            b = fixed_size_bounds(int(t.shape[0]), SAMPLES_PER_CHUNK)
            self.deleted = _deleted_ranges(zip(t[b[:-1]].tolist(), t[b[1:] - 1].tolist(), strict=True),
                                           out.intervals)
            keep = ~deleted_mask(t, out.intervals)
            t, v = t[keep], v[keep]
        if t.shape[0] == 0:
            return None
        return encode_runs(Merged(t, v, np.zeros(t.shape[0], dtype=np.int64)), np.zeros(1, dtype=np.int64))

    def _merge_aggr(self, out: _Output) -> Built | None:
        order = sorted((int(self.src.mint[c]), k, c) for k, i in enumerate(out.inputs) for c in self.src.chunks(i))
        disjoint = True
        reach = -(2**63)
        for mint, _, c in order:
            disjoint = disjoint and mint > reach
            reach = max(reach, int(self.src.maxt[c]))
        if disjoint and not any(self.tombstones(i) for i in out.inputs):
            return self._single([c for _, _, c in order], out.intervals, [])
        inputs = []
        for i in out.inputs:
            stones = self.tombstones(i)
            payloads = [self.payload(c) for c in self.src.chunks(i)]
            inputs.append([p for p in (_refiltered(p, stones) if stones else p for p in payloads) if p])
        merged = aggrops.merge_aggr_series(inputs)
        before = sum(int(self.src.samples[c]) for i in out.inputs for c in self.src.chunks(i))
        after = sum(0 if a[0] is None else int(a[0][0].shape[0]) for a in merged)
        self.stats.samples_deduplicated += before - after
        self.stats.chunks_reencoded += len(order)
        if out.intervals:
            spans = [span for aggs in merged if (span := aggrops.window_range(aggs)) is not None]
            self.deleted = _deleted_ranges(spans, out.intervals)
            merged = [aggrops.filter_aggr(aggs, out.intervals) for aggs in merged]
        parts = [p for p in map(_aggr_part, merged) if p is not None]
        return self._table(parts) if parts else None


def _aggr_part(aggs: Sequence[aggrops.Series | None]) -> Part | None:
    span = aggrops.window_range(aggs)
    if span is None:
        return None
    buf, _ = aggrops.encode_aggr([aggs])
    count = aggs[0]
    return ENC_AGGR, buf.tobytes(), span[0], span[1], 0 if count is None else int(count[0].shape[0])


def _refiltered(payload: bytes, intervals: Intervals) -> bytes:
    aggs = aggrops.filter_aggr(aggrops.decode_aggr(payload), intervals)
    if aggrops.window_range(aggs) is None:
        return b""
    buf, _ = aggrops.encode_aggr([aggs])
    return buf.tobytes()


def _output_symbols(block: Block, outputs: Sequence[_Output]) -> dict[str, int]:
    """Ranks of every string the output label sets use, in one sorted table with the block's symbols."""
    used = sorted({x for out in outputs for pair in out.labels for x in pair})
    table = SymbolTable.union([block.index.symbols, used])
    return {sym: rank for rank, sym in enumerate(table.symbols)}


def _label_keys(labels: Sequence[Labels], ranks: dict[str, int], symbols: list[str]) -> LabelKeys:
    flat = [ranks[x] for lab in labels for pair in lab for x in pair]
    offsets = np.concatenate([[0], np.cumsum([2 * len(lab) for lab in labels])]).astype(np.int64)
    return LabelKeys(symbols, np.array(flat, dtype=np.int64), offsets)


def _write_series(block: Block, src: _SourceIndex, outputs: Sequence[_Output], emit: Callable[[ChunkedSeries], None],
                  stats: RewriteStats, changes: list[str], batch_series: int) -> None:
    """Build every output series and ``emit`` them in label order, a batch at a time, logging deletions as
    Thanos does."""
    ranks = _output_symbols(block, outputs)
    symbols = list(ranks)
    for start in range(0, len(outputs), batch_series):
        group = outputs[start : start + batch_series]
        wanted = [c for out in group if not out.delete_all for i in out.inputs for c in src.chunks(i)]
        builder = _SeriesBuilder(block, src, np.array(wanted, dtype=np.int64), stats)
        labels: list[Labels] = []
        refs: list[int] = []
        tables: list[ChunkTable] = []
        counts: list[I64] = []
        for out in group:
            if out.delete_all:
                changes.append(_deleted_line(out.labels, _span(src, out.inputs)))
                continue
            built = builder.build(out)
            if builder.deleted:
                changes.append(_deleted_line(out.labels, builder.deleted))
            if built is None:
                continue
            chunks, samples = built
            num_samples = int(samples.sum())
            if out.intervals and num_samples < sum(src.series_samples(i) for i in out.inputs):
                stats.series_trimmed += 1
            chunks.series = np.full(len(chunks), len(labels), dtype=np.int64)
            labels.append(out.labels)
            refs.append(int(src.refs[out.inputs[0]]))
            tables.append(chunks)
            counts.append(samples)
            stats.series_out += 1
            stats.samples_out += num_samples
            stats.chunks_out += len(chunks)
        if labels:
            emit(ChunkedSeries(_label_keys(labels, ranks, symbols), np.array(refs, dtype=np.int64),
                               ChunkTable.concat(tables), np.concatenate(counts)))


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
    src = _scan_index(block)
    stats = RewriteStats(series_in=len(src.labels), samples_in=int(src.samples.sum()), chunks_in=len(src.ref))
    changes: list[str] = []
    outputs = _plan_series(src, spec, stats, changes)
    labels = dict(external_labels) if external_labels is not None else dict(block.meta.external_labels)
    if out_dir is None:
        _write_series(block, src, outputs, lambda batch: None, stats, changes, batch_series)
        return _finish_stats(BlockRewriteResult(stats, changes))
    m = block.meta
    writer = BlockWriter(out_dir, min_time=m.min_time, max_time=m.max_time, external_labels=labels,
                         resolution=m.resolution, source=SOURCE_BUCKET_REWRITE, level=m.level)
    try:
        written_stats = WriteStats()
        _write_series(block, src, outputs, lambda batch: write_batch(batch, writer, written_stats), stats, changes,
                      batch_series)
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
    engine: BucketWorkspace
    spec: RewriteSpec
    dry_run: bool
    mark_original: bool
    work: WorkDir
    change_log_dir: str | None
    blocks: list[BlockInfo]


def rewrite_bucket(engine: BucketWorkspace, spec: RewriteSpec, *, block_filter: BlockFilter | None = None,
                   dry_run: bool = True, mark_original: bool = True, tmp_dir: str | None = None,
                   change_log_dir: str | None = None,
                   progress: Callable[[str], None] | None = None) -> RewriteReport:
    """Rewrite every selected block (not marked for deletion): upload the new block (meta.json last), then mark
    the source for deletion. Dry runs compute everything and change nothing."""
    if not spec.changes_series and not spec.changes_labels:
        raise ConfigError("nothing to do: give a relabel config, a deletion config or external label changes")
    infos = engine.scan(refresh=True).blocks
    selected = [b for b in infos if "deletion" not in b.marks and (block_filter is None or block_filter.accepts(b))]
    report = RewriteReport(dry_run)
    if spec.changes_labels:
        report.group_merges = preview_group_merges(infos, [b.ulid for b in selected], spec)
    if change_log_dir:
        os.makedirs(change_log_dir, exist_ok=True)
    with work_dir(engine.bucket, "rewrite", tmp_dir) as work:
        ctx = _Context(engine, spec, dry_run, mark_original, work, change_log_dir, infos)
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
    if ctx.engine.bucket.is_local:
        return open_bucket_block(ctx.engine.bucket, ulid), ""
    path = download_block(ctx.engine.bucket, ulid, os.path.join(ctx.work.path, "in"))
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
    path = download_block(ctx.engine.bucket, info.ulid, os.path.join(ctx.work.path, "in"))
    meta = copy_with_labels(path, ctx.work.path, m, ctx.spec, labels)
    _upload(ctx, info.ulid, os.path.join(ctx.work.path, meta.ulid), meta)
    rep.status, rep.new_ulid = "rewritten", meta.ulid
    rep.marked = _mark(ctx, info.ulid)


def _upload(ctx: _Context, source: str, path: str, meta: BlockMeta) -> None:
    bucket = ctx.engine.bucket
    upload_block(path, bucket, source=SOURCE_BUCKET_REWRITE, private=True, work=ctx.work)
    audit("rewrite", [source, meta.ulid], bucket=bucket.url, details={"series": meta.stats.num_series})
    shutil.rmtree(path, ignore_errors=True)


def _mark(ctx: _Context, ulid: str) -> bool:
    if not ctx.mark_original or ctx.dry_run:
        return False
    written = write_marker(ctx.engine.bucket, DeletionMark(ulid, now_seconds(), REWRITTEN_DETAILS))
    if written:
        audit("mark-deletion", [ulid], bucket=ctx.engine.bucket.url, details={"details": REWRITTEN_DETAILS})
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
