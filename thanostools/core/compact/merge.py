"""Merging N blocks into one new block (FORMATS.md §8.4, §3.6, §8.5, §8.6).

A streaming k-way merge by label set. Each input is read in batches of series; a *round* takes, from every
input, the series up to the smallest "last label set" of the current batches, so equal label sets always
meet in one round. Within a round everything is columnar: chunks that overlap nothing are copied verbatim
(same bytes, new refs); chunks that overlap another chunk of the same series, or hold tombstoned samples,
are decoded, merged (chained, or penalty-deduplicated between inputs) and re-encoded at ≤ 120 samples.
Inputs are read as whole records (CRCs verified on read), so a copied chunk's record, CRC included, is
written out as it is: its bytes are copied once, from the input batch into the output segment.
Memory: the writer's symbols and chunk metas plus one batch of series per input.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from thanostools.core.chunkenc import xor
from thanostools.core.chunkenc.aggr import Aggr, aggr_spans
from thanostools.core.compact import kernels
from thanostools.core.errors import CorruptBlockError, UnsupportedError
from thanostools.core.groups import block_sources
from thanostools.core.kernels import binary as kb
from thanostools.core.kernels import labelkeys as labelkeys_kernels
from thanostools.core.tsdb.block import Block
from thanostools.core.tsdb.chunks import (
    ENC_AGGR,
    ENC_XOR,
    ENCODING_NAMES,
    ChunkBatch,
    frame_records,
    ref_offset,
    ref_segment,
    uvarint_sizes,
)
from thanostools.core.tsdb.index import RawSeries
from thanostools.core.tsdb.labelkeys import LabelKeys, SymbolTable
from thanostools.core.tsdb.meta import SOURCE_COMPACTOR, BlockMeta
from thanostools.core.tsdb.tombstones import deleted_mask
from thanostools.core.tsdb.writer import BlockWriter

DEDUP_CHAIN = "chain"
DEDUP_PENALTY = "penalty"
DEDUP_FUNCS = (DEDUP_CHAIN, DEDUP_PENALTY)
SAMPLES_PER_CHUNK = 120
DEFAULT_BATCH_SERIES = 5000


class InputBlockError(UnsupportedError):
    """An input block holds data this merge cannot handle; ``block`` names it."""

    def __init__(self, block: str, message: str) -> None:
        self.block = block
        super().__init__(f"block {block}: {message}")


@dataclass
class MergeStats:
    series: int = 0
    chunks: int = 0
    samples: int = 0
    copied_chunks: int = 0
    reencoded_chunks: int = 0
    dropped_chunks: int = 0  # identical duplicates and chunks outside their block's range
    dropped_series: int = 0  # series left without samples


@dataclass
class CompactResult:
    meta: BlockMeta | None  # None when the output would hold no samples (nothing was written)
    stats: MergeStats = field(default_factory=MergeStats)


def output_meta_args(inputs: Sequence[BlockMeta]) -> dict[str, Any]:
    """BlockWriter arguments for the compaction of ``inputs`` (in plan order), per §8.4."""
    sources: set[str] = set()
    for m in inputs:
        sources |= block_sources(m)
    return {
        "min_time": min(m.min_time for m in inputs),
        "max_time": max(m.max_time for m in inputs),
        "level": max(m.level for m in inputs) + 1,
        "sources": sorted(sources),
        "parents": [{"ulid": m.ulid, "minTime": m.min_time, "maxTime": m.max_time} for m in inputs],
        "extensions": merged_extensions(inputs),
    }


def merged_extensions(inputs: Sequence[BlockMeta]) -> Any:
    """The group's ``thanos.extensions``: objects merged key by key (a later input's value wins), else the
    first one given. Opaque to us, carried through so that whoever set them still finds them."""
    given = [m.thanos.extensions for m in inputs if m.thanos is not None and m.thanos.extensions is not None]
    if not given:
        return None
    if not all(isinstance(e, dict) for e in given):
        return copy.deepcopy(given[0])
    merged: dict[str, Any] = {}
    for e in given:
        merged.update(copy.deepcopy(e))
    return merged


def compact_blocks(
    blocks: Sequence[Block], out_dir: str, *, external_labels: Mapping[str, str], resolution: int,
    dedup: str = DEDUP_CHAIN, batch_series: int = DEFAULT_BATCH_SERIES,
) -> CompactResult:
    """Write the compaction of ``blocks`` (plan order) as a new block under ``out_dir``."""
    writer = BlockWriter(out_dir, external_labels=external_labels, resolution=resolution, source=SOURCE_COMPACTOR,
                         **output_meta_args([b.meta for b in blocks]))
    try:
        stats = merge_into(blocks, writer, dedup=dedup, batch_series=batch_series)
    except BaseException:
        writer.abort()
        raise
    if writer.num_samples == 0:
        writer.abort()
        return CompactResult(None, stats)
    return CompactResult(writer.finish(), stats)


def merge_into(blocks: Sequence[Block], writer: BlockWriter, *, dedup: str = DEDUP_CHAIN,
               batch_series: int = DEFAULT_BATCH_SERIES) -> MergeStats:
    """Stream the merged series of ``blocks`` into ``writer`` (which is not finished here)."""
    if dedup not in DEDUP_FUNCS:
        raise ValueError(f"unknown dedup function {dedup!r}")
    merger = _Merger(blocks, writer, dedup)
    symbols = SymbolTable.union([b.index.symbols for b in blocks])
    cursors = [c for c in (_Cursor(k, b, symbols, batch_series) for k, b in enumerate(blocks)) if c.alive]
    while cursors:
        frontier = cursors[0].last_key
        for c in cursors[1:]:
            if c.keys.compare(len(c.keys) - 1, frontier) < 0:
                frontier = c.last_key
        takes = [take for take in (c.take_until(frontier) for c in cursors) if take is not None]
        merger.round(takes)
        cursors = [c for c in cursors if c.advance()]
    return merger.stats


# --- reading ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Take:
    """Series ``a:b`` of one input's current batch."""

    k: int
    sb: RawSeries
    keys: LabelKeys
    cb: ChunkBatch
    a: int
    b: int


class _Cursor:
    """One input read in batches of series entries, with their label sets as keys over the merge's symbols."""

    def __init__(self, k: int, block: Block, symbols: SymbolTable, batch_series: int) -> None:
        self.k = k
        self.block = block
        self.symbols = symbols
        self._batches: Iterator[RawSeries] = block.index.iter_series_raw(batch_size=batch_series)
        self.pos = 0
        self.alive = self._load()

    def _load(self) -> bool:
        for sb in self._batches:
            if len(sb):
                self._release_read_chunks(sb.chunk_ref)
                self.sb = sb
                self.keys = self.symbols.keys_of(self.k, sb)
                located = self.block.locate_chunks(sb.chunk_ref)
                self.cb = located if located is not None else self.block.chunks.read(sb.chunk_ref, framed=True)
                self.pos = 0
                return True
        return False

    def _release_read_chunks(self, refs: np.ndarray) -> None:
        """Chunks are laid out in series order, so segments before this batch's first chunk were read:
        let the mapped pages go, or resident memory would grow by the size of every input."""
        if refs.size == 0:
            return
        first = int(refs.view(np.uint64).min())
        segments = self.block.chunks.segments
        for seg in range(min(ref_segment(first), len(segments))):
            segments[seg].release(segments[seg].size())
        if ref_segment(first) < len(segments):
            segments[ref_segment(first)].release(ref_offset(first))

    @property
    def last_key(self) -> np.ndarray:
        return self.keys.key(len(self.keys) - 1)

    def take_until(self, frontier: np.ndarray) -> _Take | None:
        end = int(labelkeys_kernels.count_not_after(self.keys.keys, self.keys.offsets, self.pos, frontier))
        if end == self.pos:
            return None
        take = _Take(self.k, self.sb, self.keys, self.cb, self.pos, end)
        self.pos = end
        return take

    def advance(self) -> bool:
        """Load the next batch when this one is used up; False when the input is exhausted."""
        if self.pos < len(self.sb):
            return True
        self.alive = self._load()
        return self.alive


def _merge_keys(takes: Sequence[_Take]) -> tuple[LabelKeys, list[np.ndarray]]:
    """Sorted union of the takes' label sets, and for every take the output position of each of its series."""
    if len(takes) == 1:
        t = takes[0]
        return t.keys.take(np.arange(t.a, t.b)), [np.arange(t.b - t.a, dtype=np.int64)]
    parts = LabelKeys.concat([t.keys.take(np.arange(t.a, t.b)) for t in takes])
    bounds = np.cumsum([0, *[t.b - t.a for t in takes]]).astype(np.int64)
    ids, firsts = labelkeys_kernels.merge_sorted_keys(parts.keys, parts.offsets, bounds)
    return parts.take(firsts), [ids[bounds[j] : bounds[j + 1]] for j in range(len(takes))]


# --- the chunk table of one round ---------------------------------------------------------------------------

_COLUMNS = ("series", "mint", "maxt", "enc", "start", "end", "src", "ref", "rank", "buf")


@dataclass
class _Chunks:
    """Chunk metadata of one round, as columns. Chunk i's payload is ``bufs[buf[i]][start[i]:end[i]]``, inside
    its whole record (the buffers are framed: see ``ChunkBatch.framed``)."""

    bufs: list[np.ndarray]
    series: np.ndarray  # output series id
    mint: np.ndarray
    maxt: np.ndarray
    enc: np.ndarray
    start: np.ndarray
    end: np.ndarray
    src: np.ndarray  # input number (plan order)
    ref: np.ndarray  # input series ref, for tombstones
    rank: np.ndarray  # position in the input's own chunk order
    buf: np.ndarray  # index into bufs

    def pick(self, idx: np.ndarray) -> _Chunks:
        return _Chunks(self.bufs, *(getattr(self, c)[idx] for c in _COLUMNS))

    def __len__(self) -> int:
        return int(self.series.shape[0])

    def by_buffer(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(buffer, positions of its chunks) for every buffer that holds chunks of this table."""
        for b in np.unique(self.buf).tolist():
            yield self.bufs[b], np.flatnonzero(self.buf == b)

    def payloads(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The payloads of chunks ``idx`` back to back -> (bytes, offsets with n+1 entries)."""
        part = self.pick(idx)
        lengths = part.end - part.start
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        out = np.empty(int(offsets[-1]), dtype=np.uint8)
        for buf, at in part.by_buffer():
            kb.scatter_spans(buf, part.start[at], part.end[at], out, offsets[at])
        return out, offsets

    def sample_counts(self) -> np.ndarray:
        counts = np.zeros(len(self), dtype=np.int64)
        for buf, at in self.by_buffer():
            counts[at] = sample_counts(buf, self.start[at], self.end[at], self.enc[at])
        return counts


def _chunk_table(takes: Sequence[_Take], out_ids: Sequence[np.ndarray]) -> _Chunks:
    cols: dict[str, list[np.ndarray]] = {c: [] for c in _COLUMNS}
    for j, (take, ids) in enumerate(zip(takes, out_ids, strict=True)):
        sb, cb = take.sb, take.cb
        lo, hi = int(sb.chunk_offsets[take.a]), int(sb.chunk_offsets[take.b])
        counts = np.diff(sb.chunk_offsets[take.a : take.b + 1])
        cols["series"].append(np.repeat(ids, counts))
        cols["mint"].append(sb.chunk_mint[lo:hi])
        cols["maxt"].append(sb.chunk_maxt[lo:hi])
        cols["enc"].append(cb.encodings[lo:hi])
        cols["start"].append(cb.starts[lo:hi])
        cols["end"].append(cb.ends[lo:hi])
        cols["src"].append(np.full(hi - lo, take.k, dtype=np.int64))
        cols["ref"].append(np.repeat(sb.refs[take.a : take.b], counts))
        cols["rank"].append(np.arange(lo, hi, dtype=np.int64))
        cols["buf"].append(np.full(hi - lo, j, dtype=np.int64))
    return _Chunks([t.cb.buf for t in takes], *(np.concatenate(cols[c]).astype(np.int64) for c in _COLUMNS))


def sample_counts(buf: np.ndarray, start: np.ndarray, end: np.ndarray, enc: np.ndarray) -> np.ndarray:
    """Samples per chunk from the be16 chunk headers; an AggrChunk counts its count aggregate's samples."""
    start = start.copy()
    aggr = np.flatnonzero(enc == ENC_AGGR)
    if aggr.size:
        sub_start, sub_end, _ = aggr_spans(buf, start[aggr], end[aggr], Aggr.COUNT)
        start[aggr] = np.where(sub_end - sub_start >= 2, sub_start, -1)
    short = np.flatnonzero((start < 0) | (end - start < 2))
    counts = np.zeros(start.shape[0], dtype=np.int64)
    ok = np.flatnonzero((start >= 0) & (end - start >= 2))
    counts[ok] = (buf[start[ok]].astype(np.int64) << 8) | buf[start[ok] + 1].astype(np.int64)
    if short.size and bool((enc[short] != ENC_AGGR).any()):
        raise CorruptBlockError("chunk shorter than its 2-byte header")
    return counts


# --- merging one round ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Merged:
    """Samples chosen for every decoded cluster: cluster after cluster, each in time order."""

    t: np.ndarray
    v: np.ndarray
    cluster: np.ndarray


class _Merger:
    def __init__(self, blocks: Sequence[Block], writer: BlockWriter, dedup: str) -> None:
        self.blocks = blocks
        self.writer = writer
        self.dedup = dedup
        self.stats = MergeStats()
        self.min_time = np.array([b.meta.min_time for b in blocks], dtype=np.int64)
        self.max_time = np.array([b.meta.max_time for b in blocks], dtype=np.int64)
        self.stoned = [np.array(sorted(b.tombstones), dtype=np.int64) for b in blocks]

    def round(self, takes: Sequence[_Take]) -> None:
        labels, out_ids = _merge_keys(takes)
        table = _chunk_table(takes, out_ids)
        order = np.lexsort((table.rank, table.src, table.maxt, table.mint, table.series))
        table = table.pick(order)
        table = table.pick(np.flatnonzero(~self._droppable(table)))
        clusters = kernels.overlap_clusters(table.series, table.mint, table.maxt)
        sizes = np.bincount(clusters) if clusters.size else np.zeros(0, np.int64)
        rewrite = (sizes[clusters] > 1) | self._tombstoned(table)
        if not rewrite.any():
            self.stats.copied_chunks += len(table)
            self._write(labels, table, table.sample_counts())
            return
        kept = table.pick(np.flatnonzero(~rewrite))
        redo = table.pick(np.flatnonzero(rewrite))
        new = self._reencode(redo, clusters[rewrite])
        self.stats.copied_chunks += len(kept)
        self._write(labels, *_combine(kept, new))

    def _droppable(self, c: _Chunks) -> np.ndarray:
        """Identical duplicates of the previous chunk, and chunks wholly outside their block's range."""
        outside = (c.mint >= self.max_time[c.src]) | (c.maxt < self.min_time[c.src])
        dup = np.zeros(len(c), dtype=bool)
        if len(c) > 1:
            cand = np.flatnonzero((c.series[1:] == c.series[:-1]) & (c.mint[1:] == c.mint[:-1])
                                  & (c.maxt[1:] == c.maxt[:-1]) & (c.enc[1:] == c.enc[:-1])) + 1
            if cand.size:
                a, a_off = c.payloads(cand)
                b, b_off = c.payloads(cand - 1)
                same = kernels.spans_equal(np.concatenate([a, b]), a_off[:-1], a_off[1:], b_off[:-1] + a.shape[0],
                                           b_off[1:] + a.shape[0])
                dup[cand[same]] = True
        drop: np.ndarray = outside | dup
        self.stats.dropped_chunks += int(drop.sum())
        return drop

    def _tombstoned(self, c: _Chunks) -> np.ndarray:
        out = np.zeros(len(c), dtype=bool)
        for k, block in enumerate(self.blocks):
            if not block.tombstones:
                continue
            for i in np.flatnonzero((c.src == k) & np.isin(c.ref, self.stoned[k])).tolist():
                lo, hi = int(c.mint[i]), int(c.maxt[i])
                out[i] = any(a <= hi and lo <= b for a, b in block.tombstones[int(c.ref[i])])
        return out

    def _reencode(self, redo: _Chunks, clusters: np.ndarray) -> tuple[_Chunks, np.ndarray]:
        t, v, cluster, src = self._decode(redo, clusters)
        merged = (_penalty if self.dedup == DEDUP_PENALTY else _chain)(t, v, cluster, src)
        # cluster ids are increasing along redo, so the first chunk of each names its series
        first_chunk = np.searchsorted(clusters, np.arange(int(clusters.max()) + 1))
        series_of_cluster = redo.series[np.minimum(first_chunk, len(redo) - 1)]
        return _encode_clusters(merged, series_of_cluster, self.stats)

    def _decode(self, c: _Chunks, clusters: np.ndarray) -> tuple[np.ndarray, ...]:
        """Samples of the chunks to rewrite (tombstoned ones removed): t, v, cluster, src.

        Input after input, each in chunk order, so stable sorts break timestamp ties by input.
        """
        parts: list[tuple[np.ndarray, ...]] = []
        for buf, idx in c.by_buffer():
            k = int(c.src[idx[0]])  # a buffer holds one input's chunks
            block = self.blocks[k]
            bad = c.enc[idx][c.enc[idx] != ENC_XOR]
            if bad.size:
                name = ENCODING_NAMES.get(int(bad[0]), "unknown")
                raise InputBlockError(block.ulid, f"overlapping or tombstoned chunks with encoding {int(bad[0])} "
                                                  f"({name}) cannot be merged yet")
            try:
                dec = xor.decode_batch(buf, c.start[idx], c.end[idx])
            except CorruptBlockError as exc:
                raise exc.located(block=block.ulid, file="chunks") from None
            per = np.diff(dec.offsets)
            keep = self._live_samples(block, c, idx, dec)
            parts.append((dec.t[keep], dec.v[keep], np.repeat(clusters[idx], per)[keep],
                          np.full(int(keep.sum()), k, dtype=np.int64)))
        return tuple(np.concatenate(cols) for cols in zip(*parts, strict=True))

    @staticmethod
    def _live_samples(block: Block, c: _Chunks, idx: np.ndarray, dec: xor.DecodedBatch) -> np.ndarray:
        keep = np.ones(dec.t.shape[0], dtype=bool)
        if not block.tombstones:
            return keep
        for j, i in enumerate(idx.tolist()):
            intervals = block.tombstones.get(int(c.ref[i]))
            if intervals:
                a, b = int(dec.offsets[j]), int(dec.offsets[j + 1])
                keep[a:b] = ~deleted_mask(dec.t[a:b], intervals)
        return keep

    def _write(self, labels: LabelKeys, c: _Chunks, counts: np.ndarray) -> None:
        chunk_bounds = np.concatenate([[0], np.cumsum(np.bincount(c.series, minlength=len(labels)))])
        written = int(np.count_nonzero(np.diff(chunk_bounds)))
        samples = int(counts.sum())
        self.stats.dropped_series += len(labels) - written
        self.stats.series += written
        self.stats.chunks += len(c)
        self.stats.samples += samples
        records, fill = _records(c, self.writer.record_buffer)
        self.writer.add_records_keys(labels, records, c.mint, c.maxt, chunk_bounds.astype(np.int64), samples, fill)


def _records(c: _Chunks, allocate: Callable[[int], np.ndarray]) -> tuple[ChunkBatch, Callable[[], None]]:
    """Where the whole records of ``c``'s chunks go, back to back in table order (a framed batch), and the
    copy that puts them there, for the writer thread to run."""
    head = uvarint_sizes(c.end - c.start) + 1
    sizes = head + (c.end - c.start) + 4
    at = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    out = allocate(int(at[-1]))
    copies = [(buf, c.start[idx] - head[idx], c.end[idx] + 4, at[idx]) for buf, idx in c.by_buffer()]

    def fill() -> None:
        for buf, starts, ends, positions in copies:
            kb.scatter_spans(buf, starts, ends, out, positions)

    starts = at[:-1] + head
    return ChunkBatch(out, starts, starts + (c.end - c.start), c.enc, framed=True), fill


def _sort_order(*keys: np.ndarray) -> np.ndarray:
    """Stable argsort by ``keys`` (most significant first, all non-negative but the last).

    Packed into one int64 when the values fit: a single stable sort of a few interleaved sorted runs is
    far cheaper than a multi-key lexsort.
    """
    last = keys[-1] - (int(keys[-1].min()) if keys[-1].size else 0)
    widths = [int(k.max()).bit_length() if k.size else 0 for k in (*keys[:-1], last)]
    if sum(widths) > 62:
        return np.lexsort(tuple(reversed(keys)))
    packed = np.zeros(last.shape[0], dtype=np.int64)
    for key, width in zip((*keys[:-1], last), widths, strict=True):
        packed = (packed << width) | key
    return np.argsort(packed, kind="stable")


def _chain(t: np.ndarray, v: np.ndarray, cluster: np.ndarray, src: np.ndarray) -> _Merged:
    """Samples of each cluster by time; of equal timestamps the first input wins."""
    order = _sort_order(cluster, t)
    t, cluster = t[order], cluster[order]
    first = np.ones(t.shape[0], dtype=bool)
    first[1:] = (cluster[1:] != cluster[:-1]) | (t[1:] != t[:-1])
    pick = order[first]
    return _Merged(t[first], v[pick], cluster[first])


def _penalty(t: np.ndarray, v: np.ndarray, cluster: np.ndarray, src: np.ndarray) -> _Merged:
    """Each input is one replica of the cluster; replicas are folded pairwise in plan order (§8.6)."""
    order = _sort_order(cluster, src, t)
    t, cluster, src = t[order], cluster[order], src[order]
    n = t.shape[0]
    first = np.ones(n, dtype=bool)  # a replica's own duplicate timestamps are chained first
    first[1:] = (cluster[1:] != cluster[:-1]) | (src[1:] != src[:-1]) | (t[1:] != t[:-1])
    order, t, cluster, src = order[first], t[first], cluster[first], src[first]
    new_run = np.ones(t.shape[0], dtype=bool)
    new_run[1:] = (cluster[1:] != cluster[:-1]) | (src[1:] != src[:-1])
    run_starts = np.flatnonzero(new_run)
    run_offsets = np.append(run_starts, t.shape[0]).astype(np.int64)
    run_cluster = cluster[run_starts]
    new_cluster = np.ones(run_starts.shape[0], dtype=bool)
    new_cluster[1:] = run_cluster[1:] != run_cluster[:-1]
    cluster_runs = np.append(np.flatnonzero(new_cluster), run_starts.shape[0]).astype(np.int64)
    chosen = kernels.penalty_clusters(t, run_offsets, cluster_runs)
    return _Merged(t[chosen], v[order[chosen]], cluster[chosen])


def _encode_clusters(m: _Merged, series_of_cluster: np.ndarray, stats: MergeStats) -> tuple[_Chunks, np.ndarray]:
    """XOR chunks of ≤ 120 samples per cluster, all in one encoder call -> (chunks, sample counts)."""
    if m.t.shape[0] == 0:
        empty = np.zeros(0, dtype=np.int64)
        return _Chunks([], *([empty] * len(_COLUMNS))), empty
    starts = np.flatnonzero(np.concatenate([[True], m.cluster[1:] != m.cluster[:-1]]))
    sizes = np.diff(np.append(starts, m.t.shape[0]))
    per = (sizes + SAMPLES_PER_CHUNK - 1) // SAMPLES_PER_CHUNK
    owner = np.repeat(np.arange(starts.shape[0]), per)
    within = np.arange(owner.shape[0]) - np.repeat(np.cumsum(per) - per, per)
    bounds = np.append(starts[owner] + within * SAMPLES_PER_CHUNK, m.t.shape[0]).astype(np.int64)
    buf, offsets = xor.encode_batch(m.t, m.v, bounds)
    framed = frame_records(np.full(owner.shape[0], ENC_XOR, dtype=np.int64), buf, offsets)
    n = owner.shape[0]
    stats.reencoded_chunks += n
    zeros = np.zeros(n, dtype=np.int64)
    chunks = _Chunks([framed.buf], series_of_cluster[m.cluster[starts[owner]]], m.t[bounds[:-1]],
                     m.t[bounds[1:] - 1], framed.encodings, framed.starts, framed.ends, zeros, zeros, zeros, zeros)
    return chunks, np.diff(bounds)


def _combine(kept: _Chunks, new: tuple[_Chunks, np.ndarray]) -> tuple[_Chunks, np.ndarray]:
    """Copied and re-encoded chunks in one table, ordered by series then time, with sample counts."""
    fresh, fresh_counts = new
    counts = np.concatenate([kept.sample_counts(), fresh_counts])
    cols = {c: np.concatenate([getattr(kept, c), getattr(fresh, c) + (len(kept.bufs) if c == "buf" else 0)])
            for c in _COLUMNS}
    both = _Chunks([*kept.bufs, *fresh.bufs], **cols)
    order = np.lexsort((both.mint, both.series))
    return both.pick(order), counts[order]
