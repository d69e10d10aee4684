"""Editing AggrChunks outside of downsampling (block rewrites): removing time intervals and merging series.

Both decode the five aggregates and re-encode them in the layout Thanos writes. A deleted interval removes every
sample inside it from every aggregate; merged series are chained aggregate by aggregate (on equal timestamps the
first series wins), the same rule raw samples follow.

Native-histogram AggrChunks (FORMATS.md §7.2) hold their sum and counter as histogram sub-chunks: cutting keeps
each one a single chunk with its own bucket layout (a subset of samples always fits it) and header, except that
a counter losing its first samples gets the unknown header (whether the new first one is a reset is not known).
A sub-chunk that loses nothing keeps its bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TypeGuard

import numpy as np
from numpy.typing import NDArray

from thanostools.core.chunkenc import histogram as hc
from thanostools.core.chunkenc import xor
from thanostools.core.chunkenc.aggr import NUM_AGGRS, Aggr, build_aggr, counter_reset_series, split_aggr
from thanostools.core.downsample import kernels
from thanostools.core.errors import UnsupportedError
from thanostools.core.kernels.dtypes import I64, U64
from thanostools.core.storage import chain_samples
from thanostools.core.tsdb.tombstones import Intervals, deleted_mask

Series = tuple[I64, U64]
MERGED_WINDOWS_PER_CHUNK = 120
HISTOGRAM_AGGREGATES = (Aggr.SUM, Aggr.COUNTER)


@dataclass(frozen=True)
class HistAggregate:
    """A histogram sub-chunk of an AggrChunk: its encoding and bytes, and decoded as a batch of one chunk."""

    encoding: int
    data: bytes
    chunk: hc.HistogramBatch

    @property
    def t(self) -> I64:
        return self.chunk.t


Aggregate = Series | HistAggregate


def aggregate_times(sub: Aggregate) -> I64:
    return sub.t if isinstance(sub, HistAggregate) else sub[0]


def decode_aggr(payload: bytes, *, block: str | None = None) -> list[Aggregate | None]:
    """The five aggregates of one AggrChunk payload; None for absent ones. Sum and counter may be histogram
    sub-chunks (native-histogram series); every other aggregate must be XOR."""
    out: list[Aggregate | None] = []
    for i, sub in enumerate(split_aggr(payload)):
        if sub is None:
            out.append(None)
        elif sub[0] == kernels.ENC_XOR:
            out.append(xor.decode(sub[1]))
        elif sub[0] in (hc.ENC_HISTOGRAM, hc.ENC_FLOAT_HISTOGRAM) and i in HISTOGRAM_AGGREGATES:
            out.append(_decode_hist(sub[0], sub[1]))
        else:
            where = f"block {block}: " if block else ""
            raise UnsupportedError(f"{where}AggrChunk aggregate {Aggr(i).name.lower()} has encoding {sub[0]}, "
                                   "which a downsampled chunk cannot hold")
    return out


def holds_histograms(payload: bytes) -> bool:
    """Whether an AggrChunk belongs to a native-histogram series (its counter is a histogram chunk)."""
    counter = split_aggr(payload)[Aggr.COUNTER]
    return counter is not None and counter[0] in (hc.ENC_HISTOGRAM, hc.ENC_FLOAT_HISTOGRAM)


def _decode_hist(encoding: int, data: bytes) -> HistAggregate:
    buf = np.frombuffer(data, dtype=np.uint8)
    chunk = hc.decode_batch(buf, np.zeros(1, np.int64), np.full(1, buf.shape[0], np.int64),
                            np.full(1, encoding, np.int64))
    return HistAggregate(encoding, data, chunk)


def _kept_hist(sub: HistAggregate, keep: NDArray[np.bool_]) -> HistAggregate:
    """The histogram sub-chunk with only the samples ``keep`` (some, not all), re-encoded as one chunk."""
    header = int(sub.chunk.header[0])
    if not keep[0] and header != hc.HEADER_GAUGE:
        header = hc.HEADER_UNKNOWN
    chunk = replace(hc.as_one_chunk(sub.chunk, np.flatnonzero(keep)), header=np.full(1, header, np.uint8))
    buf, _ = hc.encode_batch(chunk)
    return HistAggregate(int(chunk.encoding[0]), buf.tobytes(), chunk)


def encode_aggr(chunks: Sequence[Sequence[Aggregate | None]]) -> tuple[NDArray[np.uint8], I64]:
    """AggrChunk payloads from per-chunk aggregates (absent or empty → absent): (buf, offsets)."""
    if _all_xor(chunks):
        return _encode_xor(chunks)
    return _encode_mixed(chunks)


def _all_xor(chunks: Sequence[Sequence[Aggregate | None]]) -> TypeGuard[Sequence[Sequence[Series | None]]]:
    return not any(isinstance(sub, HistAggregate) for aggs in chunks for sub in aggs)


def _encode_xor(chunks: Sequence[Sequence[Series | None]]) -> tuple[NDArray[np.uint8], I64]:
    ts: list[I64] = []
    vs: list[U64] = []
    bounds = [0]
    for aggs in chunks:
        for sub in aggs:
            if sub is not None:
                ts.append(sub[0])
                vs.append(sub[1])
            bounds.append(bounds[-1] + (0 if sub is None else int(sub[0].shape[0])))
    t = np.concatenate(ts) if ts else np.zeros(0, np.int64)
    v = np.concatenate(vs) if vs else np.zeros(0, np.uint64)
    b = np.array(bounds, dtype=np.int64)
    sub_buf, sub_off = xor.encode_batch(t, v, b)
    return kernels.assemble_aggr_chunks(sub_buf, sub_off, np.diff(b) > 0)


def _encode_mixed(chunks: Sequence[Sequence[Aggregate | None]]) -> tuple[NDArray[np.uint8], I64]:
    payloads = [build_aggr([_sub_entry(sub) for sub in aggs]) for aggs in chunks]
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in payloads])]).astype(np.int64)
    return np.frombuffer(b"".join(payloads), dtype=np.uint8), offsets


def _sub_entry(sub: Aggregate | None) -> tuple[int, bytes] | None:
    if sub is None or aggregate_times(sub).shape[0] == 0:
        return None
    if isinstance(sub, HistAggregate):
        return sub.encoding, sub.data
    return kernels.ENC_XOR, xor.encode(sub[0], sub[1])


def window_range(aggs: Sequence[Aggregate | None]) -> tuple[int, int] | None:
    """(mint, maxt) of an AggrChunk: its first and last window (the counter's extra samples do not count)."""
    for a in (Aggr.COUNT, Aggr.SUM, Aggr.MIN, Aggr.MAX):
        sub = aggs[a]
        if sub is not None and (t := aggregate_times(sub)).shape[0]:
            return int(t[0]), int(t[-1])
    return None


def filter_aggr(aggs: Sequence[Aggregate | None], intervals: Intervals) -> list[Aggregate | None]:
    """The aggregates without the samples inside ``intervals``; aggregates left empty become absent."""
    out: list[Aggregate | None] = []
    for sub in aggs:
        if sub is None:
            out.append(None)
            continue
        keep = ~deleted_mask(aggregate_times(sub), intervals)
        if not keep.any():
            out.append(None)
        elif isinstance(sub, HistAggregate):
            out.append(sub if keep.all() else _kept_hist(sub, keep))
        else:
            out.append((sub[0][keep], sub[1][keep]))
    return out


def merge_aggr_series(inputs: Sequence[Sequence[bytes]], *, block: str | None = None,
                      ) -> list[list[Aggregate | None]]:
    """Several series' AggrChunks (each in time order) as one series, cut every 120 count windows.

    Counters are first made monotone per input (§7.6) and chained like the other aggregates; each output
    counter sub-chunk ends with its last value repeated, the marker readers expect. Native-histogram AggrChunks
    are refused: one output sub-chunk would need the histograms of several inputs in one bucket layout.
    """
    per_agg: list[list[Series]] = [[] for _ in range(NUM_AGGRS)]
    for chunks in inputs:
        decoded = [decode_aggr(c, block=block) for c in chunks]
        for a in range(NUM_AGGRS):
            parts = [_float_aggregate(sub, block) for d in decoded if (sub := d[a]) is not None]
            if not parts:
                continue
            t = np.concatenate([p[0] for p in parts])
            v = np.concatenate([p[1] for p in parts])
            if a == Aggr.COUNTER:
                t, fv = counter_reset_series(t, v)
                v = fv.view(np.uint64)
            per_agg[a].append((t, v))
    merged = [chain_samples(parts) if parts else None for parts in per_agg]
    return _cut(merged)


def _float_aggregate(sub: Aggregate, block: str | None) -> Series:
    if isinstance(sub, HistAggregate):
        where = f"block {block}: " if block else ""
        raise UnsupportedError(f"{where}cannot merge overlapping downsampled native-histogram series (their "
                               "histogram sums and counters would have to be re-aggregated)")
    return sub


def _cut(merged: Sequence[Series | None]) -> list[list[Aggregate | None]]:
    count = merged[Aggr.COUNT]
    if count is None or count[0].shape[0] == 0:
        return []
    windows = count[0]
    ends = windows[MERGED_WINDOWS_PER_CHUNK - 1 :: MERGED_WINDOWS_PER_CHUNK].tolist()
    if not ends or ends[-1] != int(windows[-1]):
        ends.append(int(windows[-1]))
    ends[-1] = 2**63 - 1  # anything after the last count window stays in the last chunk
    chunks: list[list[Aggregate | None]] = []
    lo = -(2**63)
    for hi in ends:
        aggs: list[Aggregate | None] = []
        for a, sub in enumerate(merged):
            if sub is None:
                aggs.append(None)
                continue
            i = int(np.searchsorted(sub[0], lo, side="right")) if lo > -(2**63) else 0
            j = int(np.searchsorted(sub[0], hi, side="right"))
            part: Series | None = (sub[0][i:j], sub[1][i:j]) if j > i else None
            if part is not None and a == Aggr.COUNTER:
                part = (np.append(part[0], part[0][-1]), np.append(part[1], part[1][-1]))
            aggs.append(part)
        chunks.append(aggs)
        lo = hi
    return chunks
