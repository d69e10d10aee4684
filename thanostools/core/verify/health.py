"""Index health check over every series of a block (FORMATS.md §8.10), vectorised per batch of series."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from thanostools.core.kernels import labelkeys as labelkeys_kernels
from thanostools.core.labels import Labels, format_labels
from thanostools.core.tsdb.index import IndexReader, RawSeries
from thanostools.core.tsdb.labelkeys import LabelKeys, SymbolTable
from thanostools.core.tsdb.meta import BlockMeta

MAX_EXAMPLES = 5


@dataclass
class IndexHealth:
    """Counts of every problem the health check knows, plus the index statistics Thanos stores in meta."""

    block: str
    min_time: int
    max_time: int
    total_series: int = 0
    total_chunks: int = 0
    empty_label_series: int = 0
    unsorted_series: int = 0
    series_without_chunks: int = 0
    out_of_order_labels: int = 0
    outsiders: int = 0
    complete_outsiders: int = 0
    issue347_outsiders: int = 0
    duplicated_chunks: int = 0
    overlapping_chunks: int = 0
    out_of_order_series: int = 0
    series_max_size: int = 0
    chunk_max_size: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def critical_outsiders(self) -> int:
        """Chunks outside the block range that are not Issue-347 leftovers."""
        return self.outsiders - self.issue347_outsiders

    @property
    def out_of_order_chunks(self) -> int:
        """Thanos' OutOfOrderChunks: duplicated plus overlapping chunks."""
        return self.duplicated_chunks + self.overlapping_chunks

    @property
    def hard_errors(self) -> int:
        return self.empty_label_series + self.unsorted_series + self.series_without_chunks

    @property
    def any_error(self) -> bool:
        return bool(self.hard_errors or self.outsiders or self.out_of_order_labels or self.out_of_order_chunks)

    def problems(self) -> list[str]:
        """Short names of what is wrong, for messages."""
        named = [
            ("series with an empty label set", self.empty_label_series),
            ("series out of order", self.unsorted_series),
            ("series without chunks", self.series_without_chunks),
            ("series with out-of-order labels", self.out_of_order_labels),
            ("chunks completely outside the block range", self.complete_outsiders),
            ("Issue-347 chunks (starting at the block's maxTime)", self.issue347_outsiders),
            ("chunks partly outside the block range", self.outsiders - self.complete_outsiders
             - self.issue347_outsiders),
            ("duplicated chunks", self.duplicated_chunks),
            ("overlapping chunks", self.overlapping_chunks),
        ]
        return [f"{n} {what}" for what, n in named if n]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(critical_outsiders=self.critical_outsiders, out_of_order_chunks=self.out_of_order_chunks)
        return out


class _Walker:
    """State carried from one batch of series to the next."""

    def __init__(self, index: IndexReader, meta: BlockMeta) -> None:
        self.index = index
        self.h = IndexHealth(meta.ulid, meta.min_time, meta.max_time)
        # Ranks in the sorted symbols, not the file's order: a damaged table must not hide unsorted series.
        self.symbols = SymbolTable.union([index.symbols])
        self.prev_key: np.ndarray | None = None
        self.prev_offset: int | None = None

    def example(self, labels: Labels, text: str) -> None:
        if len(self.h.examples) < MAX_EXAMPLES:
            self.h.examples.append(f"{format_labels(labels)}: {text}")

    def batch(self, raw: RawSeries) -> None:
        labels = self.symbols.keys_of(0, raw)
        self.h.total_series += len(raw)
        self.h.total_chunks += int(raw.chunk_mint.shape[0])
        self._series_order(raw, labels)
        self._label_order(raw, labels)
        self._chunks(raw, labels)
        self._sizes(raw)

    def _series_order(self, raw: RawSeries, labels: LabelKeys) -> None:
        counts = np.diff(raw.chunk_offsets)
        for i in np.flatnonzero(counts == 0).tolist():
            self.h.series_without_chunks += 1
            self.example(labels.labels(i), "series has no chunks")
        if len(labels) == 0:
            return
        empty = np.diff(labels.offsets) == 0
        unsorted = labelkeys_kernels.not_after_previous(labels.keys, labels.offsets) & ~empty
        if self.prev_key is not None and not empty[0]:
            unsorted[0] = labels.compare(0, self.prev_key) <= 0
        for _ in np.flatnonzero(empty).tolist():
            self.h.empty_label_series += 1
            self.example((), "empty label set")
        for i in np.flatnonzero(unsorted).tolist():
            self.h.unsorted_series += 1
            prev = labels.labels(i - 1) if i else self._prev_labels()
            self.example(labels.labels(i), f"series not after {format_labels(prev)}")
        self.prev_key = labels.key(len(labels) - 1).copy()

    def _prev_labels(self) -> Labels:
        assert self.prev_key is not None
        return LabelKeys(self.symbols.symbols, self.prev_key, np.array([0, self.prev_key.shape[0]])).labels(0)

    def _label_order(self, raw: RawSeries, labels: LabelKeys) -> None:
        names = raw.label_names
        if names.shape[0] < 2:
            return
        owner = np.repeat(np.arange(len(raw)), np.diff(raw.label_offsets))
        bad = (owner[1:] == owner[:-1]) & (names[1:] <= names[:-1])
        for i in np.unique(owner[1:][bad]).tolist():
            self.h.out_of_order_labels += 1
            self.example(labels.labels(i), "label names out of order")

    def _chunks(self, raw: RawSeries, labels: LabelKeys) -> None:
        lo, hi = self.h.min_time, self.h.max_time
        mint, maxt = raw.chunk_mint, raw.chunk_maxt
        owner = np.repeat(np.arange(len(raw)), np.diff(raw.chunk_offsets))
        outside = (mint < lo) | (maxt > hi)
        complete = outside & ((mint > hi) | (maxt < lo))
        issue347 = outside & ~complete & (mint == hi)
        self.h.outsiders += int(outside.sum())
        self.h.complete_outsiders += int(complete.sum())
        self.h.issue347_outsiders += int(issue347.sum())
        for j in np.flatnonzero(outside)[:MAX_EXAMPLES].tolist():
            self.example(labels.labels(int(owner[j])), f"chunk [{mint[j]}, {maxt[j]}] outside block range [{lo}, {hi}]")
        same = owner[1:] == owner[:-1]
        overlap = same & (mint[1:] <= maxt[:-1])
        dup = overlap & (mint[1:] == mint[:-1]) & (maxt[1:] == maxt[:-1])
        self.h.duplicated_chunks += int(dup.sum())
        self.h.overlapping_chunks += int((overlap & ~dup).sum())
        bad_series = np.unique(owner[1:][overlap])
        self.h.out_of_order_series += int(bad_series.shape[0])
        for j in np.flatnonzero(overlap)[:MAX_EXAMPLES].tolist():
            what = "duplicated chunk" if dup[j] else "overlapping chunk"
            self.example(labels.labels(int(owner[j + 1])),
                         f"{what} [{mint[j + 1]}, {maxt[j + 1]}] after [{mint[j]}, {maxt[j]}]")

    def _sizes(self, raw: RawSeries) -> None:
        offsets = self.index.series_offsets(raw.refs)
        if offsets.shape[0]:
            steps = np.diff(offsets) if self.prev_offset is None else np.diff(offsets, prepend=self.prev_offset)
            if steps.shape[0]:
                self.h.series_max_size = max(self.h.series_max_size, int(steps.max()))
            self.prev_offset = int(offsets[-1])
        self.h.chunk_max_size = max(self.h.chunk_max_size, _chunk_max_size(raw))


def _chunk_max_size(raw: RawSeries) -> int:
    """Largest distance between refs of chunk i and i+1 of a series in one segment, for i < n-2 (as upstream)."""
    counts = np.diff(raw.chunk_offsets)
    refs = raw.chunk_ref
    if refs.shape[0] < 2:
        return 0
    pos = np.arange(refs.shape[0]) - np.repeat(raw.chunk_offsets[:-1], counts)
    n_of = np.repeat(counts, counts)
    valid = (pos[:-1] < n_of[:-1] - 2) & ((refs[1:] >> 32) == (refs[:-1] >> 32))
    if not bool(valid.any()):
        return 0
    return int((refs[1:] - refs[:-1])[valid].max())


def index_health(index: IndexReader, meta: BlockMeta, *, batch_size: int = 20000) -> IndexHealth:
    """Walk every series in all-postings order and count what is wrong (``meta`` gives the block range)."""
    walker = _Walker(index, meta)
    for raw in index.iter_series_raw(batch_size=batch_size):
        walker.batch(raw)
    return walker.h
