"""The downsampling modifier: raw series → 5m AggrChunks, 5m → 1h (FORMATS.md §7.4, §7.5).

Every chunk is touched, so every batch is decoded and downsampled in one kernel call and its AggrChunks
passed on as new chunks.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from thanostools.core.chunkenc import xor
from thanostools.core.constants import RESOLUTION_5M, RESOLUTION_RAW
from thanostools.core.downsample.series import (
    AggrChunks,
    check_resolutions,
    decode_aggr_chunks,
    downsample_aggr_batch,
    downsample_raw,
    downsample_raw_batch,
)
from thanostools.core.errors import CorruptBlockError, UnsupportedError
from thanostools.core.kernels.dtypes import I64
from thanostools.core.labels import Labels, format_labels
from thanostools.core.pipeline.table import ChunkedSeries, ChunkTable
from thanostools.core.tsdb.chunks import ENC_AGGR, ENC_FLOAT_HISTOGRAM, ENC_HISTOGRAM, ENC_XOR, ENCODING_NAMES


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
        bad = np.flatnonzero(c.enc != ENC_XOR)
        if bad.size:
            i = int(bad[0])
            raise self._unsupported(batch.labels.labels(int(c.series[i])), int(c.enc[i]))
        overlap = np.flatnonzero((c.series[1:] == c.series[:-1]) & (c.maxt[:-1] >= c.mint[1:]))
        if overlap.size:
            lab = batch.labels.labels(int(c.series[int(overlap[0])]))
            raise CorruptBlockError(f"found overlapping chunks within series {format_labels(lab)}",
                                    block=self.name, file="index")
        buf, starts, ends = c.one_buffer()
        dec = xor.decode_batch(buf, starts, ends)
        return downsample_raw_batch(dec.t, dec.v, dec.offsets, bounds, self.target)

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
        dec = decode_aggr_chunks(buf, starts, ends, block=self.name)
        return downsample_aggr_batch(dec, series_chunks, mint, maxt, self.resolution, self.target)

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
