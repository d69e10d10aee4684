"""Batched selection: series flow from storage through selectors a batch at a time.

A selection is read as the querier's stream of consecutive label-ordered batches of whole series.
Selectors turn each batch into rows of their result and let the samples go, so raw samples are held
one batch at a time.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from thanostools.core.constants import STALE_NAN_BITS
from thanostools.core.kernels import promql as kern
from thanostools.core.labels import Labels
from thanostools.core.matchers import Matcher
from thanostools.core.promql.floathist import (
    HINT_GAUGE,
    HINT_NOT_RESET,
    HINT_RESET,
    HINT_UNKNOWN,
    FloatHistogram,
    from_batch,
)
from thanostools.core.promql.value import RangeVector, Vector
from thanostools.core.series import KIND_FLOAT, SampleBatch, SelectHints

if TYPE_CHECKING:
    from thanostools.core.promql.evaluator import Evaluator


class Selection:
    """One selector's series as batches; a batch counts towards the sample limit until the next is asked for.

    ``bound`` is an upper bound of the number of series (known before anything is decoded). Storage
    warnings go to the evaluator once each: those known at the start, and those that arrived while
    the batches were read.
    """

    def __init__(self, ev: Evaluator, matchers: list[Matcher], mint: int, maxt: int, hints: SelectHints) -> None:
        self.ev = ev
        size = ev.batch_samples
        began = time.perf_counter()
        stream = ev.querier.select(matchers, mint, maxt, hints, batch_samples=size)
        ev.stats.timings.query_preparation += time.perf_counter() - began
        self.bound = stream.series_bound
        self._batches, self._warnings = stream.batches, stream.warnings  # the list may grow while reading
        self._note_warnings()

    def _note_warnings(self) -> None:
        known = self.ev.storage_warnings
        known.extend(w for w in dict.fromkeys(self._warnings) if w not in known)

    def __iter__(self) -> Iterator[SampleBatch]:
        ev = self.ev
        series = 0
        for batch in self._batches:
            series += len(batch)
            limit = ev.options.max_series
            if limit and series > limit:
                series += sum(len(b) for b in self._batches)
                raise ev.too_many_series(series)
            held = int(batch.t.shape[0])
            ev.stats.series_loaded += len(batch)
            ev.stats.samples_loaded += held
            ev.account(held)
            ev.check_deadline()
            yield batch
            ev.current -= held
        self._note_warnings()


@dataclass
class RangeBatches:
    """A range-vector argument as consecutive batches of series, with an upper bound of their number."""

    bound: int
    batches: Iterator[RangeVector]


class RowSink:
    """A result vector built batch by batch into preallocated rows; rows without any sample are dropped.

    Rows are ``steps`` wide whether or not they hold samples, so room is reserved against the
    evaluator's sample limit before it is allocated: at first for up to ``bound`` rows (as many as
    fit), then growing as rows arrive.
    """

    def __init__(self, ev: Evaluator, bound: int, steps: int, with_ts: bool = False) -> None:
        self.ev = ev
        self.bound = bound
        self.steps = steps
        self.with_ts = with_ts
        self.values = np.zeros((0, steps))
        self.present = np.zeros((0, steps), np.bool_)
        self.sample_ts = np.zeros((0, steps), np.int64) if with_ts else None
        self.hist: np.ndarray | None = None  # object matrix, made when the first histogram arrives
        self.labels: list[Labels] = []
        self._drop: list[np.ndarray] = []
        self.n = 0
        self._dirty = 0  # rows below this may hold leftovers of dropped rows

    def rows(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Zeroed ``values``, ``present`` and sample-time matrices for the next ``k`` rows."""
        a, b = self.n, self.n + k
        if b > self.values.shape[0]:
            self._grow(b)
        if self._dirty > a:
            z = min(self._dirty, b)
            self.values[a:z] = 0.0
            self.present[a:z] = False
            if self.sample_ts is not None:
                self.sample_ts[a:z] = 0
            if self.hist is not None:
                self.hist[a:z] = None
        sts = self.sample_ts[a:b] if self.sample_ts is not None else np.zeros((0, 0), np.int64)
        return self.values[a:b], self.present[a:b], sts

    def hist_rows(self, k: int) -> np.ndarray:
        """The histogram cells of the next ``k`` rows (after :meth:`rows`), all None at first."""
        if self.hist is None:
            self.hist = np.full(self.values.shape, None, object)
        return self.hist[self.n : self.n + k]

    def commit(self, labels: list[Labels], drop_name: np.ndarray) -> int:
        """Keep those of the rows just filled that have a sample; returns the cells they hold (rows x steps)."""
        a, k = self.n, len(labels)
        keep = np.flatnonzero(self.present[a : a + k].any(axis=1))
        if keep.shape[0] < k:
            self._dirty = max(self._dirty, a + k)
            for m in (self.values, self.present, self.sample_ts, self.hist):
                if m is not None:
                    m[a : a + keep.shape[0]] = m[a + keep]
            labels = [labels[i] for i in keep.tolist()]
            drop_name = drop_name[keep]
        self.labels.extend(labels)
        self._drop.append(drop_name)
        self.n += keep.shape[0]
        return int(keep.shape[0]) * self.steps

    def _grow(self, need: int) -> None:
        wanted = self.bound if self.values.shape[0] == 0 else 2 * self.values.shape[0]
        cap = max(need, min(wanted, self.n + self.ev.affordable_rows(self._row_cost)))
        self.ev.reserve((cap - self.n) * self._row_cost)

        def grown(m: np.ndarray) -> np.ndarray:
            out = np.zeros((cap, self.steps), m.dtype) if m.dtype != object else np.full((cap, self.steps), None)
            out[: self.n] = m[: self.n]
            return out

        self.values, self.present = grown(self.values), grown(self.present)
        if self.sample_ts is not None:
            self.sample_ts = grown(self.sample_ts)
        if self.hist is not None:
            self.hist = grown(self.hist)
        self._dirty = min(self._dirty, self.n)

    @property
    def _row_cost(self) -> int:
        return self.steps * (2 if self.with_ts else 1)

    def vector(self) -> Vector:
        n = self.n
        drop = np.concatenate(self._drop) if self._drop else np.zeros(0, np.bool_)
        sts = None if self.sample_ts is None else self.sample_ts[:n]
        hist = None if self.hist is None else self.hist[:n]
        if 2 * n < self.values.shape[0]:  # do not pin a mostly unused allocation
            return Vector(self.labels, self.values[:n].copy(), self.present[:n].copy(), drop,
                          None if sts is None else sts.copy(), None if hist is None else hist.copy())
        return Vector(self.labels, self.values[:n], self.present[:n], drop, sts, hist)


def lookup_into(sink: RowSink, batch: SampleBatch, ref: np.ndarray, lookback: int, *, stats: bool = False) -> int:
    """Instant-selector rows of one batch (the newest sample within the lookback of every step) into ``sink``;
    returns the samples added. ``stats``: see :func:`histogram_cells`."""
    vals, pres, sts = sink.rows(len(batch))
    vbits = np.ascontiguousarray(batch.v, np.uint64)
    kern.instant_lookup(np.ascontiguousarray(batch.t, np.int64), vbits.view(np.float64), vbits,
                        np.ascontiguousarray(batch.offsets, np.int64), ref, lookback, sink.sample_ts is not None,
                        vals, pres, sts)
    cells = histogram_cells(batch, stats=stats)
    if cells is not None:
        _lookup_histograms(batch, cells, ref, lookback, pres, sink.hist_rows(len(batch)))
    return sink.commit(list(batch.labels), np.zeros(len(batch), np.bool_))


def histogram_cells(batch: SampleBatch, *, stats: bool = False) -> np.ndarray | None:
    """Per sample row of the batch: its :class:`FloatHistogram` (None for floats and stale markers); None when
    the batch holds no histogram.

    ``stats``: the selector is read only for counts and sums (under ``histogram_count``/``_sum``/``_avg``), where
    Prometheus reads through an iterator that detects counter resets as it goes: a histogram with an unknown hint
    gets "reset" or "not a reset" by comparison with the histogram read before it in the same series."""
    hist = batch.hist
    if hist is None:
        return None
    rows = np.flatnonzero((hist.kind != KIND_FLOAT) & (batch.v != np.uint64(STALE_NAN_BITS)))
    if rows.shape[0] == 0:
        return None
    cells = np.full(batch.t.shape[0], None, object)
    layouts: dict[bool, dict[int, Any]] = {False: {}, True: {}}  # per kind: the batch's layouts, made once
    for s in rows.tolist():
        part = hist.batch_of(s)
        cells[s] = from_batch(part, int(hist.row[s]), layouts[part.is_float])
    if stats:
        _detect_resets(cells, rows, batch.offsets)
    return cells


def _detect_resets(cells: np.ndarray, rows: np.ndarray, offsets: np.ndarray) -> None:
    series = np.searchsorted(offsets, rows, side="right") - 1
    prev: FloatHistogram | None = None
    prev_series = -1
    for s, i in zip(rows.tolist(), series.tolist(), strict=True):
        h = cells[s]
        if i != prev_series:
            prev, prev_series = None, i
        if h.hint == HINT_UNKNOWN and prev is not None:
            cells[s] = h.with_hint(HINT_RESET if h.detect_reset(prev) else HINT_NOT_RESET)
        prev = h


def _lookup_histograms(batch: SampleBatch, cells: np.ndarray, ref: np.ndarray, lookback: int, pres: np.ndarray,
                       out: np.ndarray) -> None:
    """The histogram cells of an instant lookup: where the sample chosen for a (series, step) is a histogram."""
    n, steps = len(batch), int(ref.shape[0])
    lo = np.zeros((n, steps), np.int64)
    hi = np.zeros((n, steps), np.int64)
    kern.window_bounds(np.ascontiguousarray(batch.t, np.int64), np.ascontiguousarray(batch.offsets, np.int64),
                       ref.astype(np.int64), lookback, lo, hi)
    chosen = np.maximum(hi - 1, 0)
    picked = cells[chosen] if cells.shape[0] else np.full((n, steps), None, object)
    none = np.full((n, steps), None, object)
    out[...] = np.where(pres & (hi > lo), picked, none)


def range_vector(labels: list[Labels], t: np.ndarray, v: np.ndarray, offsets: np.ndarray, ref: np.ndarray,
                 ts: np.ndarray, rng: int, drop_name: np.ndarray) -> RangeVector:
    n = len(labels)
    lo = np.zeros((n, ref.shape[0]), np.int64)
    hi = np.zeros((n, ref.shape[0]), np.int64)
    if n and ref.shape[0]:
        kern.window_bounds(t, offsets, ref.astype(np.int64), rng, lo, hi)
    return RangeVector(labels, t, v, offsets, lo, hi, ref, ts.astype(np.int64), rng, drop_name)


def batch_range_vector(batch: SampleBatch, ref: np.ndarray, ts: np.ndarray, rng: int, *,
                       stats: bool = False) -> RangeVector:
    """A batch's series as a range vector (stale markers dropped) with its windows at every step (``stats``: see
    :func:`histogram_cells`)."""
    t = np.ascontiguousarray(batch.t, np.int64)
    vbits = np.ascontiguousarray(batch.v, np.uint64)
    offsets = np.ascontiguousarray(batch.offsets, np.int64)
    cells = histogram_cells(batch, stats=stats)
    if cells is not None:
        keep = vbits != np.uint64(STALE_NAN_BITS)
        before = np.concatenate([[0], np.cumsum(keep)]).astype(np.int64)
        t, vbits, offsets, cells = t[keep], vbits[keep], before[offsets], cells[keep]
    elif not batch.stale_free:
        t, vbits, offsets = kern.drop_stale(t, vbits, offsets)
    rv = range_vector(list(batch.labels), t, vbits.view(np.float64), offsets, ref, ts, rng,
                      np.zeros(len(batch), np.bool_))
    rv.h = cells
    return rv


def split_rows(batch: SampleBatch, rows: int) -> Iterator[SampleBatch]:
    """Consecutive sub-batches of at most ``rows`` series (the batch's own type and flags kept)."""
    n = len(batch)
    if n <= rows:
        yield batch
        return
    for a in range(0, n, rows):
        b = min(a + rows, n)
        lo, hi = int(batch.offsets[a]), int(batch.offsets[b])
        hist = None if batch.hist is None else batch.hist.take(slice(lo, hi))
        yield replace(batch, labels=batch.labels[a:b], refs=batch.refs[a:b], offsets=batch.offsets[a : b + 1] - lo,
                      t=batch.t[lo:hi], v=batch.v[lo:hi], hist=hist)


def window_parts(ev: Evaluator, batches: Iterable[SampleBatch], ref: np.ndarray, ts: np.ndarray,
                 rng: int, *, stats: bool = False) -> Iterator[RangeVector]:
    """Batches of series as range vectors with windows at every step; each part's windows (one per
    series and step) are reserved against the sample limit before they are made (its samples are
    the selection's, counted there)."""
    steps = int(ts.shape[0])
    for batch in batches:
        for part in split_rows(batch, max(1, ev.batch_samples // max(1, steps))):
            ev.reserve(len(part) * steps)
            yield batch_range_vector(part, ref, ts, rng, stats=stats)


def row_batches(vec: Vector, batch_samples: int, windows: int) -> Iterator[np.ndarray]:
    """Row ranges of a vector holding about ``batch_samples`` present samples and ``windows`` per row each."""
    n = len(vec)
    if n == 0:
        return
    cum = np.cumsum(vec.present.sum(axis=1) + windows)
    start = 0
    while start < n:
        base = int(cum[start - 1]) if start else 0
        stop = min(max(int(np.searchsorted(cum, base + batch_samples, side="right")), start + 1), n)
        yield np.arange(start, stop)
        start = stop


def vector_range_vector(vec: Vector, inner_ts: np.ndarray, ref: np.ndarray, ts: np.ndarray,
                        rng: int) -> RangeVector:
    """A subquery's inner result (evaluated at ``inner_ts``) as a range vector over the outer steps."""
    mask = vec.present
    t = np.ascontiguousarray(np.broadcast_to(inner_ts, mask.shape)[mask])
    v = np.ascontiguousarray(vec.values[mask])
    offsets = np.concatenate([[0], np.cumsum(mask.sum(axis=1))]).astype(np.int64)
    rv = range_vector(vec.labels, t, v, offsets, ref, ts, rng, vec.drop_name)
    if vec.hist is not None:
        rv.h = _without_reset_hints(vec.hist[mask])
    return rv


def _without_reset_hints(cells: np.ndarray) -> np.ndarray:
    """A subquery's histograms with "reset"/"not a reset" hints made unknown: its samples are a step apart, not
    consecutive in storage, so those hints no longer hold (Prometheus does the same, prometheus/prometheus#15987)."""
    out = np.full(cells.shape[0], None, object)
    for j, h in enumerate(cells.tolist()):
        if h is not None:
            out[j] = h if h.hint in (HINT_UNKNOWN, HINT_GAUGE) else h.with_hint(HINT_UNKNOWN)
    return out
