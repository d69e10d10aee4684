"""One ``Querier`` over several: results merged in label order, replicas optionally deduplicated.

Series with equal label sets from different sources are chained (equal timestamps once, the first
source winning). With ``dedup``, series equal after dropping ``replica_labels`` are merged with the
penalty algorithm (FORMATS.md §8.6) and returned without the replica labels.

``select_batches`` streams without ``dedup``: sources that stream (``select_batches``) are merged as
their batches are read, the others are read whole. Replicas are not adjacent in label order, so
with ``dedup`` the merged selection is built whole and then split.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np

from thanostools.core import labels as labelset
from thanostools.core.dedup import COUNTER_FUNCS, dedup_replicas
from thanostools.core.labels import Labels
from thanostools.core.matchers import Matcher
from thanostools.core.querier import DEFAULT_BATCH_SAMPLES, SelectStream
from thanostools.core.series import Querier, SampleBatch, SelectHints, SelectResult
from thanostools.core.storage import SeriesTuple, merge_series

T = TypeVar("T")


def _series(batch: SampleBatch) -> Iterator[SeriesTuple]:
    for i in range(len(batch)):
        yield batch.series(i)


def _stream_series(stream: SelectStream) -> Iterator[SeriesTuple]:
    for batch in stream.batches:
        yield from _series(batch)


def _open(q: Querier, matchers: Sequence[Matcher], mint: int, maxt: int, hints: SelectHints | None,
          batch_samples: int) -> SelectStream:
    """A source's selection as a stream: its own when it streams, else its whole answer split up."""
    streaming: Callable[..., SelectStream] | None = getattr(q, "select_batches", None)
    if streaming is not None:
        return streaming(matchers, mint, maxt, hints, batch_samples=batch_samples)
    res = q.select(matchers, mint, maxt, hints)
    return SelectStream(res.batch.split(batch_samples), list(res.warnings), len(res.batch))


def _rebatched(series: Iterator[SeriesTuple], batch_samples: int, sources: Sequence[SelectStream],
               warnings: list[str]) -> Iterator[SampleBatch]:
    """Merged series as batches of about ``batch_samples`` samples; then the sources' late warnings."""
    pending: list[SeriesTuple] = []
    held = 0
    for s in series:
        pending.append(s)
        held += s[1].shape[0]
        if held >= batch_samples:
            yield _to_batch(pending)
            pending, held = [], 0
    if pending:
        yield _to_batch(pending)
    for source in sources:
        warnings.extend(w for w in source.warnings if w not in warnings)


def _to_batch(series: Sequence[SeriesTuple]) -> SampleBatch:
    if not series:
        return SampleBatch.concat([])
    offsets = np.concatenate([[0], np.cumsum([s[1].shape[0] for s in series])]).astype(np.int64)
    return SampleBatch([s[0] for s in series], np.full(len(series), -1, np.int64), offsets,
                       np.concatenate([s[1] for s in series]).astype(np.int64),
                       np.concatenate([s[2] for s in series]).astype(np.uint64))


def deduplicate(series: Sequence[SeriesTuple], replica_labels: Sequence[str], *, counter: bool,
                ) -> list[SeriesTuple]:
    """Merge replicas (equal labels without ``replica_labels``), label-sorted."""
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


class FanoutQuerier:
    """Queries every source concurrently (each is thread-safe) and merges the answers."""

    def __init__(self, queriers: Sequence[Querier], *, replica_labels: Sequence[str] = (),
                 dedup: bool = False) -> None:
        self.queriers = list(queriers)
        self.replica_labels = tuple(replica_labels)
        self.dedup = dedup and bool(self.replica_labels)

    def _each(self, call: Callable[[Querier], T]) -> list[T]:
        if len(self.queriers) == 1:
            return [call(self.queriers[0])]
        with ThreadPoolExecutor(max_workers=len(self.queriers), thread_name_prefix="fanout") as pool:
            return list(pool.map(call, self.queriers))

    def select(self, matchers: Sequence[Matcher], mint: int, maxt: int,
               hints: SelectHints | None = None) -> SelectResult:
        results = self._each(lambda q: q.select(matchers, mint, maxt, hints))
        merged = list(merge_series([_series(r.batch) for r in results]))
        if self.dedup:
            counter = hints is not None and hints.func in COUNTER_FUNCS
            merged = deduplicate(merged, self.replica_labels, counter=counter)
        warnings = [w for r in results for w in r.warnings]
        return SelectResult(_to_batch(merged), list(dict.fromkeys(warnings)))

    def select_batches(self, matchers: Sequence[Matcher], mint: int, maxt: int, hints: SelectHints | None = None,
                       *, batch_samples: int = DEFAULT_BATCH_SAMPLES) -> SelectStream:
        """``select`` as consecutive label-ordered batches of about ``batch_samples`` samples.

        Without deduplication the sources are opened concurrently and merged as they are read; the
        stream's ``warnings`` grows with what the sources report while being read.
        """
        if self.dedup:
            res = self.select(matchers, mint, maxt, hints)
            return SelectStream(res.batch.split(batch_samples), res.warnings, len(res.batch))
        streams = self._each(lambda q: _open(q, matchers, mint, maxt, hints, batch_samples))
        if len(streams) == 1:
            return streams[0]
        warnings = list(dict.fromkeys(w for s in streams for w in s.warnings))
        merged = merge_series([_stream_series(s) for s in streams])
        return SelectStream(_rebatched(merged, batch_samples, streams, warnings), warnings,
                            sum(s.series_bound for s in streams))

    def label_names(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> list[str]:
        names = {n for part in self._each(lambda q: q.label_names(matchers, mint, maxt)) for n in part}
        if self.dedup:
            names.difference_update(self.replica_labels)
        return sorted(names)

    def label_values(self, name: str, matchers: Sequence[Matcher], mint: int, maxt: int) -> list[str]:
        if self.dedup and name in self.replica_labels:
            return []
        return sorted({v for part in self._each(lambda q: q.label_values(name, matchers, mint, maxt)) for v in part})
