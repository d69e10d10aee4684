"""Kernels over label sets written as symbol ranks (see ``tsdb.labelkeys``).

A label set is the sequence name₀, value₀, name₁, value₁, … of symbol ranks in one sorted symbol table, so
comparing these sequences (a shorter prefix first) orders label sets exactly as comparing their strings.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from thanostools.core.kernels._jit import njit
from thanostools.core.kernels.dtypes import I64


@njit
def compare_keys(a: I64, a0: int, a1: int, b: I64, b0: int, b1: int) -> int:
    """-1, 0 or 1 as the key ``a[a0:a1]`` sorts before, equal to or after ``b[b0:b1]``."""
    n = min(a1 - a0, b1 - b0)
    for i in range(n):
        x = a[a0 + i]
        y = b[b0 + i]
        if x != y:
            return -1 if x < y else 1
    if a1 - a0 == b1 - b0:
        return 0
    return -1 if a1 - a0 < b1 - b0 else 1


@njit
def count_not_after(keys: I64, offsets: I64, lo: int, frontier: I64) -> int:
    """In sorted keys ``lo:``, the position of the first key after ``frontier`` (bisect right)."""
    hi = offsets.shape[0] - 1
    f1 = frontier.shape[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if compare_keys(keys, offsets[mid], offsets[mid + 1], frontier, 0, f1) <= 0:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit
def merge_sorted_keys(keys: I64, offsets: I64, part_bounds: I64) -> tuple[I64, I64]:
    """K-way merge of sorted runs of keys: run p is keys ``part_bounds[p]:part_bounds[p+1]`` (by key index).

    Returns (output id of every key, first key index of every output id); equal keys share an id.
    """
    k = part_bounds.shape[0] - 1
    n = part_bounds[k]
    ids = np.empty(n, np.int64)
    firsts = np.empty(n, np.int64)
    heads = part_bounds[:-1].copy()
    out = 0
    while True:
        best = -1
        for p in range(k):
            if heads[p] < part_bounds[p + 1] and (best < 0 or compare_keys(
                    keys, offsets[heads[p]], offsets[heads[p] + 1], keys, offsets[heads[best]],
                    offsets[heads[best] + 1]) < 0):
                best = p
        if best < 0:
            break
        first = heads[best]
        for p in range(k):
            h = heads[p]
            if h < part_bounds[p + 1] and compare_keys(keys, offsets[h], offsets[h + 1], keys, offsets[first],
                                                       offsets[first + 1]) == 0:
                ids[h] = out
                heads[p] = h + 1
        firsts[out] = first
        out += 1
    return ids, firsts[:out].copy()


@njit
def not_after_previous(keys: I64, offsets: I64) -> NDArray[np.bool_]:
    """For every key but the first, whether it does not sort strictly after the one before it."""
    n = offsets.shape[0] - 1
    out = np.zeros(n, np.bool_)
    for i in range(1, n):
        out[i] = compare_keys(keys, offsets[i - 1], offsets[i], keys, offsets[i], offsets[i + 1]) >= 0
    return out
