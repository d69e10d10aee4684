"""The repair modifier: series without the chunks the index health check complains about.

Dropped: chunks completely outside the block range, Issue-347 chunks (starting at maxTime) and duplicated
chunks (same range, same bytes). Consecutive series with the same label set become one. Anything else (chunks
partly outside the range, overlapping chunks with different data) stops the repair (``HaltError``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from thanostools.core.errors import HaltError
from thanostools.core.labels import format_labels
from thanostools.core.pipeline.merge import duplicate_chunks
from thanostools.core.pipeline.table import ChunkedSeries, ChunkTable
from thanostools.core.tsdb.block import Block
from thanostools.core.tsdb.labelkeys import LabelKeys, SymbolTable


@dataclass
class RepairStats:
    series_in: int = 0
    series_out: int = 0
    chunks_in: int = 0
    chunks_out: int = 0
    dropped_outsiders: int = 0
    dropped_issue347: int = 0
    dropped_duplicates: int = 0
    merged_series: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sorted_label_order(block: Block, symbols: SymbolTable) -> tuple[np.ndarray, dict[int, tuple[int, ...]]]:
    """Series refs ordered by their label sets with label pairs sorted, and those label sets (as keys)."""
    fixed: dict[int, tuple[int, ...]] = {}
    for raw in block.index.iter_series_raw():
        keys = symbols.keys_of(0, raw)
        for i, ref in enumerate(raw.refs.tolist()):
            k = keys.key(i).tolist()
            fixed[ref] = tuple(x for pair in sorted(zip(k[0::2], k[1::2], strict=True)) for x in pair)
    order = sorted(fixed, key=lambda r: (fixed[r], r))
    return np.array(order, dtype=np.int64), fixed


@dataclass(frozen=True)
class _Pending:
    key: tuple[int, ...]
    ref: int
    chunks: ChunkTable


class Repair:
    """For the series of one block read in label order (or in the order of ``fixed`` label sets, by ref)."""

    def __init__(self, min_time: int, max_time: int, stats: RepairStats,
                 fixed: Mapping[int, tuple[int, ...]] | None = None) -> None:
        self.lo, self.hi = min_time, max_time
        self.stats = stats
        self.fixed = fixed

    def __call__(self, batches: Iterable[ChunkedSeries]) -> Iterator[ChunkedSeries]:
        pending: _Pending | None = None  # the last series so far: the next batch may continue it
        symbols: list[str] = []
        for batch in batches:
            symbols = batch.labels.symbols
            keys = self._keys(batch)
            self.stats.series_in += len(keys)
            self.stats.chunks_in += len(batch.chunks)
            group_keys, group_refs = ([pending.key], [pending.ref]) if pending is not None else ([], [])
            group = np.empty(len(keys), dtype=np.int64)
            for i, k in enumerate(keys):
                if group_keys and k == group_keys[-1]:
                    self.stats.merged_series += 1
                else:
                    group_keys.append(k)
                    group_refs.append(int(batch.refs[i]))
                group[i] = len(group_keys) - 1
            table = batch.chunks.pick(np.arange(len(batch.chunks)))
            table.series = group[table.series]
            if pending is not None:
                table = ChunkTable.concat([pending.chunks, table])
            last = len(group_keys) - 1
            if last:
                done = table.pick(np.flatnonzero(table.series < last))
                yield self._sanitize(group_keys[:last], group_refs[:last], done, symbols)
            rest = table.pick(np.flatnonzero(table.series == last))
            rest.series = np.zeros(len(rest), dtype=np.int64)
            pending = _Pending(group_keys[last], group_refs[last], rest)
        if pending is not None:
            yield self._sanitize([pending.key], [pending.ref], pending.chunks, symbols)

    def _keys(self, batch: ChunkedSeries) -> list[tuple[int, ...]]:
        if self.fixed is not None:
            return [self.fixed[int(r)] for r in batch.refs.tolist()]
        return [tuple(batch.labels.key(i).tolist()) for i in range(len(batch))]

    def _sanitize(self, keys: list[tuple[int, ...]], refs: list[int], c: ChunkTable,
                  symbols: list[str]) -> ChunkedSeries:
        labels = _label_keys(symbols, keys)
        c = c.pick(np.lexsort((c.mint, c.series)))
        lo, hi = self.lo, self.hi
        outside = (c.mint < lo) | (c.maxt > hi)
        complete = outside & ((c.mint > hi) | (c.maxt < lo))
        issue347 = outside & ~complete & (c.mint == hi)
        partial = np.flatnonzero(outside & ~complete & ~issue347)
        kept = c.pick(np.flatnonzero(~(complete | issue347)))
        overlap = np.zeros(len(kept), dtype=bool)
        overlap[1:] = (kept.series[1:] == kept.series[:-1]) & (kept.mint[1:] <= kept.maxt[:-1])
        dup = overlap & duplicate_chunks(kept)
        bad = np.flatnonzero(overlap & ~dup)
        if partial.size and (not bad.size or c.series[partial[0]] <= kept.series[bad[0]]):
            j = int(partial[0])
            raise HaltError(f"series {format_labels(labels.labels(int(c.series[j])))}: chunk [{c.mint[j]}, "
                            f"{c.maxt[j]}] is partly outside the block range [{lo}, {hi}]; dropping it would "
                            f"lose samples")
        if bad.size:
            j = int(bad[0])
            raise HaltError(f"series {format_labels(labels.labels(int(kept.series[j])))}: chunks "
                            f"[{kept.mint[j - 1]}, {kept.maxt[j - 1]}] and [{kept.mint[j]}, {kept.maxt[j]}] "
                            f"overlap with different data")
        self.stats.dropped_outsiders += int(complete.sum())
        self.stats.dropped_issue347 += int(issue347.sum())
        self.stats.dropped_duplicates += int(dup.sum())
        kept = kept.pick(np.flatnonzero(~dup))
        self.stats.series_out += int(np.unique(kept.series).shape[0])
        self.stats.chunks_out += len(kept)
        return ChunkedSeries(labels, np.array(refs, dtype=np.int64), kept)


def _label_keys(symbols: list[str], keys: list[tuple[int, ...]]) -> LabelKeys:
    offsets = np.concatenate([[0], np.cumsum([len(k) for k in keys])]).astype(np.int64)
    flat = np.fromiter((x for k in keys for x in k), dtype=np.int64, count=int(offsets[-1]))
    return LabelKeys(symbols, flat, offsets)
