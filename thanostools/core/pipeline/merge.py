"""The merge modifier: series of several inputs (or several series that became one) into one series each.

Chunks that overlap nothing are passed on untouched; chunks that overlap another chunk of the same series, or
hold tombstoned samples, are decoded (all at once, float and native-histogram chunks alike), merged by
timestamp — chained (of equal timestamps the first input wins) or penalty-deduplicated between inputs (§8.6;
the algorithm only looks at timestamps, so histograms are deduplicated like floats) — and re-encoded as
Prometheus re-encodes outside the head (§8.4, HISTOGRAMS.md H9.6): ≤ 120 samples a chunk, a new chunk at
every change of value type (float / integer histogram / float histogram), and for histograms the appender's
own cuts (counter resets, schema or zero-threshold changes, gauge vs counter, stale markers; H9.1–H9.3).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from thanostools.core.chunkenc import histogram as hist
from thanostools.core.chunkenc import xor
from thanostools.core.compact import kernels
from thanostools.core.errors import CorruptBlockError, UnsupportedError
from thanostools.core.histograms import concat_histogram_batches
from thanostools.core.pipeline.table import ChunkedSeries, ChunkTable
from thanostools.core.pipeline.write import WriteStats
from thanostools.core.tsdb.chunks import ENC_FLOAT_HISTOGRAM, ENC_HISTOGRAM, ENC_XOR, ENCODING_NAMES, frame_records
from thanostools.core.tsdb.tombstones import Intervals, deleted_mask

DEDUP_CHAIN = "chain"
DEDUP_PENALTY = "penalty"
DEDUP_FUNCS = (DEDUP_CHAIN, DEDUP_PENALTY)
SAMPLES_PER_CHUNK = 120
MERGEABLE_ENCODINGS = (ENC_XOR, ENC_HISTOGRAM, ENC_FLOAT_HISTOGRAM)
# Prometheus 2.42's appender rules are the ones verified (HISTOGRAMS.md H9.1, H17); its chunks read everywhere.
HISTOGRAM_FLAVOR: hist.Flavor = "2.42"


class InputBlockError(UnsupportedError):
    """An input block holds data this merge cannot handle; ``block`` names it."""

    def __init__(self, block: str, message: str) -> None:
        self.block = block
        super().__init__(f"block {block}: {message}")


@dataclass
class MergeStats(WriteStats):
    copied_chunks: int = 0
    reencoded_chunks: int = 0
    dropped_chunks: int = 0  # identical duplicates and chunks outside their block's range


@dataclass(frozen=True)
class MergeInput:
    """What the merge needs to know of one input: its name (for messages), time range and tombstones."""

    name: str
    min_time: int
    max_time: int
    tombstones: Mapping[int, Intervals]


class OverlapMerge:
    """The modifier: ``merge(batch)`` for every batch ``read_series`` yields over ``inputs``."""

    def __init__(self, inputs: Sequence[MergeInput], dedup: str, stats: MergeStats) -> None:
        if dedup not in DEDUP_FUNCS:
            raise ValueError(f"unknown dedup function {dedup!r}")
        self.inputs = inputs
        self.dedup = dedup
        self.stats = stats
        self.min_time = np.array([i.min_time for i in inputs], dtype=np.int64)
        self.max_time = np.array([i.max_time for i in inputs], dtype=np.int64)
        self.stoned = [np.array(sorted(i.tombstones), dtype=np.int64) for i in inputs]

    def __call__(self, batches: Iterable[ChunkedSeries]) -> Iterator[ChunkedSeries]:
        return (self.merge(b) for b in batches)

    def merge(self, batch: ChunkedSeries) -> ChunkedSeries:
        table = batch.chunks
        order = np.lexsort((table.rank, table.src, table.maxt, table.mint, table.series))
        table = table.pick(order)
        table = table.pick(np.flatnonzero(~self._droppable(table)))
        clusters = kernels.overlap_clusters(table.series, table.mint, table.maxt)
        sizes = np.bincount(clusters) if clusters.size else np.zeros(0, np.int64)
        rewrite = (sizes[clusters] > 1) | self._tombstoned(table)
        if not rewrite.any():
            self.stats.copied_chunks += len(table)
            return ChunkedSeries(batch.labels, batch.refs, table)
        kept = table.pick(np.flatnonzero(~rewrite))
        redo = table.pick(np.flatnonzero(rewrite))
        self.stats.copied_chunks += len(kept)
        fresh, fresh_counts = self._reencode(redo, clusters[rewrite])
        both = ChunkTable.concat([kept, fresh])
        counts = np.concatenate([kept.sample_counts(), fresh_counts])
        order = np.lexsort((both.mint, both.series))
        return ChunkedSeries(batch.labels, batch.refs, both.pick(order), counts[order])

    def _droppable(self, c: ChunkTable) -> np.ndarray:
        """Identical duplicates of the previous chunk (unless tombstones cut either: then they differ), and
        chunks wholly outside their block's range."""
        outside = (c.mint >= self.max_time[c.src]) | (c.maxt < self.min_time[c.src])
        stoned = self._tombstoned(c)
        untouched = ~stoned
        untouched[1:] &= ~stoned[:-1]
        drop: np.ndarray = outside | (duplicate_chunks(c) & untouched)
        self.stats.dropped_chunks += int(drop.sum())
        return drop

    def _tombstoned(self, c: ChunkTable) -> np.ndarray:
        out = np.zeros(len(c), dtype=bool)
        for k, source in enumerate(self.inputs):
            if not source.tombstones:
                continue
            for i in np.flatnonzero((c.src == k) & np.isin(c.ref, self.stoned[k])).tolist():
                lo, hi = int(c.mint[i]), int(c.maxt[i])
                out[i] = any(a <= hi and lo <= b for a, b in source.tombstones[int(c.ref[i])])
        return out

    def _reencode(self, redo: ChunkTable, clusters: np.ndarray) -> tuple[ChunkTable, np.ndarray]:
        live = decode_live(redo, clusters, self.inputs)
        merged = (penalty if self.dedup == DEDUP_PENALTY else chain)(live.t, live.ids(), live.run, live.src)
        # cluster ids are increasing along redo, so the first chunk of each names its series
        first_chunk = np.searchsorted(clusters, np.arange(int(clusters.max()) + 1))
        series_of_cluster = redo.series[np.minimum(first_chunk, len(redo) - 1)]
        fresh, counts = encode_live(live, merged, series_of_cluster)
        self.stats.reencoded_chunks += len(fresh)
        return fresh, counts


def duplicate_chunks(c: ChunkTable) -> np.ndarray:
    """Chunks of a table ordered by series and time that repeat the chunk before them: same series, range,
    encoding and bytes."""
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
    return dup


KIND_FLOAT = 0
KIND_HISTOGRAM = 1
KIND_FLOAT_HISTOGRAM = 2
_KIND_OF_ENCODING = {ENC_XOR: KIND_FLOAT, ENC_HISTOGRAM: KIND_HISTOGRAM, ENC_FLOAT_HISTOGRAM: KIND_FLOAT_HISTOGRAM}


@dataclass(frozen=True)
class LiveSamples:
    """Decoded samples of several chunks, in one sequence: timestamp, run, input and kind of every sample; a
    float sample's value in ``v``, a histogram sample's position in its kind's batch in ``at``."""

    t: np.ndarray
    run: np.ndarray
    src: np.ndarray
    kind: np.ndarray
    v: np.ndarray
    at: np.ndarray
    histograms: dict[int, hist.HistogramBatch]

    def ids(self) -> np.ndarray:
        """Sample positions, to merge in place of values (``Merged.v`` then says which samples were chosen)."""
        return np.arange(self.t.shape[0], dtype=np.int64)


def decode_live(c: ChunkTable, runs: np.ndarray, inputs: Sequence[MergeInput]) -> LiveSamples:
    """Samples of chunks ``c`` (float and native-histogram chunks; tombstoned samples removed), ``runs[i]``
    the run of chunk i.

    Buffer after buffer (a buffer holds one input's chunks), each in table order, so stable sorts break
    timestamp ties by input and then by chunk order.
    """
    parts: list[tuple[np.ndarray, ...]] = []
    batches: dict[int, list[hist.HistogramBatch]] = {KIND_HISTOGRAM: [], KIND_FLOAT_HISTOGRAM: []}
    for buf, idx in c.by_buffer():
        source = inputs[int(c.src[idx[0]])]
        bad = c.enc[idx][~np.isin(c.enc[idx], MERGEABLE_ENCODINGS)]
        if bad.size:
            name = ENCODING_NAMES.get(int(bad[0]), "unknown")
            raise InputBlockError(source.name, f"overlapping or tombstoned chunks with encoding {int(bad[0])} "
                                               f"({name}) cannot be merged yet")
        try:
            parts.append(_decode_buffer(buf, c, idx, runs, source, batches))
        except CorruptBlockError as exc:
            raise exc.located(block=source.name, file="chunks") from None
    t, run, src, kind, v, at = (np.concatenate(cols) for cols in zip(*parts, strict=True))
    histograms = {k: concat_histogram_batches(b, is_float=k == KIND_FLOAT_HISTOGRAM) for k, b in batches.items() if b}
    return LiveSamples(t, run, src, kind, v, at, histograms)


def _decode_buffer(buf: np.ndarray, c: ChunkTable, idx: np.ndarray, runs: np.ndarray, source: MergeInput,
                   batches: dict[int, list[hist.HistogramBatch]]) -> tuple[np.ndarray, ...]:
    """One buffer's live samples in table order; its histogram batches are appended to ``batches``."""
    k = int(c.src[idx[0]])
    enc = c.enc[idx]
    pieces: list[tuple[np.ndarray, ...]] = []  # (chunk position, t, run, kind, v, at) per kind
    floats = np.flatnonzero(enc == ENC_XOR)
    if floats.size:
        dec = xor.decode_batch(buf, c.start[idx[floats]], c.end[idx[floats]])
        pieces.append(_piece(c, idx, floats, runs, source, dec.t, dec.offsets, KIND_FLOAT, dec.v,
                             np.full(dec.t.shape[0], -1, dtype=np.int64)))
    is_hist = enc != ENC_XOR
    if is_hist.any():
        where = np.flatnonzero(is_hist)
        ints, flts, is_float = hist.decode_by_kind(buf, c.start[idx[where]], c.end[idx[where]], enc[where],
                                                   flavor=HISTOGRAM_FLAVOR)
        for kind, batch, mine in ((KIND_HISTOGRAM, ints, where[~is_float]),
                                  (KIND_FLOAT_HISTOGRAM, flts, where[is_float])):
            if mine.size:
                base = sum(len(b) for b in batches[kind])
                batches[kind].append(batch)
                pieces.append(_piece(c, idx, mine, runs, source, batch.t, batch.offsets, kind,
                                     np.zeros(len(batch)), base + np.arange(len(batch), dtype=np.int64)))
    pos, t, run, kind_col, v, at = (np.concatenate(cols) for cols in zip(*pieces, strict=True))
    order = np.argsort(pos, kind="stable")
    return (t[order], run[order], np.full(order.shape[0], k, dtype=np.int64), kind_col[order], v[order],
            at[order])


def _piece(c: ChunkTable, idx: np.ndarray, mine: np.ndarray, runs: np.ndarray, source: MergeInput, t: np.ndarray,
           offsets: np.ndarray, kind: int, v: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, ...]:
    per = np.diff(offsets)
    keep = _live_samples(source, c, idx[mine], t, offsets)
    return (np.repeat(mine, per)[keep], t[keep], np.repeat(runs[idx[mine]], per)[keep],
            np.full(int(keep.sum()), kind, dtype=np.int64), v[keep], at[keep])


def _live_samples(source: MergeInput, c: ChunkTable, idx: np.ndarray, t: np.ndarray,
                  offsets: np.ndarray) -> np.ndarray:
    keep = np.ones(t.shape[0], dtype=bool)
    if not source.tombstones:
        return keep
    for j, i in enumerate(idx.tolist()):
        intervals = source.tombstones.get(int(c.ref[i]))
        if intervals:
            a, b = int(offsets[j]), int(offsets[j + 1])
            keep[a:b] = ~deleted_mask(t[a:b], intervals)
    return keep


@dataclass(frozen=True)
class Merged:
    """Samples chosen for every run (a cluster of chunks, or a whole series): run after run, in time order."""

    t: np.ndarray
    v: np.ndarray
    run: np.ndarray


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


def chain(t: np.ndarray, v: np.ndarray, run: np.ndarray, src: np.ndarray) -> Merged:
    """Samples of each run by time; of equal timestamps the first one given wins."""
    order = _sort_order(run, t)
    t, run = t[order], run[order]
    first = np.ones(t.shape[0], dtype=bool)
    first[1:] = (run[1:] != run[:-1]) | (t[1:] != t[:-1])
    pick = order[first]
    return Merged(t[first], v[pick], run[first])


def penalty(t: np.ndarray, v: np.ndarray, run: np.ndarray, src: np.ndarray) -> Merged:
    """Each input is one replica of the run; replicas are folded pairwise in plan order (§8.6)."""
    order = _sort_order(run, src, t)
    t, run, src = t[order], run[order], src[order]
    n = t.shape[0]
    first = np.ones(n, dtype=bool)  # a replica's own duplicate timestamps are chained first
    first[1:] = (run[1:] != run[:-1]) | (src[1:] != src[:-1]) | (t[1:] != t[:-1])
    order, t, run, src = order[first], t[first], run[first], src[first]
    new_replica = np.ones(t.shape[0], dtype=bool)
    new_replica[1:] = (run[1:] != run[:-1]) | (src[1:] != src[:-1])
    replica_starts = np.flatnonzero(new_replica)
    replica_offsets = np.append(replica_starts, t.shape[0]).astype(np.int64)
    replica_run = run[replica_starts]
    new_run = np.ones(replica_starts.shape[0], dtype=bool)
    new_run[1:] = replica_run[1:] != replica_run[:-1]
    run_replicas = np.append(np.flatnonzero(new_run), replica_starts.shape[0]).astype(np.int64)
    chosen = kernels.penalty_clusters(t, replica_offsets, run_replicas)
    return Merged(t[chosen], v[order[chosen]], run[chosen])


def fixed_chunk_bounds(run: np.ndarray) -> np.ndarray:
    """Sample bounds of XOR chunks of ≤ 120 samples over samples grouped in runs (each run cut on its own)."""
    n = run.shape[0]
    if n == 0:
        return np.zeros(1, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate([[True], run[1:] != run[:-1]]))
    sizes = np.diff(np.append(starts, n))
    per = (sizes + SAMPLES_PER_CHUNK - 1) // SAMPLES_PER_CHUNK
    owner = np.repeat(np.arange(starts.shape[0]), per)
    within = np.arange(owner.shape[0]) - np.repeat(np.cumsum(per) - per, per)
    return np.append(starts[owner] + within * SAMPLES_PER_CHUNK, n).astype(np.int64)


def encode_runs(m: Merged, series_of_run: np.ndarray) -> tuple[ChunkTable, np.ndarray]:
    """XOR chunks of ≤ 120 samples per run, all in one encoder call -> (chunks, sample counts)."""
    if m.t.shape[0] == 0:
        return ChunkTable.empty(), np.zeros(0, dtype=np.int64)
    bounds = fixed_chunk_bounds(m.run)
    buf, offsets = xor.encode_batch(m.t, m.v, bounds)
    n = bounds.shape[0] - 1
    framed = frame_records(np.full(n, ENC_XOR, dtype=np.int64), buf, offsets)
    chunks = ChunkTable.fresh(framed, series_of_run[m.run[bounds[:-1]]], m.t[bounds[:-1]], m.t[bounds[1:] - 1])
    return chunks, np.diff(bounds)


def encode_live(live: LiveSamples, merged: Merged, series_of_run: np.ndarray,
                samples_per_chunk: int = SAMPLES_PER_CHUNK) -> tuple[ChunkTable, np.ndarray]:
    """The samples ``merged`` chose (``merged.v``: positions in ``live``) re-encoded (H9.6): each run cut at
    every change of value type into segments; float segments as XOR chunks of ≤ 120 samples, histogram
    segments through the appender (``hist.reencode_chunks``) -> (chunks ordered by series and time, counts)."""
    chosen = merged.v.astype(np.int64)
    kind = live.kind[chosen]
    n = chosen.shape[0]
    new_segment = np.ones(n, dtype=bool)
    new_segment[1:] = (merged.run[1:] != merged.run[:-1]) | (kind[1:] != kind[:-1])
    segment = np.cumsum(new_segment) - 1
    series_of_segment = series_of_run[merged.run[new_segment]] if n else np.zeros(0, dtype=np.int64)
    floats = kind == KIND_FLOAT
    tables, counts = [], []
    if floats.any():
        table, count = encode_runs(Merged(merged.t[floats], live.v[chosen[floats]], segment[floats]),
                                   series_of_segment)
        tables.append(table)
        counts.append(count)
    for k, enc in ((KIND_HISTOGRAM, ENC_HISTOGRAM), (KIND_FLOAT_HISTOGRAM, ENC_FLOAT_HISTOGRAM)):
        mine = np.flatnonzero(kind == k)
        if mine.size:
            table, count = _encode_histograms(live.histograms[k], live.at[chosen[mine]], new_segment[mine],
                                              series_of_segment[segment[mine]], enc, samples_per_chunk)
            tables.append(table)
            counts.append(count)
    if not tables:
        return ChunkTable.empty(), np.zeros(0, dtype=np.int64)
    both = ChunkTable.concat(tables)
    order = np.lexsort((both.mint, both.series))
    return both.pick(order), np.concatenate(counts)[order]


def _encode_histograms(batch: hist.HistogramBatch, at: np.ndarray, run_start: np.ndarray, series: np.ndarray,
                       enc: int, samples_per_chunk: int) -> tuple[ChunkTable, np.ndarray]:
    out = hist.reencode_chunks(hist.as_one_chunk(batch, at), run_start, flavor=HISTOGRAM_FLAVOR,
                               samples_per_chunk=samples_per_chunk)
    buf, offsets = hist.encode_batch(out, flavor=HISTOGRAM_FLAVOR)
    bounds = out.offsets
    framed = frame_records(np.full(out.num_chunks, enc, dtype=np.int64), buf, offsets)
    chunks = ChunkTable.fresh(framed, series[bounds[:-1]], out.t[bounds[:-1]], out.t[bounds[1:] - 1])
    return chunks, np.diff(bounds)
