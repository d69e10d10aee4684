"""Replica deduplication at query time: the penalty algorithm of FORMATS.md §8.6, and the querier
wrapper every query path deduplicates through.

Two replicas are merged by one kernel call; more replicas are folded pairwise
(``dedup(dedup(r0, r1), r2) …``). Values stay raw float64 bits except where the counter
adjustment adds an offset.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np
from numpy.typing import NDArray

from thanostools.core import labels as labelset
from thanostools.core.chunkenc.aggr import counter_reset_series
from thanostools.core.kernels._jit import njit
from thanostools.core.labels import Labels
from thanostools.core.matchers import Matcher
from thanostools.core.series import (
    DEFAULT_BATCH_SAMPLES,
    LabelResult,
    Querier,
    SampleBatch,
    SelectHints,
    SeriesStream,
    SeriesTuple,
)

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


def monotone_counter(replica: tuple[NDArray[np.int64], NDArray[np.uint64]],
                     ) -> tuple[NDArray[np.int64], NDArray[np.uint64]]:
    """A counter replica as Thanos' querier reads it for counter functions: through the §7.6 iterator,
    so NaNs (stale markers too) are gone and resets are folded into a monotone total."""
    t, v = counter_reset_series(replica[0], _float_view(replica[1]))
    return t, v.view(np.uint64)


def dedup_replicas(
    replicas: Sequence[tuple[NDArray[np.int64], NDArray[np.uint64]]], *, counter: bool = False
) -> tuple[NDArray[np.int64], NDArray[np.uint64]]:
    """Fold any number of replicas pairwise, in the given order.

    With ``counter``, two or more replicas are first made monotone (``monotone_counter``): a replica
    switch right after a stale marker is then adjusted against the last real value, as in Thanos."""
    if not replicas:
        return np.zeros(0, np.int64), np.zeros(0, np.uint64)
    if counter and len(replicas) > 1:
        replicas = [monotone_counter(r) for r in replicas]
    merged = replicas[0]
    for other in replicas[1:]:
        merged = dedup_pair(merged, other, counter=counter)
    return merged


def deduplicate(series: Iterable[SeriesTuple], replica_labels: Sequence[str], *, counter: bool,
                ) -> list[SeriesTuple]:
    """Merge replicas (series equal after dropping ``replica_labels``), label-sorted, replica labels dropped.

    Replicas are folded in the order of their full label sets."""
    groups: dict[Labels, list[SeriesTuple]] = defaultdict(list)
    for s in series:
        groups[labelset.without(s[0], replica_labels)].append(s)
    out: list[SeriesTuple] = []
    for lab, replicas in groups.items():
        replicas.sort(key=lambda s: s[0])
        t, v = dedup_replicas([(s[1], s[2]) for s in replicas], counter=counter)
        out.append((lab, t, v))
    out.sort(key=lambda s: s[0])
    return out


class DedupQuerier(Querier):
    """Replicas of ``inner``'s series merged into one (FORMATS.md §8.6): the one place queries deduplicate.

    Replicas are not adjacent in label order, so a selection is read whole, merged, and handed on as
    batches; the label APIs hide the replica labels.
    """

    def __init__(self, inner: Querier, replica_labels: Sequence[str]) -> None:
        if not replica_labels:
            raise ValueError("deduplication needs at least one replica label")
        self.inner = inner
        self.replica_labels = tuple(replica_labels)

    def select(self, matchers: Sequence[Matcher], mint: int, maxt: int, hints: SelectHints | None = None, *,
               batch_samples: int = DEFAULT_BATCH_SAMPLES) -> SeriesStream:
        stream = self.inner.select(matchers, mint, maxt, hints, batch_samples=batch_samples)
        counter = hints is not None and hints.func in COUNTER_FUNCS
        merged = deduplicate((s for b in stream for s in b.each()), self.replica_labels, counter=counter)
        return SeriesStream.whole(SampleBatch.of(merged), stream.warnings, batch_samples=batch_samples)

    def label_names(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> LabelResult:
        res = self.inner.label_names(matchers, mint, maxt)
        return LabelResult([n for n in res.values if n not in self.replica_labels], res.warnings)

    def label_values(self, name: str, matchers: Sequence[Matcher], mint: int, maxt: int) -> LabelResult:
        if name in self.replica_labels:
            return LabelResult([])
        return self.inner.label_values(name, matchers, mint, maxt)


def deduplicated(querier: Querier, replica_labels: Sequence[str], dedup: bool) -> Querier:
    """``querier`` with its replicas merged when asked to and there are replica labels to merge on."""
    return DedupQuerier(querier, replica_labels) if dedup and replica_labels else querier
