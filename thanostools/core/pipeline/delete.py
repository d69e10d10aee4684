"""The deletion modifier: Thanos deletion requests (matched on the series' current label sets) and the block's
own tombstones.

It has two stages around the merge of series that became equal: ``whole`` drops the series a request removes
entirely before they are merged (nothing of them is decoded), ``trim`` cuts intervals out of the others after
it — Thanos logs a merged series' deletions against its re-encoded chunks. Trimming keeps every chunk that
touches no interval as it is and decodes only the chunks that do; a merged series (all its chunks new) is cut
and re-encoded whole. Log lines are collected with their label sets and come out in label order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from thanostools.core.chunkenc import xor
from thanostools.core.chunkenc.histogram import MAX_SAMPLES_PER_CHUNK
from thanostools.core.downsample import aggrops
from thanostools.core.errors import UnsupportedError
from thanostools.core.goformat import go_labels_string
from thanostools.core.labels import Labels
from thanostools.core.pipeline.merge import (
    MERGEABLE_ENCODINGS,
    SAMPLES_PER_CHUNK,
    MergeInput,
    chain,
    decode_live,
    encode_live,
)
from thanostools.core.pipeline.table import ChunkedSeries, ChunkTable, equal_to_previous
from thanostools.core.relabel import DeletionRequest, deletion_intervals
from thanostools.core.tsdb.chunks import ENC_AGGR, ENC_FLOAT_HISTOGRAM, ENC_HISTOGRAM, ENC_XOR
from thanostools.core.tsdb.tombstones import Intervals, deleted_mask, merge_intervals


def go_intervals(intervals: Intervals) -> str:
    return "[" + " ".join(f"{{{a} {b}}}" for a, b in intervals) + "]"


def deleted_line(labels: Labels, intervals: Intervals) -> str:
    return f"Deleted {go_labels_string(labels)} {go_intervals(intervals)}"


def deleted_ranges(chunk_ranges: Iterable[tuple[int, int]], intervals: Intervals) -> Intervals:
    """What Thanos logs for a series losing ``intervals``: whole chunk ranges for chunks inside one interval,
    the overlap with the intervals for chunks that are cut."""
    out: Intervals = []
    for lo, hi in chunk_ranges:
        if any(a <= lo and hi <= b for a, b in intervals):
            out.append((lo, hi))
            continue
        out.extend((max(a, lo), min(b, hi)) for a, b in intervals if a <= hi and lo <= b)
    return merge_intervals(out)


@dataclass
class DeleteStats:
    series_deleted: int = 0  # input series removed whole by a request
    series_trimmed: int = 0  # series with a matching request that lost samples
    chunks_reencoded: int = 0  # chunks cut (or dropped) by an interval or tombstone


@dataclass
class Deletions:
    """What the deletion stages share: the requests, the block's tombstones, and the log."""

    block: str
    resolution: int
    requests: Sequence[DeletionRequest]
    tombstones: Mapping[int, Intervals]
    stats: DeleteStats
    merged: Mapping[int, int]  # series (by ref) that are merges of several: samples of their inputs
    lines: list[tuple[Labels, str]] = field(default_factory=list)
    cut: dict[int, Intervals] = field(default_factory=dict)  # series (by ref) -> intervals of its requests

    def changes(self) -> list[str]:
        return [line for _, line in sorted(self.lines, key=lambda entry: entry[0])]

    def whole(self, batches: Iterable[ChunkedSeries]) -> Iterator[ChunkedSeries]:
        """Drop the runs of equal label sets a request removes whole; note the intervals of the others."""
        for batch in batches:
            starts = np.flatnonzero(~equal_to_previous(batch.labels))
            ends = np.append(starts[1:], len(batch))
            gone = np.zeros(len(batch), dtype=bool)
            for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
                labels = batch.labels.labels(a)
                found = deletion_intervals(labels, self.requests)
                if found == []:
                    gone[a:b] = True
                    self.stats.series_deleted += b - a
                    self.lines.append((labels, deleted_line(labels, self._span(batch, a, b))))
                elif found:
                    self.cut[int(batch.refs[a])] = found
            yield batch.take(np.flatnonzero(~gone)) if gone.any() else batch

    @staticmethod
    def _span(batch: ChunkedSeries, a: int, b: int) -> Intervals:
        c = batch.chunks
        rows = np.flatnonzero((c.series >= a) & (c.series < b))
        return [(int(c.mint[rows].min()), int(c.maxt[rows].max()))] if rows.size else []

    def trim(self, batches: Iterable[ChunkedSeries]) -> Iterator[ChunkedSeries]:
        return (self._trim(b) for b in batches)

    def _trim(self, batch: ChunkedSeries) -> ChunkedSeries:
        refs = batch.refs.tolist()
        work = [s for s, r in enumerate(refs) if r in self.cut or (r in self.tombstones and r not in self.merged)]
        if not work:
            return batch
        c = batch.chunks
        bounds = c.series_bounds(len(batch))
        before = batch.series_samples()
        counts = batch.sample_counts()
        replaced = np.zeros(len(c), dtype=bool)
        fresh: list[_Replacement] = []
        for s in work:
            ref = refs[s]
            a, b = int(bounds[s]), int(bounds[s + 1])
            intervals = self.cut.pop(ref, [])
            if ref in self.merged:
                new = self._cut_merged(batch, s, a, b, intervals)
                samples_in = self.merged[ref]
            else:
                new = self._cut_single(batch, s, a, b, intervals, self.tombstones.get(ref, []))
                samples_in = int(before[s])
            replaced[new.rows] = True
            fresh.append(new)
            left = ~replaced[a:b]
            samples_out = int(counts[a:b][left].sum()) + int(new.chunks.sample_counts().sum())
            # a series left without chunks is gone, not trimmed
            if intervals and samples_out < samples_in and (left.any() or len(new.chunks)):
                self.stats.series_trimmed += 1
        return _replace(batch, replaced, fresh)

    def _cut_single(self, batch: ChunkedSeries, s: int, a: int, b: int, intervals: Intervals,
                    stones: Intervals) -> _Replacement:
        """Chunks of series s (rows a:b) that touch an interval or tombstone, and what is left of them."""
        c = batch.chunks
        if intervals:
            ranges = zip(c.mint[a:b].tolist(), c.maxt[a:b].tolist(), strict=True)
            self._log(batch.labels.labels(s), deleted_ranges(ranges, intervals))
        cut = merge_intervals(intervals + stones)
        reach = max(self.resolution - 1, 0)
        # A downsampled chunk's counter starts with a raw sample up to one window before its mint.
        lo = c.mint[a:b] - np.where(c.enc[a:b] == ENC_AGGR, reach, 0)
        hi = c.maxt[a:b]
        touched = np.zeros(b - a, dtype=bool)
        for x, y in cut:
            touched |= (x <= hi) & (lo <= y)
        rows = a + np.flatnonzero(touched)
        self.stats.chunks_reencoded += int(rows.shape[0])
        parts: list[tuple[int, bytes, int, int]] = []
        place: list[int] = []
        for i in rows.tolist():
            for part in self._trimmed(c, i, cut):
                parts.append(part)
                place.append(i)
        return _Replacement(rows, encoded_parts(parts), np.array(place, dtype=np.int64))

    def _trimmed(self, c: ChunkTable, i: int, cut: Intervals) -> list[tuple[int, bytes, int, int]]:
        """Chunk i without the samples in ``cut`` (nothing when nothing is left). A histogram chunk stays one
        chunk unless the appender must cut it (H9.6)."""
        enc = int(c.enc[i])
        if enc == ENC_XOR:
            t, v = xor.decode(c.payload(i))
            keep = ~deleted_mask(t, cut)
            if not keep.any():
                return []
            t, v = t[keep], v[keep]
            return [(ENC_XOR, xor.encode(t, v), int(t[0]), int(t[-1]))]
        if enc == ENC_AGGR:
            part = aggr_part(aggrops.filter_aggr(aggrops.decode_aggr(c.payload(i), block=self.block), cut))
            return [] if part is None else [part]
        if enc in (ENC_HISTOGRAM, ENC_FLOAT_HISTOGRAM):
            chunks = self._reencoded(c.pick(np.array([i])), cut, MAX_SAMPLES_PER_CHUNK)
            return [(int(chunks.enc[j]), chunks.payload(j), int(chunks.mint[j]), int(chunks.maxt[j]))
                    for j in range(len(chunks))]
        raise UnsupportedError(f"block {self.block}: cannot delete samples from chunks of encoding {enc}")

    def _reencoded(self, rows: ChunkTable, cut: Intervals, samples_per_chunk: int) -> ChunkTable:
        """The float and histogram chunks ``rows`` of one series without the samples in ``cut``, re-encoded."""
        rows = rows.pick(np.arange(len(rows)))
        rows.src = np.zeros(len(rows), dtype=np.int64)
        stones = {int(r): cut for r in np.unique(rows.ref).tolist()}
        live = decode_live(rows, np.zeros(len(rows), dtype=np.int64), [MergeInput(self.block, 0, 0, stones)])
        merged = chain(live.t, live.ids(), live.run, live.src)
        chunks, _ = encode_live(live, merged, np.zeros(1, dtype=np.int64), samples_per_chunk)
        return chunks

    def _cut_merged(self, batch: ChunkedSeries, s: int, a: int, b: int, intervals: Intervals) -> _Replacement:
        """A merged series loses ``intervals``: XOR samples are cut and re-encoded at 120 a chunk, AggrChunks
        are cut one by one."""
        c = batch.chunks
        rows = np.arange(a, b, dtype=np.int64)
        self._log(batch.labels.labels(s), deleted_ranges(zip(c.mint[a:b].tolist(), c.maxt[a:b].tolist(),
                                                             strict=True), intervals))
        if bool((c.enc[a:b] == ENC_AGGR).all()):
            parts = [p for i in range(a, b) if (p := aggr_part(aggrops.filter_aggr(
                aggrops.decode_aggr(c.payload(i), block=self.block), intervals))) is not None]
            chunks = encoded_parts(parts)
        elif bool(np.isin(c.enc[a:b], MERGEABLE_ENCODINGS).all()):
            chunks = self._reencoded(c.pick(rows), intervals, SAMPLES_PER_CHUNK)
        else:
            raise UnsupportedError(f"block {self.block}: cannot delete samples from series "
                                   f"{go_labels_string(batch.labels.labels(s))}: it mixes downsampled and raw "
                                   f"chunks")
        return _Replacement(rows, chunks, np.full(len(chunks), a, dtype=np.int64))

    def _log(self, labels: Labels, deleted: Intervals) -> None:
        if deleted:
            self.lines.append((labels, deleted_line(labels, deleted)))


@dataclass(frozen=True)
class _Replacement:
    """Chunks ``rows`` of a batch give way to ``chunks``, each placed where the row ``place`` of it was (in
    their order when several share one)."""

    rows: np.ndarray
    chunks: ChunkTable
    place: np.ndarray


def _replace(batch: ChunkedSeries, replaced: np.ndarray, fresh: Sequence[_Replacement]) -> ChunkedSeries:
    c = batch.chunks
    kept = np.flatnonzero(~replaced)
    both = ChunkTable.concat([c.pick(kept), *(r.chunks for r in fresh)])
    place = np.concatenate([kept, *(r.place for r in fresh)])
    within = np.concatenate([np.zeros(kept.shape[0], dtype=np.int64),
                             *(np.arange(len(r.chunks), dtype=np.int64) for r in fresh)])
    both.series = c.series[place]
    return ChunkedSeries(batch.labels, batch.refs, both.pick(np.lexsort((within, place))))


def aggr_part(aggs: Sequence[aggrops.Aggregate | None]) -> tuple[int, bytes, int, int] | None:
    """One AggrChunk of ``aggs`` (None when they hold no sample): encoding, payload, mint, maxt."""
    span = aggrops.window_range(aggs)
    if span is None:
        return None
    buf, _ = aggrops.encode_aggr([aggs])
    return ENC_AGGR, buf.tobytes(), span[0], span[1]


def encoded_parts(parts: Sequence[tuple[int, bytes, int, int]]) -> ChunkTable:
    """New chunks given as (encoding, payload, mint, maxt), all of series 0 (framed into records)."""
    if not parts:
        return ChunkTable.empty()
    sizes = np.array([len(p[1]) for p in parts], dtype=np.int64)
    return ChunkTable.encoded(np.array([p[0] for p in parts], dtype=np.int64),
                              np.frombuffer(b"".join(p[1] for p in parts), np.uint8),
                              np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
                              np.zeros(len(parts), dtype=np.int64), np.array([p[2] for p in parts], dtype=np.int64),
                              np.array([p[3] for p in parts], dtype=np.int64))
