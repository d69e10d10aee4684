"""Replica deduplication at query time: the penalty algorithm of FORMATS.md §8.6, and the querier
wrapper every query path deduplicates through.

Two replicas are merged by one kernel call; more replicas are folded pairwise
(``dedup(dedup(r0, r1), r2) …``). Values stay raw float64 bits except where the counter
adjustment adds an offset.

Native-histogram samples are picked by timestamp like floats (as Thanos' dedup iterator does) and keep their
histogram part; the counter adjustment applies only at a switch from a float sample to a float sample, and
only replicas of floats alone are read through the counter iterator.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from thanostools.core import labels as labelset
from thanostools.core.chunkenc.aggr import counter_reset_series
from thanostools.core.kernels._jit import njit
from thanostools.core.kernels.dtypes import I64, U64, Bool
from thanostools.core.labels import Labels
from thanostools.core.matchers import Matcher
from thanostools.core.series import (
    DEFAULT_BATCH_SAMPLES,
    KIND_FLOAT,
    HistogramColumns,
    LabelResult,
    Querier,
    SampleBatch,
    SampleRun,
    SelectHints,
    SeriesStream,
)

INITIAL_PENALTY_MS = 5000
# Functions whose replicas get the counter adjustment (never decrease at a replica switch).
COUNTER_FUNCS = frozenset({"rate", "increase", "irate", "resets"})


@njit
def penalty_kernel(
    ta: NDArray[np.int64], va: NDArray[np.float64], fa: NDArray[np.bool_], tb: NDArray[np.int64],
    vb: NDArray[np.float64], fb: NDArray[np.bool_], counter: bool,
) -> tuple[NDArray[np.int8], NDArray[np.int64], NDArray[np.float64]]:
    """Merge replica A and B -> for each output sample: source (0 = A, 1 = B), index in it, additive offset.

    ``fa``/``fb`` say which samples are floats: only those are adjusted, and only after a float sample."""
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
    last_float = False
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
        switched = counter and m > 0 and use_a != prev_use_a and last_float
        if use_a:
            pen_a = 0
            if switched and fa[i] and last_v > va[i] + adj_a:
                adj_a += last_v - (va[i] + adj_a)
            last_t = ta[i]
            last_float = fa[i]
            last_v = va[i] + adj_a
            src[m] = 0
            idx[m] = i
            adj[m] = adj_a if fa[i] else 0.0
        else:
            pen_b = 0
            if switched and fb[j] and last_v > vb[j] + adj_b:
                adj_b += last_v - (vb[j] + adj_b)
            last_t = tb[j]
            last_float = fb[j]
            last_v = vb[j] + adj_b
            src[m] = 1
            idx[m] = j
            adj[m] = adj_b if fb[j] else 0.0
        m += 1
    return src[:m].copy(), idx[:m].copy(), adj[:m].copy()


def _float_view(v: NDArray[np.uint64]) -> NDArray[np.float64]:
    return np.ascontiguousarray(v).view(np.float64)


@dataclass(frozen=True)
class _Replica:
    """One replica's samples; ``origin``: each sample's row among all replicas of its series, back to back."""

    t: I64
    v: U64
    is_float: Bool
    origin: I64

    @staticmethod
    def of(t: NDArray[np.int64], v: NDArray[np.uint64], is_float: Bool | None = None, base: int = 0) -> _Replica:
        n = t.shape[0]
        return _Replica(np.ascontiguousarray(t, dtype=np.int64), np.ascontiguousarray(v, dtype=np.uint64),
                        np.ones(n, np.bool_) if is_float is None else np.ascontiguousarray(is_float, np.bool_),
                        np.arange(base, base + n, dtype=np.int64))


def _merge_pair(a: _Replica, b: _Replica, counter: bool) -> _Replica:
    src, idx, adj = penalty_kernel(a.t, _float_view(a.v), a.is_float, b.t, _float_view(b.v), b.is_float, counter)
    rows = np.where(src == 0, idx, idx + a.t.shape[0])
    v = np.concatenate([a.v, b.v])[rows]
    shifted = np.flatnonzero(adj != 0)
    if shifted.size:
        # only adjusted samples go through float arithmetic, so StaleNaN bits elsewhere survive
        v[shifted] = (v[shifted].view(np.float64) + adj[shifted]).view(np.uint64)
    return _Replica(np.concatenate([a.t, b.t])[rows], v, np.concatenate([a.is_float, b.is_float])[rows],
                    np.concatenate([a.origin, b.origin])[rows])


def dedup_pair(
    a: tuple[NDArray[np.int64], NDArray[np.uint64]], b: tuple[NDArray[np.int64], NDArray[np.uint64]], *,
    counter: bool = False,
) -> tuple[NDArray[np.int64], NDArray[np.uint64]]:
    """Penalty-merge two replicas given as (timestamps, value bits)."""
    merged = _merge_pair(_Replica.of(*a), _Replica.of(*b), counter)
    return merged.t, merged.v


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


def dedup_runs(lab: Labels, replicas: Sequence[SampleRun], *, counter: bool = False) -> SampleRun:
    """``dedup_replicas`` for replicas that may hold native histograms: the merged series, labelled ``lab``, with
    the histogram part of the samples it took. Under ``counter`` only float-only replicas are made monotone."""
    if all(r[3] is None for r in replicas):
        t, v = dedup_replicas([(r[1], r[2]) for r in replicas], counter=counter)
        return lab, t, v, None
    runs = [r if r[3] is not None or not counter else (r[0], *monotone_counter((r[1], r[2])), None)
            for r in replicas]
    starts = np.cumsum([0] + [r[1].shape[0] for r in runs]).tolist()
    merged = _Replica.of(runs[0][1], runs[0][2], _floats_of(runs[0]))
    for run, base in zip(runs[1:], starts[1:], strict=False):
        merged = _merge_pair(merged, _Replica.of(run[1], run[2], _floats_of(run), base), counter)
    hist = HistogramColumns.concat([(r[3], int(r[1].shape[0])) for r in runs])
    return lab, merged.t, merged.v, hist.take(merged.origin)


def _floats_of(run: SampleRun) -> Bool | None:
    return None if run[3] is None else run[3].kind == KIND_FLOAT


def deduplicate(series: Iterable[SampleRun], replica_labels: Sequence[str], *, counter: bool) -> list[SampleRun]:
    """Merge replicas (series equal after dropping ``replica_labels``), label-sorted, replica labels dropped.

    Replicas are folded in the order of their full label sets."""
    groups: dict[Labels, list[SampleRun]] = defaultdict(list)
    for s in series:
        groups[labelset.without(s[0], replica_labels)].append(s)
    out: list[SampleRun] = []
    for lab, replicas in groups.items():
        replicas.sort(key=lambda s: s[0])
        out.append(dedup_runs(lab, replicas, counter=counter))
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
        merged = deduplicate((s for b in stream for s in b.runs()), self.replica_labels, counter=counter)
        return SeriesStream.whole(SampleBatch.of_runs(merged), stream.warnings, batch_samples=batch_samples)

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
