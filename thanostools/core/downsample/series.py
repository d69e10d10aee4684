"""Downsampling of series data: raw samples or AggrChunks in, encoded AggrChunks out (FORMATS.md §7.4, §7.5).

Batch functions take many series at once (one kernel call per batch); ``downsample_raw`` and
``downsample_aggr`` are the one-series forms used by tests and for odd chunks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from thanostools.core.chunkenc import xor
from thanostools.core.chunkenc.aggr import Aggr, aggr_spans
from thanostools.core.constants import RESOLUTION_1H, RESOLUTION_5M, RESOLUTION_RAW
from thanostools.core.downsample import kernels
from thanostools.core.errors import UnsupportedError
from thanostools.core.kernels.dtypes import I64, U8

_EMPTY_XOR = np.zeros(2, dtype=np.uint8)  # a valid XOR chunk of zero samples


@dataclass(frozen=True)
class AggrChunks:
    """Encoded AggrChunks: chunk k is ``buf[offsets[k]:offsets[k+1]]`` (payload without encoding byte).

    ``series[s]:series[s+1]`` are the chunks of input series s; ``num_samples`` counts the samples of each
    chunk's count sub-chunk (what ``stats.numSamples`` adds up).
    """

    buf: U8
    offsets: I64
    mint: I64
    maxt: I64
    num_samples: I64
    series: I64

    def __len__(self) -> int:
        return int(self.mint.shape[0])

    def chunk(self, k: int) -> bytes:
        return self.buf[int(self.offsets[k]) : int(self.offsets[k + 1])].tobytes()

    def series_range(self, s: int) -> tuple[int, int]:
        return int(self.series[s]), int(self.series[s + 1])


def check_resolutions(source: int, target: int) -> None:
    if (source, target) not in ((RESOLUTION_RAW, RESOLUTION_5M), (RESOLUTION_5M, RESOLUTION_1H)):
        raise UnsupportedError(
            f"cannot downsample resolution {source} to {target} (only raw to 5m and 5m to 1h)")


def _encode(out: tuple[I64, NDArray[np.float64], I64, I64, I64, I64, I64]) -> AggrChunks:
    out_t, out_v, bounds, mint, maxt, nsamples, series_out = out
    sub_buf, sub_off = xor.encode_batch(out_t, out_v, bounds)
    buf, offsets = kernels.assemble_aggr_chunks(sub_buf, sub_off, np.diff(bounds) > 0)
    return AggrChunks(buf, offsets, mint, maxt, nsamples, series_out)


def downsample_raw_batch(t: I64, v_bits: NDArray[np.uint64], chunk_offsets: I64, series_chunks: I64,
                         resolution: int, *, num_chunks: int = 0) -> AggrChunks:
    """Raw → ``resolution`` for many series: series s owns chunks ``series_chunks[s]:series_chunks[s+1]``,
    chunk c owns samples ``chunk_offsets[c]:chunk_offsets[c+1]`` of ``t``/``v_bits``."""
    vb = np.ascontiguousarray(v_bits, dtype=np.uint64)
    with np.errstate(invalid="ignore", over="ignore"):  # Inf - Inf is NaN in Go too (pure-Python fallback)
        out = kernels.downsample_raw_kernel(
            np.ascontiguousarray(t, dtype=np.int64), vb, vb.view(np.float64),
            np.ascontiguousarray(chunk_offsets, dtype=np.int64),
            np.ascontiguousarray(series_chunks, dtype=np.int64), int(resolution), int(num_chunks))
    return _encode(out)


def downsample_raw(t: ArrayLike, v: ArrayLike, resolution: int, *, num_chunks: int = 0) -> AggrChunks:
    """One raw series (as one chunk) → AggrChunks; ``num_chunks`` > 0 forces the target chunk count."""
    ts = xor.as_timestamps(t)
    return downsample_raw_batch(ts, xor.as_value_bits(v), np.array([0, ts.shape[0]]), np.array([0, 1]),
                                resolution, num_chunks=num_chunks)


@dataclass(frozen=True)
class DecodedAggr:
    """All five aggregates of many AggrChunks decoded into one array: aggregate a of chunk c is
    ``t/v[offsets[a, c]:offsets[a, c+1]]``; absent aggregates are empty."""

    t: I64
    v: NDArray[np.uint64]
    offsets: I64


def decode_aggr_chunks(buf: U8, starts: I64, ends: I64, *, block: str | None = None) -> DecodedAggr:
    """Decode every aggregate of the AggrChunk payloads ``buf[starts[i]:ends[i]]`` (float series only)."""
    data = xor.as_u8(buf)
    spans = [aggr_spans(data, starts, ends, a) for a in Aggr]
    for a, (_, _, enc) in zip(Aggr, spans, strict=True):
        odd = enc[(enc != -1) & (enc != kernels.ENC_XOR)]
        if odd.size:
            where = f"block {block}: " if block else ""
            raise UnsupportedError(f"{where}downsampling native histogram chunks is not supported "
                                   f"(aggregate {a.name.lower()} has encoding {int(odd[0])})")
    if any(bool((enc == -1).any()) for _, _, enc in spans):
        # Absent aggregates decode as an empty XOR chunk appended to the buffer.
        empty_at = data.shape[0]
        data = np.concatenate([data, _EMPTY_XOR])
        spans = [(np.where(enc == -1, empty_at, s), np.where(enc == -1, empty_at + 2, e), enc) for s, e, enc in spans]
    # One decode call for all aggregates of all chunks: aggregate a of chunk c is span a * k + c.
    k = starts.shape[0]
    dec = xor.decode_batch(data, np.concatenate([sp[0] for sp in spans]), np.concatenate([sp[1] for sp in spans]))
    offsets = np.stack([dec.offsets[a * k : a * k + k + 1] for a in range(len(spans))])
    return DecodedAggr(dec.t, dec.v, offsets)


def downsample_aggr_batch(dec: DecodedAggr, series_chunks: I64, series_mint: I64, series_maxt: I64,
                          in_resolution: int, resolution: int, *, num_chunks: int = 0) -> AggrChunks:
    """Aggregates → ``resolution`` for many series (chunks ``series_chunks[s]:series_chunks[s+1]``)."""
    with np.errstate(invalid="ignore", over="ignore"):
        out = kernels.downsample_aggr_kernel(
            dec.t, dec.v, dec.v.view(np.float64), dec.offsets, np.ascontiguousarray(series_chunks, dtype=np.int64),
            np.ascontiguousarray(series_mint, dtype=np.int64), np.ascontiguousarray(series_maxt, dtype=np.int64),
            int(in_resolution), int(resolution), int(num_chunks))
    return _encode(out)


def downsample_aggr(chunks: Sequence[bytes], mint: int, maxt: int, in_resolution: int, resolution: int, *,
                    num_chunks: int = 0) -> AggrChunks:
    """One series' AggrChunk payloads (in time order, spanning mint..maxt) → AggrChunks of ``resolution``."""
    sizes = [len(c) for c in chunks]
    buf = np.frombuffer(b"".join(chunks), dtype=np.uint8)
    ends = np.cumsum(np.array(sizes, dtype=np.int64))
    starts = ends - np.array(sizes, dtype=np.int64)
    dec = decode_aggr_chunks(buf, starts, ends)
    return downsample_aggr_batch(dec, np.array([0, len(chunks)]), np.array([mint]), np.array([maxt]),
                                 in_resolution, resolution, num_chunks=num_chunks)
