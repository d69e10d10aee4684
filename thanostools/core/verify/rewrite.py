"""Rewrite a block without the chunks the index health check complains about (source ``bucket.repair``).

Dropped: chunks completely outside the block range, Issue-347 chunks (starting at maxTime) and
duplicated chunks (same range, same bytes). Label pairs are re-sorted and series re-ordered when the
index had them out of order; series that end up with the same labels are merged. Anything else
(chunks partly outside the range, overlapping chunks with different data) stops the rewrite.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from thanostools.core.constants import RESOLUTION_RAW
from thanostools.core.errors import HaltError
from thanostools.core.labels import Labels, format_labels
from thanostools.core.tsdb.block import Block
from thanostools.core.tsdb.meta import SOURCE_BUCKET_REPAIR, BlockMeta
from thanostools.core.tsdb.series_chunks import iter_series_chunks
from thanostools.core.tsdb.writer import BlockWriter


@dataclass
class RewriteStats:
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


@dataclass
class _Series:
    """One series' chunks in owned arrays: chunk j is ``buf[offsets[j]:offsets[j+1]]``."""

    labels: Labels
    mint: np.ndarray
    maxt: np.ndarray
    enc: np.ndarray
    buf: np.ndarray
    offsets: np.ndarray

    def chunk(self, j: int) -> np.ndarray:
        return self.buf[int(self.offsets[j]) : int(self.offsets[j + 1])]

    def take(self, idx: np.ndarray) -> _Series:
        if idx.shape[0] == self.mint.shape[0] and bool((idx == np.arange(idx.shape[0])).all()):
            return self
        parts = [self.chunk(int(j)) for j in idx.tolist()]
        sizes = np.array([p.shape[0] for p in parts], np.int64)
        buf = np.concatenate(parts) if parts else np.zeros(0, np.uint8)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        return _Series(self.labels, self.mint[idx], self.maxt[idx], self.enc[idx], buf, offsets)

    def merge(self, other: _Series) -> _Series:
        offsets = np.concatenate([self.offsets, other.offsets[1:] + self.offsets[-1]])
        return _Series(self.labels, np.concatenate([self.mint, other.mint]), np.concatenate([self.maxt, other.maxt]),
                       np.concatenate([self.enc, other.enc]), np.concatenate([self.buf, other.buf]), offsets)

    def num_samples(self) -> int:
        """XOR chunks start with a big-endian uint16 sample count."""
        starts = self.offsets[:-1]
        if starts.shape[0] == 0:
            return 0
        return int(((self.buf[starts].astype(np.int64) << 8) | self.buf[starts + 1]).sum())


def _sanitize(s: _Series, lo: int, hi: int, stats: RewriteStats) -> _Series:
    s = s.take(np.argsort(s.mint, kind="stable"))
    outside = (s.mint < lo) | (s.maxt > hi)
    complete = outside & ((s.mint > hi) | (s.maxt < lo))
    issue347 = outside & ~complete & (s.mint == hi)
    if bool((outside & ~complete & ~issue347).any()):
        j = int(np.flatnonzero(outside & ~complete & ~issue347)[0])
        raise HaltError(f"series {format_labels(s.labels)}: chunk [{s.mint[j]}, {s.maxt[j]}] is partly outside "
                        f"the block range [{lo}, {hi}]; dropping it would lose samples")
    stats.dropped_outsiders += int(complete.sum())
    stats.dropped_issue347 += int(issue347.sum())
    s = s.take(np.flatnonzero(~(complete | issue347)))
    overlap = np.flatnonzero(s.mint[1:] <= s.maxt[:-1]) + 1
    drop = np.zeros(s.mint.shape[0], bool)
    for j in overlap.tolist():
        same_range = s.mint[j] == s.mint[j - 1] and s.maxt[j] == s.maxt[j - 1]
        if not same_range or not np.array_equal(s.chunk(j), s.chunk(j - 1)) or s.enc[j] != s.enc[j - 1]:
            raise HaltError(f"series {format_labels(s.labels)}: chunks [{s.mint[j - 1]}, {s.maxt[j - 1]}] and "
                            f"[{s.mint[j]}, {s.maxt[j]}] overlap with different data")
        drop[j] = True
    stats.dropped_duplicates += int(drop.sum())
    return s.take(np.flatnonzero(~drop))


def _sorted_order(block: Block) -> tuple[np.ndarray, dict[int, Labels]]:
    """Series refs ordered by their label sets with label pairs sorted, and those label sets."""
    fixed: dict[int, Labels] = {}
    for raw in block.index.iter_series_raw():
        for ref, lab in zip(raw.refs.tolist(), block.index.labels_of(raw), strict=True):
            fixed[ref] = tuple(sorted(lab))
    order = sorted(fixed, key=lambda r: (fixed[r], r))
    return np.array(order, dtype=np.int64), fixed


def _series_stream(block: Block, reorder: bool, batch_size: int) -> Iterator[_Series]:
    refs, fixed = _sorted_order(block) if reorder else (None, {})
    for sc in iter_series_chunks(block, refs, batch_size=batch_size):
        buf, offsets = sc.contiguous()
        yield _Series(fixed.get(sc.ref, sc.labels), sc.mint, sc.maxt, sc.encodings, buf.copy(), offsets)


def _merged(stream: Iterator[_Series], stats: RewriteStats) -> Iterator[_Series]:
    """Consecutive series with equal labels become one."""
    pending: _Series | None = None
    for s in stream:
        stats.series_in += 1
        stats.chunks_in += int(s.mint.shape[0])
        if pending is not None and pending.labels == s.labels:
            pending = pending.merge(s)
            stats.merged_series += 1
            continue
        if pending is not None:
            yield pending
        pending = s
    if pending is not None:
        yield pending


def _writer(meta: BlockMeta, out_dir: str) -> BlockWriter:
    parents = [{"ulid": p.ulid, "minTime": p.min_time, "maxTime": p.max_time} for p in meta.parents]
    return BlockWriter(out_dir, min_time=meta.min_time, max_time=meta.max_time,
                       external_labels=dict(meta.external_labels), resolution=meta.resolution,
                       source=SOURCE_BUCKET_REPAIR, level=meta.level, sources=meta.sources or [meta.ulid],
                       parents=parents, extensions=meta.thanos.extensions if meta.thanos else None)


def rewrite_repaired(block: Block, out_dir: str, *, reorder: bool = False,
                     batch_size: int = 5000) -> tuple[BlockMeta, str, RewriteStats]:
    """Write the repaired copy of ``block`` under ``out_dir``; returns (meta, block directory, stats).

    The new block keeps the range, labels, level and sources of the original (as Thanos' repair does).
    """
    meta = block.meta
    if meta.resolution != RESOLUTION_RAW:
        raise HaltError(f"block {meta.ulid} is downsampled; downsampled blocks are not repaired")
    if block.tombstones:
        raise HaltError(f"block {meta.ulid} has tombstones; compact it before repairing")
    stats = RewriteStats()
    writer = _writer(meta, out_dir)
    try:
        for s in _merged(_series_stream(block, reorder, batch_size), stats):
            s = _sanitize(s, meta.min_time, meta.max_time, stats)
            if s.mint.shape[0] == 0:
                continue
            try:
                writer.add_chunks(s.labels, s.enc, s.buf, s.offsets, s.mint, s.maxt, s.num_samples())
            except ValueError as exc:  # series order: only when the index was unsorted and reorder was off
                raise HaltError(f"block {meta.ulid}: {exc}") from None
            stats.series_out += 1
            stats.chunks_out += int(s.mint.shape[0])
        new_meta = writer.finish()
    except BaseException:
        writer.abort()
        raise
    return new_meta, writer.dir, stats
