"""Reading: the series of one or more blocks, in label order, with their chunks located in place.

Each input is read in batches of series entries. With several inputs, a *round* takes from every input the
series up to the smallest "last label set" of the current batches, so equal label sets always meet in one
round (FORMATS.md §8.4). Label sets never become strings: every input's symbols map into one sorted union
table (``tsdb/labelkeys.py``). Local chunks are located in the mmapped segments (CRCs checked once), others are
read as whole records; either way the table points at framed records.

XOR2 chunks (encoding 4, HISTOGRAMS.md H11.3) are re-encoded as XOR right here, one for one (same samples, same
chunk bounds; start timestamps are dropped): every pipeline writes blocks for Thanos and Prometheus < 3.11,
which cannot read XOR2, so none of them ever copies an XOR2 chunk verbatim.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from thanostools.core.kernels import labelkeys as labelkeys_kernels
from thanostools.core.pipeline.table import COLUMNS, ChunkedSeries, ChunkTable
from thanostools.core.tsdb.block import Block
from thanostools.core.tsdb.chunks import ChunkBatch, ref_offset, ref_segment
from thanostools.core.tsdb.index import RawSeries
from thanostools.core.tsdb.labelkeys import LabelKeys, SymbolTable


def read_series(blocks: Sequence[Block], *, batch_series: int, symbols: SymbolTable | None = None,
                refs: np.ndarray | None = None) -> Iterator[ChunkedSeries]:
    """The series of ``blocks`` merged by label set (equal sets become one series), chunks in each input's
    index order, input after input. ``refs``: read only these series of a single input, in this order (then
    series are passed on as they come, sorted or not)."""
    symbols = symbols or SymbolTable.union([b.index.symbols for b in blocks])
    cursors = [c for c in (_Cursor(k, b, symbols, batch_series, refs) for k, b in enumerate(blocks)) if c.alive]
    while cursors:
        if len(cursors) == 1:
            takes = [cursors[0].take_rest()]
        else:
            frontier = cursors[0].last_key
            for c in cursors[1:]:
                if c.keys.compare(len(c.keys) - 1, frontier) < 0:
                    frontier = c.last_key
            takes = [take for take in (c.take_until(frontier) for c in cursors) if take is not None]
        yield _round(takes)
        cursors = [c for c in cursors if c.advance()]


def each_series(block: Block, *, batch_series: int = 2000) -> Iterator[ChunkedSeries]:
    """The series of one block one at a time, in index order (read ``batch_series`` at a time)."""
    for batch in read_series([block], batch_series=batch_series):
        yield from batch.each()


@dataclass(frozen=True)
class _Take:
    """Series ``a:b`` of one input's current batch."""

    k: int
    sb: RawSeries
    keys: LabelKeys
    cb: ChunkBatch
    a: int
    b: int


class _Cursor:
    """One input read in batches of series entries, with their label sets as keys over the merge's symbols."""

    def __init__(self, k: int, block: Block, symbols: SymbolTable, batch_series: int,
                 refs: np.ndarray | None) -> None:
        self.k = k
        self.block = block
        self.symbols = symbols
        self._batches: Iterator[RawSeries] = block.index.iter_series_raw(refs, batch_size=batch_series)
        self._in_order = refs is None
        self.pos = 0
        self.alive = self._load()

    def _load(self) -> bool:
        for sb in self._batches:
            if len(sb):
                if self._in_order:
                    self._release_read_chunks(sb.chunk_ref)
                self.sb = sb
                self.keys = self.symbols.keys_of(self.k, sb)
                located = self.block.locate_chunks(sb.chunk_ref)
                cb = located if located is not None else self.block.chunks.read(sb.chunk_ref, framed=True)
                self.cb = self.block.xor2_as_xor(cb, sb.chunk_ref)
                self.pos = 0
                return True
        return False

    def _release_read_chunks(self, refs: np.ndarray) -> None:
        """Chunks are laid out in series order, so segments before this batch's first chunk were read:
        let the mapped pages go, or resident memory would grow by the size of every input."""
        if refs.size == 0:
            return
        first = int(refs.view(np.uint64).min())
        segments = self.block.chunks.segments
        for seg in range(min(ref_segment(first), len(segments))):
            segments[seg].release(segments[seg].size())
        if ref_segment(first) < len(segments):
            segments[ref_segment(first)].release(ref_offset(first))

    @property
    def last_key(self) -> np.ndarray:
        return self.keys.key(len(self.keys) - 1)

    def take_until(self, frontier: np.ndarray) -> _Take | None:
        end = int(labelkeys_kernels.count_not_after(self.keys.keys, self.keys.offsets, self.pos, frontier))
        return None if end == self.pos else self._take(end)

    def take_rest(self) -> _Take:
        return self._take(len(self.sb))

    def _take(self, end: int) -> _Take:
        take = _Take(self.k, self.sb, self.keys, self.cb, self.pos, end)
        self.pos = end
        return take

    def advance(self) -> bool:
        """Load the next batch when this one is used up; False when the input is exhausted."""
        if self.pos < len(self.sb):
            return True
        self.alive = self._load()
        return self.alive


def _round(takes: Sequence[_Take]) -> ChunkedSeries:
    labels, out_ids, firsts = _merge_keys(takes)
    refs = np.concatenate([t.sb.refs[t.a : t.b] for t in takes]).astype(np.int64)[firsts]
    return ChunkedSeries(labels, refs, _chunk_table(takes, out_ids))


def _merge_keys(takes: Sequence[_Take]) -> tuple[LabelKeys, list[np.ndarray], np.ndarray]:
    """Sorted union of the takes' label sets, for every take the output position of each of its series, and
    for every output series its first position among the takes' series."""
    if len(takes) == 1:
        t = takes[0]
        ids = np.arange(t.b - t.a, dtype=np.int64)
        return t.keys.take(np.arange(t.a, t.b)), [ids], ids
    parts = LabelKeys.concat([t.keys.take(np.arange(t.a, t.b)) for t in takes])
    bounds = np.cumsum([0, *[t.b - t.a for t in takes]]).astype(np.int64)
    ids, firsts = labelkeys_kernels.merge_sorted_keys(parts.keys, parts.offsets, bounds)
    return parts.take(firsts), [ids[bounds[j] : bounds[j + 1]] for j in range(len(takes))], firsts


def _chunk_table(takes: Sequence[_Take], out_ids: Sequence[np.ndarray]) -> ChunkTable:
    cols: dict[str, list[np.ndarray]] = {c: [] for c in COLUMNS}
    for j, (take, ids) in enumerate(zip(takes, out_ids, strict=True)):
        sb, cb = take.sb, take.cb
        lo, hi = int(sb.chunk_offsets[take.a]), int(sb.chunk_offsets[take.b])
        counts = np.diff(sb.chunk_offsets[take.a : take.b + 1])
        cols["series"].append(np.repeat(ids, counts))
        cols["mint"].append(sb.chunk_mint[lo:hi])
        cols["maxt"].append(sb.chunk_maxt[lo:hi])
        cols["enc"].append(cb.encodings[lo:hi])
        cols["start"].append(cb.starts[lo:hi])
        cols["end"].append(cb.ends[lo:hi])
        cols["src"].append(np.full(hi - lo, take.k, dtype=np.int64))
        cols["ref"].append(np.repeat(sb.refs[take.a : take.b], counts))
        cols["rank"].append(np.arange(lo, hi, dtype=np.int64))
        cols["buf"].append(np.full(hi - lo, j, dtype=np.int64))
    return ChunkTable([t.cb.buf for t in takes], *(np.concatenate(cols[c]).astype(np.int64) for c in COLUMNS))
