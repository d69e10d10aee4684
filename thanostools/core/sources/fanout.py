"""One ``Querier`` over several: their streams merged in label order as they are read.

Series with equal label sets from different sources are chained (equal timestamps once, the first
source winning); native-histogram samples travel along in the batches' histogram part. Replicas are
merged by wrapping the fan-out in ``dedup.DedupQuerier``, the same wrapper a single bucket querier uses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from thanostools.core.matchers import Matcher
from thanostools.core.series import (
    DEFAULT_BATCH_SAMPLES,
    LabelResult,
    Querier,
    SampleBatch,
    SampleRun,
    SelectHints,
    SeriesStream,
    add_new,
)
from thanostools.core.storage import merge_runs

T = TypeVar("T")


def _stream_runs(stream: SeriesStream) -> Iterator[SampleRun]:
    for batch in stream:
        yield from batch.runs()


def _rebatched(series: Iterator[SampleRun], batch_samples: int, sources: Sequence[SeriesStream],
               warnings: list[str]) -> Iterator[SampleBatch]:
    """Merged series as batches of about ``batch_samples`` samples; then the sources' late warnings."""
    pending: list[SampleRun] = []
    held = 0
    for s in series:
        pending.append(s)
        held += s[1].shape[0]
        if held >= batch_samples:
            yield SampleBatch.of_runs(pending)
            pending, held = [], 0
    if pending:
        yield SampleBatch.of_runs(pending)
    for source in sources:
        add_new(warnings, source.warnings)


class FanoutQuerier(Querier):
    """Queries every source concurrently (each is thread-safe) and merges the answers."""

    def __init__(self, queriers: Sequence[Querier]) -> None:
        self.queriers = list(queriers)

    def _each(self, call: Callable[[Querier], T]) -> list[T]:
        if len(self.queriers) == 1:
            return [call(self.queriers[0])]
        with ThreadPoolExecutor(max_workers=len(self.queriers), thread_name_prefix="fanout") as pool:
            return list(pool.map(call, self.queriers))

    def select(self, matchers: Sequence[Matcher], mint: int, maxt: int, hints: SelectHints | None = None, *,
               batch_samples: int = DEFAULT_BATCH_SAMPLES) -> SeriesStream:
        """The sources opened concurrently and merged as they are read; the stream's ``warnings`` grows with
        what the sources report while being read."""
        streams = self._each(lambda q: q.select(matchers, mint, maxt, hints, batch_samples=batch_samples))
        if len(streams) == 1:
            return streams[0]
        out = SeriesStream((), [w for s in streams for w in s.warnings], sum(s.series_bound for s in streams))
        merged = merge_runs([_stream_runs(s) for s in streams])
        out.batches = _rebatched(merged, batch_samples, streams, out.warnings)
        return out

    def label_names(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> LabelResult:
        return _union(self._each(lambda q: q.label_names(matchers, mint, maxt)))

    def label_values(self, name: str, matchers: Sequence[Matcher], mint: int, maxt: int) -> LabelResult:
        return _union(self._each(lambda q: q.label_values(name, matchers, mint, maxt)))


def _union(parts: Sequence[LabelResult]) -> LabelResult:
    warnings: list[str] = []
    add_new(warnings, [w for p in parts for w in p.warnings])
    return LabelResult(sorted({v for p in parts for v in p.values}), warnings)
