"""The currency between storage and everything above it: batches of series with their samples."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from thanostools.core.labels import Labels
from thanostools.core.matchers import Matcher


@dataclass(frozen=True)
class SampleBatch:
    """Samples of several series: series i owns ``t/v[offsets[i]:offsets[i+1]]``.

    ``v`` holds raw float64 bits as uint64 (StaleNaN and NaN payloads exact); ``v.view(np.float64)``
    gives the values. ``refs`` are storage-specific series ids (-1 when not meaningful).
    """

    labels: list[Labels]
    refs: NDArray[np.int64]
    offsets: NDArray[np.int64]
    t: NDArray[np.int64]
    v: NDArray[np.uint64]

    def __len__(self) -> int:
        return len(self.labels)

    def series(self, i: int) -> tuple[Labels, NDArray[np.int64], NDArray[np.uint64]]:
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
                              self.t[a:b], self.v[a:b])
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
        return SampleBatch(labels, np.concatenate([b.refs for b in batches]), offsets,
                           np.concatenate([b.t for b in batches]), np.concatenate([b.v for b in batches]))


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


@dataclass
class SelectResult:
    batch: SampleBatch
    warnings: list[str] = field(default_factory=list)


class Querier(Protocol):
    """Read access to series: all a PromQL engine or an API server needs from storage."""

    def select(self, matchers: Sequence[Matcher], mint: int, maxt: int,
               hints: SelectHints | None = None) -> SelectResult:
        """Series matching all matchers with their samples in ``[mint, maxt]`` (inclusive), sorted by labels."""
        ...

    def label_names(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> list[str]: ...

    def label_values(self, name: str, matchers: Sequence[Matcher], mint: int, maxt: int) -> list[str]: ...
