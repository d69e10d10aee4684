"""The modifier that merges series of one block whose label sets became equal (after relabelling).

Runs of equal label sets come adjacent and whole within a batch, in index order. Float series are decoded
together (the block's tombstones applied), chained — of equal timestamps the series first in index order wins —
and re-encoded at 120 samples a chunk, as Thanos does. Downsampled series whose chunks do not overlap keep their
AggrChunks, ordered by time; overlapping ones (or tombstoned ones) are merged aggregate by aggregate. Native-histogram
AggrChunks are not merged: disjoint ones lose their tombstoned samples chunk by chunk, overlapping ones are refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from thanostools.core.downsample import aggrops
from thanostools.core.errors import UnsupportedError
from thanostools.core.goformat import go_labels_string
from thanostools.core.pipeline.delete import aggr_part, encoded_parts
from thanostools.core.pipeline.merge import MERGEABLE_ENCODINGS, MergeInput, chain, decode_live, encode_live
from thanostools.core.pipeline.table import ChunkedSeries, ChunkTable, equal_to_previous
from thanostools.core.tsdb.chunks import ENC_AGGR
from thanostools.core.tsdb.tombstones import Intervals


@dataclass
class MergeEqualStats:
    samples_deduplicated: int = 0
    chunks_reencoded: int = 0


@dataclass
class MergeEqual:
    """``merged`` notes every series it built from several (by the ref of the first): their samples."""

    block: str
    tombstones: Mapping[int, Intervals]
    stats: MergeEqualStats
    merged: dict[int, int] = field(default_factory=dict)

    def __call__(self, batches: Iterable[ChunkedSeries]) -> Iterator[ChunkedSeries]:
        return (self.merge(b) for b in batches)

    def merge(self, batch: ChunkedSeries) -> ChunkedSeries:
        same = equal_to_previous(batch.labels)
        if not same.any():
            return batch
        run = np.cumsum(~same) - 1
        starts = np.flatnonzero(~same)
        c = batch.chunks
        chunk_run = run[c.series]
        sizes = np.bincount(run, minlength=starts.shape[0])
        counts = batch.sample_counts()
        single = sizes[chunk_run] == 1
        tables = [c.pick(np.flatnonzero(single))]
        tables[0].series = chunk_run[single]
        for r in np.flatnonzero(sizes > 1).tolist():
            rows = np.flatnonzero(chunk_run == r)
            table = self._merge_run(batch, int(starts[r]), int(sizes[r]), c.pick(rows), int(counts[rows].sum()))
            table.series = np.full(len(table), r, dtype=np.int64)
            tables.append(table)
        both = ChunkTable.concat(tables)
        position = np.concatenate([np.flatnonzero(single), *(np.zeros(len(t), np.int64) for t in tables[1:])])
        within = np.concatenate([np.zeros(int(single.sum()), np.int64), *(np.arange(len(t)) for t in tables[1:])])
        order = np.lexsort((within, position, both.series))
        return ChunkedSeries(batch.labels.take(starts), batch.refs[starts], both.pick(order))

    def _merge_run(self, batch: ChunkedSeries, first: int, size: int, rows: ChunkTable, samples: int) -> ChunkTable:
        """Series first..first+size-1 (their chunks ``rows``, in index order) as one series' chunks."""
        encodings = set(rows.enc.tolist())
        ref = int(batch.refs[first])
        if encodings <= set(MERGEABLE_ENCODINGS):
            if len(rows) == 0:
                return rows
            self.merged[ref] = samples
            return self._chain(rows)
        if encodings == {ENC_AGGR}:
            return self._merge_aggr(rows, ref, samples)
        raise UnsupportedError(f"block {self.block}: cannot merge series into "
                               f"{go_labels_string(batch.labels.labels(first))}: chunk encodings "
                               f"{sorted(encodings)} (only float, native-histogram and downsampled float chunks)")

    def _stones(self, rows: ChunkTable) -> dict[int, Intervals]:
        return {r: s for r in np.unique(rows.ref).tolist() if (s := self.tombstones.get(r))}

    def _chain(self, rows: ChunkTable) -> ChunkTable:
        rows = rows.pick(np.arange(len(rows)))
        rows.src = np.zeros(len(rows), dtype=np.int64)
        live = decode_live(rows, np.zeros(len(rows), dtype=np.int64),
                           [MergeInput(self.block, 0, 0, self._stones(rows))])
        merged = chain(live.t, live.ids(), live.run, live.src)
        self.stats.samples_deduplicated += live.t.shape[0] - merged.t.shape[0]
        self.stats.chunks_reencoded += len(rows)
        chunks, _ = encode_live(live, merged, np.zeros(1, dtype=np.int64))
        return chunks

    def _merge_aggr(self, rows: ChunkTable, ref: int, samples: int) -> ChunkTable:
        series = rows.series
        order = np.lexsort((np.arange(len(rows)), series, rows.mint))
        reach = np.maximum.accumulate(rows.maxt[order])
        disjoint = bool((rows.mint[order][1:] > reach[:-1]).all())
        stones = self._stones(rows)
        if disjoint and not stones:
            return rows.pick(order)
        if disjoint and any(aggrops.holds_histograms(rows.payload(i)) for i in range(len(rows))):
            return self._cut_each(rows.pick(order), stones, ref, samples)
        inputs = []
        for s in np.unique(series).tolist():
            payloads = [rows.payload(i) for i in np.flatnonzero(series == s).tolist()]
            cut = stones.get(int(rows.ref[series == s][0]))
            inputs.append([p for p in (_refiltered(p, cut, self.block) if cut else p for p in payloads) if p])
        merged = aggrops.merge_aggr_series(inputs, block=self.block)
        after = sum(0 if (c := a[0]) is None else int(aggrops.aggregate_times(c).shape[0]) for a in merged)
        self.stats.samples_deduplicated += samples - after
        self.stats.chunks_reencoded += len(rows)
        self.merged[ref] = samples
        return encoded_parts([p for p in map(aggr_part, merged) if p is not None])

    def _cut_each(self, rows: ChunkTable, stones: Mapping[int, Intervals], ref: int, samples: int) -> ChunkTable:
        """Disjoint AggrChunks (in time order), each without its series' tombstoned samples."""
        parts: list[tuple[int, bytes, int, int]] = []
        for i in range(len(rows)):
            cut = stones.get(int(rows.ref[i]))
            if not cut:
                parts.append((ENC_AGGR, rows.payload(i), int(rows.mint[i]), int(rows.maxt[i])))
                continue
            self.stats.chunks_reencoded += 1
            part = aggr_part(aggrops.filter_aggr(aggrops.decode_aggr(rows.payload(i), block=self.block), cut))
            if part is not None:
                parts.append(part)
        self.merged[ref] = samples
        return encoded_parts(parts)


def _refiltered(payload: bytes, intervals: Intervals, block: str) -> bytes:
    aggs = aggrops.filter_aggr(aggrops.decode_aggr(payload, block=block), intervals)
    if aggrops.window_range(aggs) is None:
        return b""
    buf, _ = aggrops.encode_aggr([aggs])
    return buf.tobytes()
