"""One series at a time with its raw chunks, in index order: for comparing blocks series by series (verify) and
tests. Block rewrites go through ``core/pipeline`` instead, many series at a time."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from thanostools.core.labels import Labels
from thanostools.core.tsdb.block import Block
from thanostools.core.tsdb.chunks import ChunkBatch
from thanostools.core.tsdb.index import SeriesBatch


@dataclass(frozen=True)
class SeriesChunks:
    """One series and its chunks as stored: chunk j is ``buf[starts[j]:ends[j]]`` with ``encodings[j]``."""

    labels: Labels
    ref: int
    mint: np.ndarray
    maxt: np.ndarray
    encodings: np.ndarray
    buf: np.ndarray
    starts: np.ndarray
    ends: np.ndarray

    def contiguous(self) -> tuple[np.ndarray, np.ndarray]:
        """(buffer, offsets) such that chunk j is ``buffer[offsets[j]:offsets[j+1]]`` — what BlockWriter takes."""
        if self.starts.size and bool((self.starts[1:] == self.ends[:-1]).all()):
            base = int(self.starts[0])
            return self.buf[base : int(self.ends[-1])], np.append(self.starts - base, self.ends[-1] - base)
        parts = [self.buf[a:b] for a, b in zip(self.starts.tolist(), self.ends.tolist(), strict=True)]
        sizes = np.array([p.shape[0] for p in parts], np.int64)
        return (np.concatenate(parts) if parts else np.zeros(0, np.uint8),
                np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64))


def iter_series_chunks(block: Block, refs: np.ndarray | None = None, *, batch_size: int = 5000,
                       check_crc: bool = True) -> Iterator[SeriesChunks]:
    """Every series of ``block`` (or of ``refs``) in index order, with its chunks read in batches."""
    for sb in block.index.iter_series(refs, batch_size=batch_size):
        batch = block.chunks.read(sb.chunk_ref, check_crc=check_crc)
        yield from _split(sb, batch)


def _split(sb: SeriesBatch, batch: ChunkBatch) -> Iterator[SeriesChunks]:
    offs = sb.chunk_offsets.tolist()
    for i, labels in enumerate(sb.labels):
        a, b = offs[i], offs[i + 1]
        yield SeriesChunks(labels, int(sb.refs[i]), sb.chunk_mint[a:b], sb.chunk_maxt[a:b], batch.encodings[a:b],
                           batch.buf, batch.starts[a:b], batch.ends[a:b])
