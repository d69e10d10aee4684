"""``ChunkedSeries``: series with their raw chunks, the one type every stage of the pipeline passes on."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from thanostools.core.chunkenc.aggr import Aggr, aggr_spans
from thanostools.core.errors import CorruptBlockError
from thanostools.core.kernels import binary as kb
from thanostools.core.kernels import labelkeys as labelkeys_kernels
from thanostools.core.tsdb.chunks import ENC_AGGR, ChunkBatch, frame_records, uvarint_sizes
from thanostools.core.tsdb.labelkeys import LabelKeys

COLUMNS = ("series", "mint", "maxt", "enc", "start", "end", "src", "ref", "rank", "buf")


@dataclass
class ChunkTable:
    """Chunk metas as columns. Chunk i's payload is ``bufs[buf[i]][start[i]:end[i]]``, inside its whole record
    (every buffer is framed, see ``ChunkBatch.framed``), so it can be written out as it is."""

    bufs: list[np.ndarray]
    series: np.ndarray  # series id within its batch
    mint: np.ndarray
    maxt: np.ndarray
    enc: np.ndarray
    start: np.ndarray
    end: np.ndarray
    src: np.ndarray  # input number (plan order)
    ref: np.ndarray  # input series ref (tombstones are keyed by it)
    rank: np.ndarray  # position in the input's own chunk order
    buf: np.ndarray  # index into bufs

    @classmethod
    def empty(cls) -> ChunkTable:
        none = np.zeros(0, dtype=np.int64)
        return cls([], *([none] * len(COLUMNS)))

    @classmethod
    def fresh(cls, framed: ChunkBatch, series: np.ndarray, mint: np.ndarray, maxt: np.ndarray) -> ChunkTable:
        """Newly encoded chunks (a framed batch, one chunk per entry of ``series``)."""
        zeros = np.zeros(series.shape[0], dtype=np.int64)
        return cls([framed.buf], np.asarray(series, dtype=np.int64), np.asarray(mint, dtype=np.int64),
                   np.asarray(maxt, dtype=np.int64), framed.encodings, framed.starts, framed.ends, zeros, zeros,
                   zeros, zeros)

    @classmethod
    def encoded(cls, encodings: np.ndarray, buf: np.ndarray, offsets: np.ndarray, series: np.ndarray,
                mint: np.ndarray, maxt: np.ndarray) -> ChunkTable:
        """Chunks given as payloads ``buf[offsets[j]:offsets[j+1]]`` (framed into records here)."""
        return cls.fresh(frame_records(encodings, buf, offsets), series, mint, maxt)

    @staticmethod
    def concat(parts: Sequence[ChunkTable]) -> ChunkTable:
        """Several tables back to back (their buffers kept apart)."""
        bufs: list[np.ndarray] = []
        cols: dict[str, list[np.ndarray]] = {c: [] for c in COLUMNS}
        for p in parts:
            for c in COLUMNS:
                cols[c].append(getattr(p, c) + (len(bufs) if c == "buf" else 0))
            bufs.extend(p.bufs)
        if not parts:
            return ChunkTable.empty()
        return ChunkTable(bufs, *(np.concatenate(cols[c]).astype(np.int64) for c in COLUMNS))

    def pick(self, idx: np.ndarray) -> ChunkTable:
        return ChunkTable(self.bufs, *(getattr(self, c)[idx] for c in COLUMNS))

    def __len__(self) -> int:
        return int(self.series.shape[0])

    def series_bounds(self, num_series: int) -> np.ndarray:
        """For a table ordered by series: series s owns chunks ``bounds[s]:bounds[s+1]``."""
        return np.concatenate([[0], np.cumsum(np.bincount(self.series, minlength=num_series))]).astype(np.int64)

    def by_buffer(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(buffer, positions of its chunks) for every buffer that holds chunks of this table."""
        for b in np.unique(self.buf).tolist():
            yield self.bufs[b], np.flatnonzero(self.buf == b)

    def payloads(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The payloads of chunks ``idx`` back to back -> (bytes, offsets with n+1 entries)."""
        part = self.pick(idx)
        lengths = part.end - part.start
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        out = np.empty(int(offsets[-1]), dtype=np.uint8)
        for buf, at in part.by_buffer():
            kb.scatter_spans(buf, part.start[at], part.end[at], out, offsets[at])
        return out, offsets

    def payload(self, i: int) -> bytes:
        return self.bufs[int(self.buf[i])][int(self.start[i]) : int(self.end[i])].tobytes()

    def one_buffer(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(buffer, starts, ends) of all chunks in one buffer: the table's own when it has one, else a copy."""
        if len(self.bufs) == 1:
            return self.bufs[0], self.start, self.end
        buf, offsets = self.payloads(np.arange(len(self)))
        return buf, offsets[:-1], offsets[1:]

    def sample_counts(self) -> np.ndarray:
        counts = np.zeros(len(self), dtype=np.int64)
        for buf, at in self.by_buffer():
            counts[at] = sample_counts(buf, self.start[at], self.end[at], self.enc[at])
        return counts

    def records(self, allocate: Callable[[int], np.ndarray]) -> tuple[ChunkBatch, Callable[[], None]]:
        """Where the whole records of the chunks go, back to back in table order (a framed batch), and the copy
        that puts them there, for the writer thread to run."""
        head = uvarint_sizes(self.end - self.start) + 1
        sizes = head + (self.end - self.start) + 4
        at = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        out = allocate(int(at[-1]))
        copies = [(buf, self.start[idx] - head[idx], self.end[idx] + 4, at[idx]) for buf, idx in self.by_buffer()]

        def fill() -> None:
            for buf, starts, ends, positions in copies:
                kb.scatter_spans(buf, starts, ends, out, positions)

        starts = at[:-1] + head
        return ChunkBatch(out, starts, starts + (self.end - self.start), self.enc, framed=True), fill


def sample_counts(buf: np.ndarray, start: np.ndarray, end: np.ndarray, enc: np.ndarray) -> np.ndarray:
    """Samples per chunk from the be16 chunk headers; an AggrChunk counts its count aggregate's samples."""
    start = start.copy()
    aggr = np.flatnonzero(enc == ENC_AGGR)
    if aggr.size:
        sub_start, sub_end, _ = aggr_spans(buf, start[aggr], end[aggr], Aggr.COUNT)
        start[aggr] = np.where(sub_end - sub_start >= 2, sub_start, -1)
    short = np.flatnonzero((start < 0) | (end - start < 2))
    counts = np.zeros(start.shape[0], dtype=np.int64)
    ok = np.flatnonzero((start >= 0) & (end - start >= 2))
    counts[ok] = (buf[start[ok]].astype(np.int64) << 8) | buf[start[ok] + 1].astype(np.int64)
    if short.size and bool((enc[short] != ENC_AGGR).any()):
        raise CorruptBlockError("chunk shorter than its 2-byte header")
    return counts


@dataclass
class ChunkedSeries:
    """Series (label sets as keys) and their chunks: as read, input after input, each in index order; after
    a modifier, by series then time. ``refs[s]``: series s's ref in the (first) input holding it. ``counts``:
    samples per chunk when a stage already knows them."""

    labels: LabelKeys
    refs: np.ndarray
    chunks: ChunkTable
    counts: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def sample_counts(self) -> np.ndarray:
        if self.counts is None:
            self.counts = self.chunks.sample_counts()
        return self.counts

    def series_samples(self) -> np.ndarray:
        """Samples per series."""
        return np.bincount(self.chunks.series, weights=self.sample_counts(), minlength=len(self)).astype(np.int64)

    def each(self) -> Iterator[ChunkedSeries]:
        """One series at a time (chunks ordered by series), for callers that look at series one by one."""
        bounds = self.chunks.series_bounds(len(self)).tolist()
        counts = self.counts
        for s in range(len(self)):
            rows = np.arange(bounds[s], bounds[s + 1])
            chunks = self.chunks.pick(rows)
            chunks.series = np.zeros(rows.shape[0], dtype=np.int64)
            yield ChunkedSeries(self.labels.take(np.array([s])), self.refs[s : s + 1], chunks,
                                None if counts is None else counts[rows])

    def take(self, idx: np.ndarray) -> ChunkedSeries:
        """Series ``idx`` (increasing) with their chunks, numbered anew."""
        idx = np.asarray(idx, dtype=np.int64)
        renumber = np.full(len(self), -1, dtype=np.int64)
        renumber[idx] = np.arange(idx.shape[0])
        rows = np.flatnonzero(renumber[self.chunks.series] >= 0)
        chunks = self.chunks.pick(rows)
        chunks.series = renumber[chunks.series]
        counts = None if self.counts is None else self.counts[rows]
        return ChunkedSeries(self.labels.take(idx), self.refs[idx], chunks, counts)

    @staticmethod
    def concat(parts: Sequence[ChunkedSeries]) -> ChunkedSeries:
        """Batches back to back (over one symbol table)."""
        tables = []
        base = 0
        for p in parts:
            table = p.chunks.pick(np.arange(len(p.chunks)))
            table.series = table.series + base
            tables.append(table)
            base += len(p)
        counts = None if any(p.counts is None for p in parts) else np.concatenate([p.counts for p in parts
                                                                                   if p.counts is not None])
        return ChunkedSeries(LabelKeys.concat([p.labels for p in parts]), np.concatenate([p.refs for p in parts]),
                             ChunkTable.concat(tables), counts)


def equal_to_previous(labels: LabelKeys) -> np.ndarray:
    """For label sets in order: whether each equals the one before it."""
    return labelkeys_kernels.not_after_previous(labels.keys, labels.offsets)
