"""Replica deduplication at query time: the penalty algorithm of FORMATS.md §8.6.

Two replicas are merged by one kernel call; more replicas are folded pairwise
(``dedup(dedup(r0, r1), r2) …``). Values stay raw float64 bits except where the counter
adjustment adds an offset.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from thanostools.core.kernels._jit import njit

INITIAL_PENALTY_MS = 5000
# Functions whose replicas get the counter adjustment (never decrease at a replica switch).
COUNTER_FUNCS = frozenset({"rate", "increase", "irate", "resets"})


@njit
def penalty_kernel(
    ta: NDArray[np.int64], va: NDArray[np.float64], tb: NDArray[np.int64], vb: NDArray[np.float64], counter: bool
) -> tuple[NDArray[np.int8], NDArray[np.int64], NDArray[np.float64]]:
    """Merge replica A and B -> for each output sample: source (0 = A, 1 = B), index in it, additive offset."""
    na = ta.shape[0]
    nb = tb.shape[0]
    src = np.empty(na + nb, dtype=np.int8)
    idx = np.empty(na + nb, dtype=np.int64)
    adj = np.zeros(na + nb, dtype=np.float64)
    i = 0
    j = 0
    m = 0
    last_t = 0
    pen_a = 0
    pen_b = 0
    adj_a = 0.0
    adj_b = 0.0
    last_v = 0.0
    use_a = False
    while True:
        if m > 0:
            while i < na and ta[i] < last_t + 1 + pen_a:
                i += 1
            while j < nb and tb[j] < last_t + 1 + pen_b:
                j += 1
        a_alive = i < na
        b_alive = j < nb
        if not a_alive and not b_alive:
            break
        prev_use_a = use_a
        if not a_alive:
            use_a = False
        elif not b_alive:
            use_a = True
        else:
            use_a = ta[i] <= tb[j]
            chosen = ta[i] if use_a else tb[j]
            other = 2 * (chosen - last_t) if m > 0 else INITIAL_PENALTY_MS
            if use_a:
                pen_b = other
            else:
                pen_a = other
        if use_a:
            pen_a = 0
            if counter and m > 0 and use_a != prev_use_a and last_v > va[i] + adj_a:
                adj_a += last_v - (va[i] + adj_a)
            last_t = ta[i]
            last_v = va[i] + adj_a
            src[m] = 0
            idx[m] = i
            adj[m] = adj_a
        else:
            pen_b = 0
            if counter and m > 0 and use_a != prev_use_a and last_v > vb[j] + adj_b:
                adj_b += last_v - (vb[j] + adj_b)
            last_t = tb[j]
            last_v = vb[j] + adj_b
            src[m] = 1
            idx[m] = j
            adj[m] = adj_b
        m += 1
    return src[:m].copy(), idx[:m].copy(), adj[:m].copy()


def _float_view(v: NDArray[np.uint64]) -> NDArray[np.float64]:
    return np.ascontiguousarray(v).view(np.float64)


def dedup_pair(
    a: tuple[NDArray[np.int64], NDArray[np.uint64]], b: tuple[NDArray[np.int64], NDArray[np.uint64]], *,
    counter: bool = False,
) -> tuple[NDArray[np.int64], NDArray[np.uint64]]:
    """Penalty-merge two replicas given as (timestamps, value bits)."""
    ta, va = np.ascontiguousarray(a[0], dtype=np.int64), np.ascontiguousarray(a[1], dtype=np.uint64)
    tb, vb = np.ascontiguousarray(b[0], dtype=np.int64), np.ascontiguousarray(b[1], dtype=np.uint64)
    src, idx, adj = penalty_kernel(ta, _float_view(va), tb, _float_view(vb), counter)
    from_a = src == 0
    from_b = ~from_a
    t = np.empty(src.shape[0], dtype=np.int64)
    v = np.empty(src.shape[0], dtype=np.uint64)
    t[from_a], v[from_a] = ta[idx[from_a]], va[idx[from_a]]
    t[from_b], v[from_b] = tb[idx[from_b]], vb[idx[from_b]]
    shifted = np.flatnonzero(adj != 0)
    if shifted.size:
        # only adjusted samples go through float arithmetic, so StaleNaN bits elsewhere survive
        v[shifted] = (v[shifted].view(np.float64) + adj[shifted]).view(np.uint64)
    return t, v


def dedup_replicas(
    replicas: Sequence[tuple[NDArray[np.int64], NDArray[np.uint64]]], *, counter: bool = False
) -> tuple[NDArray[np.int64], NDArray[np.uint64]]:
    """Fold any number of replicas pairwise, in the given order."""
    if not replicas:
        return np.zeros(0, np.int64), np.zeros(0, np.uint64)
    merged = replicas[0]
    for other in replicas[1:]:
        merged = dedup_pair(merged, other, counter=counter)
    return merged
