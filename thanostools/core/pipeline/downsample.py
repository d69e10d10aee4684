"""The downsampling modifier: raw series → 5m AggrChunks, 5m → 1h (FORMATS.md §7.4, §7.5).

Every chunk is touched, so every batch is decoded and downsampled in one kernel call and its AggrChunks
passed on as new chunks.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from thanostools.core.chunkenc import histogram, xor
from thanostools.core.constants import RESOLUTION_5M, RESOLUTION_RAW
from thanostools.core.downsample.histseries import (
    HistAggrChunks,
    concat_hists,
    downsample_hist_aggr,
    downsample_raw_hists,
    float_hists,
    is_histogram_aggr,
)
from thanostools.core.downsample.series import (
    AggrChunks,
    check_resolutions,
    decode_aggr_chunks,
    downsample_aggr_batch,
    downsample_raw,
    downsample_raw_batch,
)
from thanostools.core.errors import CorruptBlockError, UnsupportedError
from thanostools.core.histograms import gather_ranges
from thanostools.core.kernels.dtypes import I64
from thanostools.core.labels import Labels, format_labels
from thanostools.core.pipeline.table import ChunkedSeries, ChunkTable
from thanostools.core.tsdb.chunks import ENC_AGGR, ENC_FLOAT_HISTOGRAM, ENC_HISTOGRAM, ENC_XOR, ENCODING_NAMES


@dataclass(frozen=True)
class _Runs:
    """A batch's chunks split into runs of one value type per series (float / histogram, §7.4 step 2)."""

    is_hist: np.ndarray  # per run
    series: I64  # per run
    chunks: I64  # run r is chunks chunks[r]:chunks[r+1] of the batch

    @classmethod
    def of(cls, chunk_is_hist: np.ndarray, series_bounds: I64) -> _Runs:
        n = chunk_is_hist.shape[0]
        start = np.zeros(n, dtype=bool)
        start[series_bounds[:-1][series_bounds[:-1] < n]] = True
        if n:
            start[1:] |= chunk_is_hist[1:] != chunk_is_hist[:-1]
        first = np.flatnonzero(start)
        series = np.searchsorted(series_bounds, first, side="right") - 1
        return cls(chunk_is_hist[first], series.astype(np.int64), np.append(first, n).astype(np.int64))

    def kind_bounds(self, hist: bool) -> I64:
        """Chunk bounds of this kind's runs, counted among this kind's chunks only."""
        sizes = np.diff(self.chunks)[self.is_hist == hist]
        return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    def merge(self, floats: AggrChunks, hists: HistAggrChunks, hist_runs: I64, num_series: int) -> AggrChunks:
        """Both kinds' output chunks in run order, as one AggrChunks of the batch's series."""
        lo = np.zeros(self.series.shape[0], dtype=np.int64)
        hi = np.zeros(self.series.shape[0], dtype=np.int64)
        fr, hr = ~self.is_hist, self.is_hist
        lo[fr], hi[fr] = floats.series[:-1], floats.series[1:]
        lo[hr], hi[hr] = hist_runs[:-1], hist_runs[1:]
        n_float = len(floats)
        src = gather_ranges(lo + np.where(hr, n_float, 0), hi + np.where(hr, n_float, 0))
        offsets = np.concatenate([floats.offsets[:-1], floats.offsets[-1] + hists.offsets])
        buf = np.concatenate([floats.buf, hists.buf]).astype(np.uint8)
        starts, ends = offsets[src], offsets[src + 1]
        out_offsets = np.concatenate([[0], np.cumsum(ends - starts)]).astype(np.int64)
        per_run = hi - lo
        per_series = np.bincount(self.series, weights=per_run, minlength=num_series).astype(np.int64)
        return AggrChunks(
            buf=buf[gather_ranges(starts, ends)], offsets=out_offsets,
            mint=np.concatenate([floats.mint, hists.mint])[src], maxt=np.concatenate([floats.maxt, hists.maxt])[src],
            num_samples=np.concatenate([floats.num_samples, hists.num_samples])[src],
            series=np.concatenate([[0], np.cumsum(per_series)]).astype(np.int64))


class Downsample:
    """``downsample(batch)`` for every batch of the block ``name`` (at ``resolution``) read in index order."""

    def __init__(self, name: str, resolution: int, target: int) -> None:
        check_resolutions(resolution, target)
        self.name = name
        self.resolution = resolution
        self.target = target

    def __call__(self, batches: Iterable[ChunkedSeries]) -> Iterator[ChunkedSeries]:
        return (self.downsample(b) for b in batches)

    def downsample(self, batch: ChunkedSeries) -> ChunkedSeries:
        bounds = batch.chunks.series_bounds(len(batch))
        out = (self._raw(batch, bounds) if self.resolution == RESOLUTION_RAW else self._aggr(batch, bounds))
        series = np.repeat(np.arange(len(batch), dtype=np.int64), np.diff(out.series))
        chunks = ChunkTable.encoded(np.full(len(out), ENC_AGGR, dtype=np.int64), out.buf, out.offsets, series,
                                    out.mint, out.maxt)
        return ChunkedSeries(batch.labels, batch.refs, chunks, out.num_samples)

    def _unsupported(self, labels: Labels, code: int) -> UnsupportedError:
        name = ENCODING_NAMES.get(code, "unknown")
        why = ("native histograms downsample into histogram AggrChunks (FORMATS.md §7.2), which are not "
               "implemented" if code in (ENC_HISTOGRAM, ENC_FLOAT_HISTOGRAM) else "only float series are supported")
        return UnsupportedError(f"block {self.name}: series {format_labels(labels)}: cannot downsample chunk "
                                f"encoding {code} ({name}): {why}")

    def _raw(self, batch: ChunkedSeries, bounds: I64) -> AggrChunks:
        c = batch.chunks
        bad = np.flatnonzero(~np.isin(c.enc, (ENC_XOR, ENC_HISTOGRAM, ENC_FLOAT_HISTOGRAM)))
        if bad.size:
            i = int(bad[0])
            raise self._unsupported(batch.labels.labels(int(c.series[i])), int(c.enc[i]))
        overlap = np.flatnonzero((c.series[1:] == c.series[:-1]) & (c.maxt[:-1] >= c.mint[1:]))
        if overlap.size:
            lab = batch.labels.labels(int(c.series[int(overlap[0])]))
            raise CorruptBlockError(f"found overlapping chunks within series {format_labels(lab)}",
                                    block=self.name, file="index")
        buf, starts, ends = c.one_buffer()
        is_hist = c.enc != ENC_XOR
        if not is_hist.any():
            dec = xor.decode_batch(buf, starts, ends)
            return downsample_raw_batch(dec.t, dec.v, dec.offsets, bounds, self.target)
        runs = _Runs.of(is_hist, bounds)
        fl = ~is_hist
        dec = xor.decode_batch(buf, starts[fl], ends[fl])
        floats = downsample_raw_batch(dec.t, dec.v, dec.offsets, runs.kind_bounds(False), self.target)
        hists, per_run = self._raw_histograms(buf, starts[is_hist], ends[is_hist], c.enc[is_hist],
                                              runs.kind_bounds(True))
        return runs.merge(floats, hists, per_run, len(batch))

    def _raw_histograms(self, buf: np.ndarray, starts: I64, ends: I64, enc: I64, run_chunks: I64,
                        ) -> tuple[HistAggrChunks, I64]:
        ints, floats, is_float = histogram.decode_by_kind(buf, starts, ends, enc, flavor="3")
        both = concat_hists([float_hists(ints), float_hists(floats)])
        rank = np.cumsum(np.where(is_float, 0, 1)) - 1
        rank_f = np.cumsum(np.where(is_float, 1, 0)) - 1
        lo = np.where(is_float, len(ints) + floats.offsets[np.maximum(rank_f, 0)],
                      ints.offsets[np.maximum(rank, 0)])
        size = np.where(is_float, np.diff(floats.offsets)[np.minimum(np.maximum(rank_f, 0), floats.num_chunks - 1)]
                        if floats.num_chunks else 0,
                        np.diff(ints.offsets)[np.minimum(np.maximum(rank, 0), ints.num_chunks - 1)]
                        if ints.num_chunks else 0)
        h = both.take(gather_ranges(lo, lo + size))
        chunk_off = np.concatenate([[0], np.cumsum(size)]).astype(np.int64)
        return downsample_raw_hists(h, chunk_off, run_chunks, self.target, block=self.name)

    def _aggr(self, batch: ChunkedSeries, bounds: I64) -> AggrChunks:
        c = batch.chunks
        has = bounds[1:] > bounds[:-1]
        first = np.minimum(bounds[:-1], max(len(c) - 1, 0))
        last = np.maximum(bounds[1:] - 1, 0)
        mint = np.where(has, c.mint[first] if len(c) else 0, 0)
        maxt = np.where(has, c.maxt[last] if len(c) else 0, 0)
        if bool((c.enc == ENC_AGGR).all()):
            buf, starts, ends = c.one_buffer()
            series_chunks = bounds
        else:
            buf, starts, ends, series_chunks = self._normalise(batch, bounds)
        is_hist = is_histogram_aggr(buf, starts, ends)
        if not is_hist.any():
            dec = decode_aggr_chunks(buf, starts, ends, block=self.name)
            return downsample_aggr_batch(dec, series_chunks, mint, maxt, self.resolution, self.target)
        runs = _Runs.of(is_hist, series_chunks)
        run_mint, run_maxt = self._chunk_times(batch, series_chunks, runs)
        fl = ~is_hist
        fr = ~runs.is_hist
        dec = decode_aggr_chunks(buf, starts[fl], ends[fl], block=self.name)
        floats = downsample_aggr_batch(dec, runs.kind_bounds(False), run_mint[fr], run_maxt[fr], self.resolution,
                                       self.target)
        hists, per_run = downsample_hist_aggr(buf, starts[is_hist], ends[is_hist], runs.kind_bounds(True),
                                              run_mint[runs.is_hist], run_maxt[runs.is_hist], self.resolution,
                                              self.target, block=self.name)
        return runs.merge(floats, hists, per_run, len(batch))

    def _chunk_times(self, batch: ChunkedSeries, series_chunks: I64, runs: _Runs) -> tuple[I64, I64]:
        """(mint of the first chunk, maxt of the last chunk) of every run."""
        c = batch.chunks
        if int(series_chunks[-1]) != len(c):
            raise UnsupportedError(f"block {self.name}: downsampling a 5m block whose native-histogram series "
                                   "also hold chunks that are not AggrChunks is not supported")
        return c.mint[runs.chunks[:-1]], c.maxt[runs.chunks[1:] - 1]

    def _normalise(self, batch: ChunkedSeries, bounds: I64) -> tuple[np.ndarray, I64, I64, I64]:
        """Chunks of a downsampled block that are not AggrChunks (an old Thanos bug) become AggrChunks of 5m;
        empty ones are dropped. Rare, so a Python loop over chunks is fine here."""
        c = batch.chunks
        parts: list[bytes] = []
        series_chunks = [0]
        for s in range(len(batch)):
            for j in range(int(bounds[s]), int(bounds[s + 1])):
                code = int(c.enc[j])
                data = c.payload(j)
                if code == ENC_AGGR:
                    parts.append(data)
                elif code == ENC_XOR:
                    if xor.num_samples(data):
                        t, v = xor.decode(data)
                        out = downsample_raw(t, v, RESOLUTION_5M)
                        parts.extend(out.chunk(k) for k in range(len(out)))
                else:
                    raise self._unsupported(batch.labels.labels(s), code)
            series_chunks.append(len(parts))
        sizes = np.array([len(p) for p in parts], dtype=np.int64)
        ends = np.cumsum(sizes)
        return (np.frombuffer(b"".join(parts), dtype=np.uint8), ends - sizes, ends,
                np.array(series_chunks, dtype=np.int64))
