"""The currency between storage and everything above it: batches of series with their samples."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from thanostools.core.histograms import (
    HistogramBatch,
    concat_histogram_batches,
    empty_histogram_batch,
    take_samples,
)
from thanostools.core.labels import Labels
from thanostools.core.matchers import Matcher

# One series: its labels, timestamps and raw value bits.
SeriesTuple = tuple[Labels, NDArray[np.int64], NDArray[np.uint64]]
DEFAULT_BATCH_SAMPLES = 500_000  # samples per batch a selection is read in (Prometheus reads series by series)


KIND_FLOAT = 0
KIND_INT_HISTOGRAM = 1
KIND_FLOAT_HISTOGRAM = 2


@dataclass(frozen=True)
class HistogramColumns:
    """The histogram part of a :class:`SampleBatch`: which sample rows are histograms, and those histograms.

    Per sample row of the batch: ``kind`` (``KIND_FLOAT``, ``KIND_INT_HISTOGRAM``, ``KIND_FLOAT_HISTOGRAM``)
    and ``row``, the sample's index in ``ints`` (integer histograms) or ``floats`` (float histograms), -1 for a
    float sample. The two :class:`~thanostools.core.histograms.HistogramBatch` es keep the kinds apart (their
    arithmetic differs) and keep what decoding gave: layout table, counter-reset hints, chunk structure. They may
    hold more samples than rows point at (a time range or tombstones dropped some): selecting rows never copies
    histograms, and ``row`` is the only way in.
    """

    kind: NDArray[np.uint8]
    row: NDArray[np.int64]
    ints: HistogramBatch
    floats: HistogramBatch

    def take(self, idx: NDArray[np.int64] | slice) -> HistogramColumns:
        return HistogramColumns(self.kind[idx], self.row[idx], self.ints, self.floats)

    def compact(self) -> HistogramColumns:
        """The same rows over batches holding only the histograms they point at (before concatenating runs of
        different batches, so a small run does not carry its whole batch along)."""
        row = self.row.copy()
        batches = []
        for kind, batch in ((KIND_INT_HISTOGRAM, self.ints), (KIND_FLOAT_HISTOGRAM, self.floats)):
            mine = self.kind == kind
            row[mine] = np.arange(int(mine.sum()))
            batches.append(take_samples(batch, self.row[mine]))
        return HistogramColumns(self.kind, row, batches[0], batches[1])

    def batch_of(self, s: int) -> HistogramBatch:
        """The batch holding sample row s (a histogram row); its index there is ``row[s]``."""
        return self.floats if int(self.kind[s]) == KIND_FLOAT_HISTOGRAM else self.ints

    @staticmethod
    def concat(parts: Sequence[tuple[HistogramColumns | None, int]]) -> HistogramColumns:
        """The columns of consecutive sample runs (``None``: a run of n float samples)."""
        kinds: list[NDArray[np.uint8]] = []
        rows: list[NDArray[np.int64]] = []
        ints: dict[int, tuple[HistogramBatch, int]] = {}  # by identity: runs of one batch share its histograms
        floats: dict[int, tuple[HistogramBatch, int]] = {}
        for cols, n in parts:
            if cols is None:
                kinds.append(np.zeros(n, np.uint8))
                rows.append(np.full(n, -1, np.int64))
                continue
            int_base = _base_of(ints, cols.ints)
            float_base = _base_of(floats, cols.floats)
            row = cols.row.copy()
            row[cols.kind == KIND_INT_HISTOGRAM] += int_base
            row[cols.kind == KIND_FLOAT_HISTOGRAM] += float_base
            kinds.append(cols.kind)
            rows.append(row)
        return HistogramColumns(np.concatenate(kinds).astype(np.uint8), np.concatenate(rows).astype(np.int64),
                                concat_histogram_batches([b for b, _ in ints.values()], is_float=False),
                                concat_histogram_batches([b for b, _ in floats.values()], is_float=True))

    @staticmethod
    def of_floats(n: int) -> HistogramColumns:
        return HistogramColumns(np.zeros(n, np.uint8), np.full(n, -1, np.int64),
                                empty_histogram_batch(is_float=False), empty_histogram_batch(is_float=True))


def _base_of(seen: dict[int, tuple[HistogramBatch, int]], batch: HistogramBatch) -> int:
    """Where ``batch``'s samples start in the concatenation of the distinct batches ``seen`` so far."""
    if id(batch) not in seen:
        seen[id(batch)] = (batch, sum(len(b) for b, _ in seen.values()))
    return seen[id(batch)][1]


# One series' samples with their histogram part (None: all floats).
SampleRun = tuple[Labels, NDArray[np.int64], NDArray[np.uint64], HistogramColumns | None]


@dataclass(frozen=True)
class SampleBatch:
    """Samples of several series: series i owns ``t/v[offsets[i]:offsets[i+1]]``.

    ``v`` holds raw float64 bits as uint64 (StaleNaN and NaN payloads exact); ``v.view(np.float64)``
    gives the values. ``refs`` are storage-specific series ids (-1 when not meaningful). ``stale_free``
    says the batch holds no StaleNaN marker (False: unknown), so readers may skip looking for them.

    ``hist`` is None when every sample is a float (no extra column is allocated then). Otherwise it says which
    sample rows are native histograms (:class:`HistogramColumns`); for those rows ``t`` is the timestamp and ``v``
    the raw bits of the histogram's sum, so a histogram stale marker is StaleNaN in ``v`` like a float one. A
    series may mix floats and histograms over time. A consumer that handles floats only must refuse batches
    whose ``hist`` is set rather than read sums as values.
    """

    labels: list[Labels]
    refs: NDArray[np.int64]
    offsets: NDArray[np.int64]
    t: NDArray[np.int64]
    v: NDArray[np.uint64]
    stale_free: bool = False
    hist: HistogramColumns | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def series(self, i: int) -> SeriesTuple:
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.labels[i], self.t[a:b], self.v[a:b]

    def split(self, max_samples: int) -> Iterator[SampleBatch]:
        """Consecutive sub-batches of whole series holding about ``max_samples`` samples each."""
        n = len(self.labels)
        if n == 0 or int(self.offsets[-1]) <= max_samples:
            yield self
            return
        start = 0
        while start < n:
            base = int(self.offsets[start])
            stop = int(np.searchsorted(self.offsets, base + max_samples, side="right")) - 1
            stop = min(max(stop, start + 1), n)
            a, b = base, int(self.offsets[stop])
            yield SampleBatch(self.labels[start:stop], self.refs[start:stop], self.offsets[start : stop + 1] - base,
                              self.t[a:b], self.v[a:b], self.stale_free,
                              None if self.hist is None else self.hist.take(slice(a, b)))
            start = stop

    @staticmethod
    def concat(batches: Sequence[SampleBatch]) -> SampleBatch:
        if len(batches) == 1:
            return batches[0]
        if not batches:
            return SampleBatch([], np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(0, np.int64),
                               np.zeros(0, np.uint64))
        labels = [lab for b in batches for lab in b.labels]
        sizes = np.concatenate([np.diff(b.offsets) for b in batches])
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        hist = None
        if any(b.hist is not None for b in batches):
            hist = HistogramColumns.concat([(b.hist, int(b.t.shape[0])) for b in batches])
        return SampleBatch(labels, np.concatenate([b.refs for b in batches]), offsets,
                           np.concatenate([b.t for b in batches]), np.concatenate([b.v for b in batches]),
                           all(b.stale_free for b in batches), hist)

    def take(self, sample_rows: NDArray[np.int64], counts: NDArray[np.int64]) -> SampleBatch:
        """The batch's series, each reduced to its samples among ``sample_rows`` (``counts[i]`` of them for
        series i, in series order); series left without samples are dropped."""
        nonempty = np.flatnonzero(counts)
        offsets = np.concatenate([[0], np.cumsum(counts[nonempty])]).astype(np.int64)
        hist = None if self.hist is None else self.hist.take(sample_rows)
        return SampleBatch([self.labels[i] for i in nonempty.tolist()], self.refs[nonempty], offsets,
                           self.t[sample_rows], self.v[sample_rows], self.stale_free, hist)

    @staticmethod
    def of(series: Sequence[SeriesTuple]) -> SampleBatch:
        """One batch holding the given series, in the given order."""
        if not series:
            return SampleBatch.concat([])
        offsets = np.concatenate([[0], np.cumsum([s[1].shape[0] for s in series])]).astype(np.int64)
        return SampleBatch([s[0] for s in series], np.full(len(series), -1, np.int64), offsets,
                           np.concatenate([s[1] for s in series]).astype(np.int64),
                           np.concatenate([s[2] for s in series]).astype(np.uint64))

    def each(self) -> Iterator[SeriesTuple]:
        """The batch's series one at a time."""
        for i in range(len(self.labels)):
            yield self.series(i)

    def runs(self) -> Iterator[SampleRun]:
        """The batch's series one at a time, histogram part included."""
        offs = self.offsets.tolist()
        for i, lab in enumerate(self.labels):
            lo, hi = offs[i], offs[i + 1]
            yield lab, self.t[lo:hi], self.v[lo:hi], None if self.hist is None else self.hist.take(slice(lo, hi))

    @staticmethod
    def of_runs(runs: Sequence[SampleRun]) -> SampleBatch:
        """One batch holding the given series, in the given order (``hist`` only when some run has one)."""
        batch = SampleBatch.of([(r[0], r[1], r[2]) for r in runs])
        if all(r[3] is None for r in runs):
            return batch
        hist = HistogramColumns.concat([(r[3], int(r[1].shape[0])) for r in runs])
        return SampleBatch(batch.labels, batch.refs, batch.offsets, batch.t, batch.v, hist=hist)


@dataclass(frozen=True)
class SelectHints:
    """What the query engine tells storage about a selection (Thanos uses ``func`` to pick aggregates)."""

    start: int
    end: int
    step: int = 0
    func: str = ""
    range: int = 0
    grouping: tuple[str, ...] = ()
    by: bool = False


def add_new(into: list[str], warnings: Iterable[str]) -> None:
    """Append the warnings not already in ``into``, in order, each once."""
    into.extend(w for w in dict.fromkeys(warnings) if w not in into)


class SeriesStream:
    """A selection: label-ordered batches of whole series, read once, and the storage warnings.

    ``warnings`` may grow while the batches are read (a block left out mid-stream under partial
    response, a source's late report), so a reader looks at it again after the last batch, as at
    Prometheus's ``SeriesSet.Warnings()``. ``series_bound`` is at least the number of series the
    batches hold, known before anything is decoded.
    """

    def __init__(self, batches: Iterable[SampleBatch] = (), warnings: Iterable[str] = (),
                 series_bound: int = 0) -> None:
        self.batches: Iterator[SampleBatch] = iter(batches)
        self.warnings: list[str] = []
        add_new(self.warnings, warnings)
        self.series_bound = series_bound

    @classmethod
    def whole(cls, batch: SampleBatch, warnings: Iterable[str] = (), *,
              batch_samples: int = DEFAULT_BATCH_SAMPLES) -> SeriesStream:
        """A selection answered at once, delivered as batches of about ``batch_samples`` samples."""
        return cls(batch.split(batch_samples), warnings, len(batch))

    def __iter__(self) -> Iterator[SampleBatch]:
        return self.batches

    def collect(self) -> SampleBatch:
        """Every remaining batch as one (the warnings are complete afterwards)."""
        return SampleBatch.concat(list(self.batches))


@dataclass(frozen=True)
class LabelResult:
    """Label names or values, sorted, with the storage warnings met while finding them."""

    values: list[str]
    warnings: list[str] = field(default_factory=list)


class Querier(Protocol):
    """Read access to series: all a PromQL engine or an API server needs from storage.

    Implemented by the bucket (``core/querier.py``), remote StoreAPI endpoints (``sources/remote.py``),
    the fan-out over several (``sources/fanout.py``), the wrappers that deduplicate replicas
    (``core/dedup.py``) and apply the partial-response policy (``core/partial.py``), and the in-memory
    querier of tests (``promql/memquerier.py``); ``tests/core/test_series_contract.py`` has mypy check
    every one of them against this protocol.
    """

    def select(self, matchers: Sequence[Matcher], mint: int, maxt: int, hints: SelectHints | None = None, *,
               batch_samples: int = DEFAULT_BATCH_SAMPLES) -> SeriesStream:
        """Series matching all matchers with their samples in ``[mint, maxt]`` (inclusive), sorted by labels,
        as batches of about ``batch_samples`` samples."""
        ...

    def label_names(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> LabelResult: ...

    def label_values(self, name: str, matchers: Sequence[Matcher], mint: int, maxt: int) -> LabelResult: ...
