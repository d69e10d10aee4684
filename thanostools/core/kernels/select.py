"""Kernels of the query read path: decoding chunks in place, gathering per-series sample runs."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from thanostools.core.kernels._jit import njit
from thanostools.core.kernels.dtypes import I64, U8, U64
from thanostools.core.kernels.stale import STALE_NAN_BITS_U64 as STALE_NAN_BITS
from thanostools.core.kernels.xor import OK, PAD, decode_chunk


@njit
def copy_runs(src_t: I64, src_v: U64, src_start: I64, dst_start: I64,
              counts: I64, dst_t: I64, dst_v: U64) -> None:
    """``dst[dst_start[i]:+counts[i]] = src[src_start[i]:+counts[i]]`` for every run i."""
    for i in range(counts.shape[0]):
        a = src_start[i]
        b = dst_start[i]
        for j in range(counts[i]):
            dst_t[b + j] = src_t[a + j]
            dst_v[b + j] = src_v[a + j]


@njit
def unsorted_series(t: I64, offsets: I64) -> NDArray[np.bool_]:
    """Per series: whether its timestamps are not strictly increasing."""
    n = offsets.shape[0] - 1
    out = np.zeros(n, np.bool_)
    for i in range(n):
        for j in range(offsets[i] + 1, offsets[i + 1]):
            if t[j] <= t[j - 1]:
                out[i] = True
                break
    return out


@njit
def chunk_sample_counts(buf: U8, starts: I64, ends: I64) -> tuple[I64, int]:
    """Samples per XOR chunk from its be16 header; -1 or the index of a chunk shorter than the header."""
    n = starts.shape[0]
    out = np.empty(n, np.int64)
    for i in range(n):
        s = starts[i]
        if ends[i] - s < 2:
            return out, i
        out[i] = (np.int64(buf[s]) << 8) | np.int64(buf[s + 1])
    return out, -1


@njit
def decode_chunks_at(buf: U8, starts: I64, ends: I64, dst: I64,
                     t_out: U64, v_out: U64) -> tuple[int, int]:
    """Decode XOR chunk i (``buf[starts[i]:ends[i]]``) into ``t_out/v_out`` from ``dst[i]`` on
    (``t_out``: the timestamps' uint64 bits, as ``decode_chunk`` writes them).

    Returns (index of the first bad chunk or -1, status).
    """
    nbuf = buf.shape[0]
    for i in range(starts.shape[0]):
        s = starts[i]
        e = ends[i]
        if e + PAD <= nbuf:
            st = decode_chunk(buf, s, e, t_out, v_out, dst[i])
        else:
            padded = np.zeros(e - s + PAD, dtype=np.uint8)
            padded[: e - s] = buf[s:e]
            st = decode_chunk(padded, 0, e - s, t_out, v_out, dst[i])
        if st != OK:
            return i, st
    return -1, OK


@njit
def clip_chunks(t: I64, v: U64, bounds: I64, series: I64, nseries: int, mint: int,
                maxt: int) -> tuple[I64, NDArray[np.bool_], int]:
    """Keep only samples with ``mint <= t <= maxt``, compacting ``t/v`` in place.

    Chunk i owns ``t[bounds[i]:bounds[i+1]]`` and belongs to series ``series[i]`` (non-decreasing).
    Returns the samples kept per chunk, per series whether its kept timestamps fail to increase strictly,
    and how many kept values are StaleNaN markers.
    """
    k = bounds.shape[0] - 1
    kept = np.zeros(k, np.int64)
    unsorted = np.zeros(nseries, np.bool_)
    stale = 0
    w = 0
    prev_series = -1
    prev_t = 0
    for i in range(k):
        s = series[i]
        for j in range(bounds[i], bounds[i + 1]):
            tj = t[j]
            if mint <= tj <= maxt:
                if s == prev_series and tj <= prev_t:
                    unsorted[s] = True
                prev_series = s
                prev_t = tj
                vj = v[j]
                if vj == STALE_NAN_BITS:
                    stale += 1
                t[w] = tj
                v[w] = vj
                w += 1
                kept[i] += 1
    return kept, unsorted, stale
