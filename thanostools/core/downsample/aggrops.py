"""Editing AggrChunks outside of downsampling (block rewrites): removing time intervals and merging series.

Both decode the five aggregates with the XOR codec and re-encode them in the layout Thanos writes. A deleted
interval removes every sample inside it from every aggregate; merged series are chained aggregate by aggregate
(on equal timestamps the first series wins), the same rule raw samples follow.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from thanostools.core.chunkenc import xor
from thanostools.core.chunkenc.aggr import NUM_AGGRS, Aggr, counter_reset_series, split_aggr
from thanostools.core.downsample import kernels
from thanostools.core.errors import UnsupportedError
from thanostools.core.kernels.dtypes import I64, U64
from thanostools.core.storage import chain_samples
from thanostools.core.tsdb.tombstones import Intervals, deleted_mask

Series = tuple[I64, U64]
MERGED_WINDOWS_PER_CHUNK = 120


def decode_aggr(payload: bytes) -> list[Series | None]:
    """The five aggregates of one AggrChunk payload; None for absent ones."""
    out: list[Series | None] = []
    for i, sub in enumerate(split_aggr(payload)):
        if sub is None:
            out.append(None)
            continue
        if sub[0] != kernels.ENC_XOR:
            raise UnsupportedError(f"AggrChunk aggregate {Aggr(i).name.lower()} has encoding {sub[0]}; "
                                   "native histogram aggregates are not supported")
        out.append(xor.decode(sub[1]))
    return out


def encode_aggr(chunks: Sequence[Sequence[Series | None]]) -> tuple[NDArray[np.uint8], I64]:
    """AggrChunk payloads from per-chunk aggregates (absent or empty → absent): (buf, offsets)."""
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


def window_range(aggs: Sequence[Series | None]) -> tuple[int, int] | None:
    """(mint, maxt) of an AggrChunk: its first and last window (the counter's extra samples do not count)."""
    for a in (Aggr.COUNT, Aggr.SUM, Aggr.MIN, Aggr.MAX):
        sub = aggs[a]
        if sub is not None and sub[0].shape[0]:
            return int(sub[0][0]), int(sub[0][-1])
    return None


def filter_aggr(aggs: Sequence[Series | None], intervals: Intervals) -> list[Series | None]:
    """The aggregates without the samples inside ``intervals``; aggregates left empty become absent."""
    out: list[Series | None] = []
    for sub in aggs:
        if sub is None:
            out.append(None)
            continue
        keep = ~deleted_mask(sub[0], intervals)
        out.append((sub[0][keep], sub[1][keep]) if keep.any() else None)
    return out


def merge_aggr_series(inputs: Sequence[Sequence[bytes]]) -> list[list[Series | None]]:
    """Several series' AggrChunks (each in time order) as one series, cut every 120 count windows.

    Counters are first made monotone per input (§7.6) and chained like the other aggregates; each output
    counter sub-chunk ends with its last value repeated, the marker readers expect.
    """
    per_agg: list[list[Series]] = [[] for _ in range(NUM_AGGRS)]
    for chunks in inputs:
        decoded = [decode_aggr(c) for c in chunks]
        for a in range(NUM_AGGRS):
            parts = [sub for d in decoded if (sub := d[a]) is not None]
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


def _cut(merged: Sequence[Series | None]) -> list[list[Series | None]]:
    count = merged[Aggr.COUNT]
    if count is None or count[0].shape[0] == 0:
        return []
    windows = count[0]
    ends = windows[MERGED_WINDOWS_PER_CHUNK - 1 :: MERGED_WINDOWS_PER_CHUNK].tolist()
    if not ends or ends[-1] != int(windows[-1]):
        ends.append(int(windows[-1]))
    ends[-1] = 2**63 - 1  # anything after the last count window stays in the last chunk
    chunks: list[list[Series | None]] = []
    lo = -(2**63)
    for hi in ends:
        aggs: list[Series | None] = []
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
