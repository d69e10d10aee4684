"""Are two blocks exact duplicates (same series, same samples)? Streams both blocks in label order."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import zip_longest

import numpy as np

from thanostools.core.chunkenc import xor
from thanostools.core.labels import format_labels
from thanostools.core.tsdb.block import Block
from thanostools.core.tsdb.chunks import ENC_XOR
from thanostools.core.tsdb.series_chunks import SeriesChunks, iter_series_chunks


@dataclass(frozen=True)
class Comparison:
    identical: bool
    reason: str = ""
    series: int = 0


def _samples(s: SeriesChunks) -> tuple[np.ndarray, np.ndarray] | None:
    """All samples of an XOR series, or None for other encodings (compared as bytes only)."""
    if not bool((s.encodings == ENC_XOR).all()):
        return None
    dec = xor.decode_batch(s.buf, s.starts, s.ends)
    return dec.t, dec.v


def _same_bytes(a: SeriesChunks, b: SeriesChunks) -> bool:
    if a.encodings.shape != b.encodings.shape or not np.array_equal(a.encodings, b.encodings):
        return False
    abuf, aoff = a.contiguous()
    bbuf, boff = b.contiguous()
    return np.array_equal(aoff, boff) and np.array_equal(abuf, bbuf)


def _same_series(a: SeriesChunks, b: SeriesChunks) -> str:
    """"" when both hold the same samples, else why not."""
    if _same_bytes(a, b):
        return ""
    sa, sb = _samples(a), _samples(b)
    if sa is None or sb is None:
        return f"series {format_labels(a.labels)}: chunks differ"
    if not np.array_equal(sa[0], sb[0]):
        return f"series {format_labels(a.labels)}: timestamps differ ({sa[0].shape[0]} vs {sb[0].shape[0]} samples)"
    if not np.array_equal(sa[1], sb[1]):
        return f"series {format_labels(a.labels)}: values differ"
    return ""


def _series(block: Block, batch_size: int) -> Iterator[SeriesChunks]:
    return iter_series_chunks(block, batch_size=batch_size)


def compare_blocks(a: Block, b: Block, *, batch_size: int = 2000) -> Comparison:
    """Walk both blocks series by series; stop at the first difference. Memory: one batch per block."""
    n = 0
    for sa, sb in zip_longest(_series(a, batch_size), _series(b, batch_size)):
        if sa is None or sb is None:
            extra = sb if sa is None else sa
            assert extra is not None
            owner = b.ulid if sa is None else a.ulid
            return Comparison(False, f"only {owner} has series {format_labels(extra.labels)}", n)
        if sa.labels != sb.labels:
            first = min(sa.labels, sb.labels)
            owner = a.ulid if first == sa.labels else b.ulid
            return Comparison(False, f"only {owner} has series {format_labels(first)}", n)
        why = _same_series(sa, sb)
        if why:
            return Comparison(False, why, n)
        n += 1
    return Comparison(True, "", n)
