"""The relabel modifier: Prometheus relabel_configs over the series of one block (FORMATS.md §11.7).

Relabelling needs strings and can reorder series or make two equal, and a block is written in label order, so
it is planned first: one pass over the index's label sets (strings built for one batch at a time) gives every
series its new label set as a key over the block's symbols and the new strings, and the order to read the
series in — by new label set, equal ones adjacent in index order (the first one wins their merge). The
modifier then swaps the keys in as the chunks stream by, and never splits a run of equal label sets across
batches, so the stages after it see every run whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from thanostools.core.goformat import go_labels_string
from thanostools.core.kernels import labelkeys as labelkeys_kernels
from thanostools.core.labels import Labels
from thanostools.core.pipeline.delete import deleted_line
from thanostools.core.pipeline.table import ChunkedSeries, equal_to_previous
from thanostools.core.relabel import RelabelConfig, relabel
from thanostools.core.tsdb.block import Block
from thanostools.core.tsdb.labelkeys import LabelKeys, SymbolTable


@dataclass
class RelabelStats:
    series_dropped: int = 0  # relabelled to nothing
    samples_dropped: int = 0
    series_relabelled: int = 0  # label set changed
    series_merged: int = 0  # series whose new label set is that of a series before it


def relabelled_line(old: Labels, new: Labels) -> str:
    return f"Relabelled {go_labels_string(old)} {go_labels_string(new)}"


@dataclass
class RelabelPlan:
    """New label sets of a block's series. ``refs`` in index order; ``keys`` (over ``symbols``) and ``dropped``
    by position in it. ``read_order``: the refs to read, None when index order is already the new order."""

    symbols: SymbolTable
    refs: np.ndarray
    keys: LabelKeys
    dropped: np.ndarray
    read_order: np.ndarray | None


def plan_relabel(block: Block, configs: Sequence[RelabelConfig], stats: RelabelStats, changes: list[str], *,
                 batch_series: int) -> RelabelPlan:
    """Relabel every series, logging drops and label changes in index order."""
    own = block.index.symbols
    table = SymbolTable(own, [np.arange(len(own), dtype=np.int64)])
    refs: list[np.ndarray] = []
    kept: list[LabelKeys] = []
    dropped: list[bool] = []
    changed: dict[int, Labels] = {}  # position -> new label set
    for raw in block.index.iter_series_raw(batch_size=batch_series):
        keys = table.keys_of(0, raw)
        refs.append(np.asarray(raw.refs, dtype=np.int64))
        kept.append(keys)
        offsets = raw.chunk_offsets.tolist()
        for i in range(len(keys)):
            old = keys.labels(i)
            new = relabel(old, configs)
            dropped.append(not new)
            if not new:
                a, b = offsets[i], offsets[i + 1]
                span = [(int(raw.chunk_mint[a:b].min()), int(raw.chunk_maxt[a:b].max()))] if b > a else []
                changes.append(deleted_line(old, span))
                stats.series_dropped += 1
            elif new != old:
                changes.append(relabelled_line(old, new))
                stats.series_relabelled += 1
                changed[len(dropped) - 1] = new
    all_refs = np.concatenate(refs) if refs else np.zeros(0, dtype=np.int64)
    is_dropped = np.array(dropped, dtype=bool)
    symbols, keys = _new_keys(own, LabelKeys.concat(kept) if kept else LabelKeys(own, np.zeros(0, np.int64),
                                                                                  np.zeros(1, np.int64)), changed)
    live = np.flatnonzero(~is_dropped)
    order = _read_order(keys, live)
    stats.series_merged = int(labelkeys_kernels.not_after_previous(*_keys_of(keys, order)).sum())
    in_order = bool(np.array_equal(order, live))
    read_order = None if in_order else np.concatenate([all_refs[order], all_refs[is_dropped]])
    return RelabelPlan(symbols, all_refs, keys, is_dropped, read_order)


def _new_keys(own: list[str], keys: LabelKeys, changed: dict[int, Labels]) -> tuple[SymbolTable, LabelKeys]:
    """Every series' new key over the block's symbols and the new strings (dropped series keep their old key)."""
    new_strings = sorted({x for lab in changed.values() for pair in lab for x in pair})
    symbols = SymbolTable.union([own, new_strings])
    remapped = LabelKeys(symbols.symbols, symbols.ranks[0][keys.keys], keys.offsets)
    if not changed:
        return symbols, remapped
    rank = dict(zip(new_strings, symbols.ranks[1].tolist(), strict=True))
    positions = np.array(sorted(changed), dtype=np.int64)
    fresh = [np.array([rank[x] for pair in changed[p] for x in pair], dtype=np.int64) for p in positions.tolist()]
    fresh_keys = LabelKeys(symbols.symbols, np.concatenate(fresh),
                           np.concatenate([[0], np.cumsum([f.shape[0] for f in fresh])]).astype(np.int64))
    n = len(keys)
    source = np.arange(n, dtype=np.int64)
    source[positions] = n + np.arange(positions.shape[0])
    return symbols, LabelKeys.concat([remapped, fresh_keys]).take(source)


def _keys_of(keys: LabelKeys, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    part = keys.take(order)
    return part.keys, part.offsets


def _read_order(keys: LabelKeys, live: np.ndarray) -> np.ndarray:
    """Positions of live series by new label set, equal ones in index order."""
    part = keys.take(live)
    if part.first_out_of_order() < 0:
        return live
    flat, offsets = part.keys.tolist(), part.offsets.tolist()
    order = sorted(range(len(part)), key=lambda i: (flat[offsets[i] : offsets[i + 1]], i))
    return live[np.array(order, dtype=np.int64)]


class Relabel:
    """The modifier over ``read_series(..., symbols=plan.symbols, refs=plan.read_order)``: new label sets in,
    series relabelled to nothing out (their samples counted), runs of equal label sets kept in one batch."""

    def __init__(self, plan: RelabelPlan, stats: RelabelStats) -> None:
        self.plan = plan
        self.stats = stats

    def __call__(self, batches: Iterable[ChunkedSeries]) -> Iterator[ChunkedSeries]:
        held: ChunkedSeries | None = None
        for batch in batches:
            out = self.relabel(batch)
            if held is not None:
                out = ChunkedSeries.concat([held, out])
            if len(out) == 0:
                continue
            last = last_run_start(out.labels)
            if last:
                yield out.take(np.arange(last))
            held = out.take(np.arange(last, len(out)))
        if held is not None:
            yield held

    def relabel(self, batch: ChunkedSeries) -> ChunkedSeries:
        pos = np.searchsorted(self.plan.refs, batch.refs)
        gone = self.plan.dropped[pos]
        if gone.any():
            self.stats.samples_dropped += int(batch.series_samples()[gone].sum())
        out = batch.take(np.flatnonzero(~gone))
        out.labels = self.plan.keys.take(pos[~gone])
        return out


def last_run_start(labels: LabelKeys) -> int:
    """Where the run of label sets equal to the last one starts."""
    starts = np.flatnonzero(~equal_to_previous(labels))
    return int(starts[-1]) if starts.size else 0
