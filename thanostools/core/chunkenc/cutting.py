"""Where Prometheus cuts a float series into chunks, FORMATS.md §3.6."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from thanostools.core.kernels._jit import njit

DEFAULT_SAMPLES_PER_CHUNK = 120


@njit
def go_div(a: int, b: int) -> int:
    """Integer division truncating toward zero (Go), not flooring (Python)."""
    q = abs(a) // abs(b)
    return -q if (a < 0) != (b < 0) else q


@njit
def range_end(t: int, chunk_range: int) -> int:
    """End of the chunk_range-aligned range holding t (Prometheus rangeForTimestamp)."""
    return go_div(t, chunk_range) * chunk_range + chunk_range


@njit
def predicted_end(start: int, cur: int, next_at: int) -> int:
    """Re-predicted chunk end once a quarter of the target is in (Prometheus computeChunkEndTime)."""
    n = float(next_at - start) / (float(cur - start + 1) * 4.0)
    if n <= 1.0:
        return next_at
    return np.int64(float(start) + float(next_at - start) / math.floor(n))  # type: ignore[return-value]


@njit
def head_cut_kernel(t: NDArray[np.int64], chunk_range: int, samples_per_chunk: int) -> NDArray[np.int64]:
    n = t.shape[0]
    bounds = np.empty(n + 1, dtype=np.int64)
    bounds[0] = 0
    nb = 1
    if n == 0:
        return bounds[:1].copy()
    first = 0
    mint = t[0]
    next_at = range_end(mint, chunk_range)
    quarter = samples_per_chunk // 4
    for i in range(1, n):
        held = i - first
        if held == quarter:
            next_at = predicted_end(mint, t[i - 1], next_at)
        if t[i] >= next_at or held >= 2 * samples_per_chunk:
            bounds[nb] = i
            nb += 1
            first = i
            mint = t[i]
            next_at = range_end(mint, chunk_range)
    bounds[nb] = n
    return bounds[: nb + 1].copy()


def head_cut_bounds(
    t: NDArray[np.int64], chunk_range: int, samples_per_chunk: int = DEFAULT_SAMPLES_PER_CHUNK
) -> NDArray[np.int64]:
    """Chunk bounds [0, ..., len(t)] of a sorted series as the Prometheus 2.42 head cuts it.

    Every timestamp is treated as an appended sample: the head would reject a duplicate timestamp, so
    drop duplicates first if that matters. Prometheus 3.x's extra byte-size cut is not modelled.
    """
    ts = np.ascontiguousarray(t, dtype=np.int64)
    if chunk_range <= 0:
        raise ValueError(f"chunk_range must be positive, got {chunk_range}")
    if samples_per_chunk < 4:
        raise ValueError(f"samples_per_chunk must be at least 4, got {samples_per_chunk}")
    if ts.ndim != 1 or (ts[1:] < ts[:-1]).any():
        raise ValueError("timestamps must be a sorted 1-D array")
    return head_cut_kernel(ts, int(chunk_range), int(samples_per_chunk))


def fixed_size_bounds(n: int, size: int = DEFAULT_SAMPLES_PER_CHUNK) -> NDArray[np.int64]:
    """Bounds cutting n samples every `size` samples (how compaction re-encodes merged series)."""
    if size < 1 or n < 0:
        raise ValueError(f"need n >= 0 and size >= 1, got n={n}, size={size}")
    return np.append(np.arange(0, n, size, dtype=np.int64), np.int64(n))
