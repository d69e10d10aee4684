"""Reading across blocks: a label-ordered k-way merge of series, samples chained by timestamp."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from thanostools.core.chunkenc.aggr import Aggr
from thanostools.core.labels import Labels
from thanostools.core.matchers import Matcher
from thanostools.core.series import HistogramColumns, SampleBatch, SampleRun, SeriesTuple
from thanostools.core.tsdb.block import MAX_TIME, MIN_TIME, Block


def _series_of(batches: Iterable[SampleBatch]) -> Iterator[SeriesTuple]:
    for b in batches:
        for i in range(len(b)):
            yield b.series(i)


def chain_samples(parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Merge sample runs of one series by time; on equal timestamps the earliest run wins."""
    if len(parts) == 1:
        return parts[0]
    t = np.concatenate([p[0] for p in parts])
    v = np.concatenate([p[1] for p in parts])
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    keep = np.ones(t.shape[0], dtype=bool)
    keep[1:] = t[1:] != t[:-1]
    return t[keep], v[keep]


def _batched(series: Iterator[SeriesTuple], size: int) -> Iterator[SampleBatch]:
    labels: list[Labels] = []
    ts: list[np.ndarray] = []
    vs: list[np.ndarray] = []
    for lab, t, v in series:
        labels.append(lab)
        ts.append(t)
        vs.append(v)
        if len(labels) >= size:
            yield _make_batch(labels, ts, vs)
            labels, ts, vs = [], [], []
    if labels:
        yield _make_batch(labels, ts, vs)


def _make_batch(labels: list[Labels], ts: list[np.ndarray], vs: list[np.ndarray]) -> SampleBatch:
    offsets = np.concatenate([[0], np.cumsum([t.shape[0] for t in ts])]).astype(np.int64)
    return SampleBatch(labels, np.full(len(labels), -1, np.int64), offsets, np.concatenate(ts), np.concatenate(vs))


def _keyed(stream: Iterator[SeriesTuple], k: int) -> Iterator[tuple[tuple[Labels, int], np.ndarray, np.ndarray]]:
    # The stream number breaks label ties so heapq never compares arrays.
    for lab, t, v in stream:
        yield (lab, k), t, v


def merge_series(streams: Sequence[Iterator[SeriesTuple]]) -> Iterator[SeriesTuple]:
    """Merge label-sorted series streams; equal label sets are chained into one series."""
    merged = heapq.merge(*[_keyed(s, k) for k, s in enumerate(streams)])
    current: Labels | None = None
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    for (lab, _k), t, v in merged:
        if lab != current:
            if current is not None:
                yield (current, *chain_samples(parts))
            current, parts = lab, []
        parts.append((t, v))
    if current is not None:
        yield (current, *chain_samples(parts))


def runs_of(batches: Iterable[SampleBatch]) -> Iterator[SampleRun]:
    for b in batches:
        yield from b.runs()


def chain_runs(lab: Labels, parts: Sequence[SampleRun]) -> SampleRun:
    """``chain_samples`` for runs that may hold histograms (the earliest run wins on equal timestamps)."""
    if all(p[3] is None for p in parts):
        return (lab, *chain_samples([(p[1], p[2]) for p in parts]), None)
    if len(parts) == 1:
        return parts[0]
    t = np.concatenate([p[1] for p in parts])
    order = np.argsort(t, kind="stable")
    keep = np.ones(t.shape[0], dtype=bool)
    keep[1:] = t[order][1:] != t[order][:-1]
    idx = order[keep]
    hist = HistogramColumns.concat([(None if p[3] is None else p[3].compact(), int(p[1].shape[0])) for p in parts])
    return lab, t[idx], np.concatenate([p[2] for p in parts])[idx], hist.take(idx)


def merge_runs(streams: Sequence[Iterator[SampleRun]]) -> Iterator[SampleRun]:
    """``merge_series`` for runs that may hold histograms."""
    keyed = [(((r[0], k), r) for r in s) for k, s in enumerate(streams)]
    merged = heapq.merge(*keyed, key=lambda item: item[0])
    current: Labels | None = None
    parts: list[SampleRun] = []
    for (lab, _k), run in merged:
        if lab != current:
            if current is not None:
                yield chain_runs(current, parts)
            current, parts = lab, []
        parts.append(run)
    if current is not None:
        yield chain_runs(current, parts)


def _batched_runs(runs: Iterator[SampleRun], size: int) -> Iterator[SampleBatch]:
    pending: list[SampleRun] = []
    for run in runs:
        pending.append(run)
        if len(pending) >= size:
            yield SampleBatch.of_runs(pending)
            pending = []
    if pending:
        yield SampleBatch.of_runs(pending)


def select_blocks(
    blocks: Sequence[Block],
    matchers: Sequence[Matcher] = (),
    mint: int = MIN_TIME,
    maxt: int = MAX_TIME,
    *,
    aggregate: Aggr = Aggr.COUNT,
    batch_size: int = 20000,
    histograms: bool = False,
) -> Iterator[SampleBatch]:
    """Samples of matching series from all blocks, one series per label set, in label order (native
    histograms in the batches' histogram part with ``histograms``, else refused as by ``Block.select``)."""
    live = [b for b in blocks if b.meta.max_time > mint and b.meta.min_time <= maxt]
    if len(live) == 1:
        yield from live[0].select(matchers, mint, maxt, aggregate=aggregate, batch_size=batch_size,
                                  histograms=histograms)
        return
    streams = [b.select(matchers, mint, maxt, aggregate=aggregate, batch_size=batch_size, histograms=histograms)
               for b in live]
    if not histograms:
        yield from _batched(merge_series([_series_of(s) for s in streams]), batch_size)
        return
    yield from _batched_runs(merge_runs([runs_of(s) for s in streams]), batch_size)


def union_selects(selects: Sequence[Iterator[SampleBatch]], batch_size: int = 20000) -> Iterator[SampleBatch]:
    """Series matching any of several selections (a series selected twice appears once)."""
    if len(selects) == 1:
        return selects[0]
    return _batched_runs(merge_runs([runs_of(s) for s in selects]), batch_size)
