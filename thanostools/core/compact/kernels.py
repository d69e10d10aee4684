"""Batch kernels of the block merge: one call per merge round, never one per chunk or sample."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from thanostools.core.dedup import penalty_kernel
from thanostools.core.kernels._jit import njit
from thanostools.core.kernels.dtypes import I64, U8


@njit
def spans_equal(buf: U8, a_starts: I64, a_ends: I64, b_starts: I64, b_ends: I64) -> NDArray[np.bool_]:
    """Whether span a[i] holds the same bytes as span b[i], for every i."""
    n = a_starts.shape[0]
    out = np.zeros(n, dtype=np.bool_)
    for i in range(n):
        length = a_ends[i] - a_starts[i]
        if length != b_ends[i] - b_starts[i]:
            continue
        same = True
        for j in range(length):
            if buf[a_starts[i] + j] != buf[b_starts[i] + j]:
                same = False
                break
        out[i] = same
    return out


@njit
def overlap_clusters(series: I64, mint: I64, maxt: I64) -> I64:
    """Cluster id per chunk (chunks sorted by series, then mint): a chunk starting at or before the
    greatest maxt seen so far in its series joins that cluster (Prometheus' overlap rule)."""
    n = series.shape[0]
    out = np.empty(n, dtype=np.int64)
    cluster = -1
    reach = 0
    prev = -1
    for i in range(n):
        if i == 0 or series[i] != prev or mint[i] > reach:
            cluster += 1
            reach = maxt[i]
            prev = series[i]
        elif maxt[i] > reach:
            reach = maxt[i]
        out[i] = cluster
    return out


@njit
def penalty_clusters(t: I64, run_offsets: I64, cluster_runs: I64) -> I64:
    """Penalty deduplication (FORMATS.md §8.6, no counter adjustment) of every cluster.

    Run r is one replica's samples ``t[run_offsets[r]:run_offsets[r+1]]`` (sorted, no duplicates);
    cluster c is runs ``cluster_runs[c]:cluster_runs[c+1]``, folded pairwise in order. Returns the chosen
    sample indices, cluster after cluster, each cluster's in time order.
    """
    out = np.empty(t.shape[0], dtype=np.int64)
    zeros = np.zeros(t.shape[0], dtype=np.float64)
    floats = np.ones(t.shape[0], dtype=np.bool_)
    m = 0
    for c in range(cluster_runs.shape[0] - 1):
        first = cluster_runs[c]
        cur = np.arange(run_offsets[first], run_offsets[first + 1])
        for r in range(first + 1, cluster_runs[c + 1]):
            other = np.arange(run_offsets[r], run_offsets[r + 1])
            src, idx, _adj = penalty_kernel(t[cur], zeros[: cur.shape[0]], floats[: cur.shape[0]], t[other],
                                           zeros[: other.shape[0]], floats[: other.shape[0]], False)
            merged = np.empty(src.shape[0], dtype=np.int64)
            for q in range(src.shape[0]):
                merged[q] = cur[idx[q]] if src[q] == 0 else other[idx[q]]
            cur = merged
        out[m : m + cur.shape[0]] = cur
        m += cur.shape[0]
    return out[:m].copy()

