"""Are two blocks exact duplicates (same series, same samples)? Streams both blocks in label order."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import zip_longest

import numpy as np

from thanostools.core.chunkenc import xor
from thanostools.core.labels import format_labels
from thanostools.core.pipeline.read import each_series
from thanostools.core.pipeline.table import ChunkedSeries
from thanostools.core.tsdb.block import Block


@dataclass(frozen=True)
class Comparison:
    identical: bool
    reason: str = ""
    series: int = 0


def _samples(s: ChunkedSeries) -> tuple[np.ndarray, np.ndarray] | None:
    """All samples of a float (XOR, XOR2) series, or None for other encodings (compared as bytes only)."""
    if not bool(np.isin(s.chunks.enc, xor.FLOAT_ENCODINGS).all()):
        return None
    dec = xor.decode_batch(*s.chunks.one_buffer(), s.chunks.enc)
    return dec.t, dec.v


def _same_bytes(a: ChunkedSeries, b: ChunkedSeries) -> bool:
    if not np.array_equal(a.chunks.enc, b.chunks.enc):
        return False
    abuf, aoff = a.chunks.payloads(np.arange(len(a.chunks)))
    bbuf, boff = b.chunks.payloads(np.arange(len(b.chunks)))
    return np.array_equal(aoff, boff) and np.array_equal(abuf, bbuf)


def _same_series(a: ChunkedSeries, b: ChunkedSeries) -> str:
    """"" when both hold the same samples, else why not."""
    if _same_bytes(a, b):
        return ""
    sa, sb = _samples(a), _samples(b)
    name = format_labels(a.labels.labels(0))
    if sa is None or sb is None:
        return f"series {name}: chunks differ"
    if not np.array_equal(sa[0], sb[0]):
        return f"series {name}: timestamps differ ({sa[0].shape[0]} vs {sb[0].shape[0]} samples)"
    if not np.array_equal(sa[1], sb[1]):
        return f"series {name}: values differ"
    return ""


def compare_blocks(a: Block, b: Block, *, batch_size: int = 2000) -> Comparison:
    """Walk both blocks series by series; stop at the first difference. Memory: one batch per block."""
    n = 0
    for sa, sb in zip_longest(each_series(a, batch_series=batch_size), each_series(b, batch_series=batch_size)):
        if sa is None or sb is None:
            extra = sb if sa is None else sa
            assert extra is not None
            owner = b.ulid if sa is None else a.ulid
            return Comparison(False, f"only {owner} has series {format_labels(extra.labels.labels(0))}", n)
        la, lb = sa.labels.labels(0), sb.labels.labels(0)
        if la != lb:
            first = min(la, lb)
            owner = a.ulid if first == la else b.ulid
            return Comparison(False, f"only {owner} has series {format_labels(first)}", n)
        why = _same_series(sa, sb)
        if why:
            return Comparison(False, why, n)
        n += 1
    return Comparison(True, "", n)
