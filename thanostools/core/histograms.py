"""The in-memory form of native-histogram samples, shared by the chunk codec (``chunkenc/histogram.py``, whose
module docstring describes the columns), the storage contract (``series.py``) and everything above it.

It lives outside ``chunkenc`` because the PromQL engine may know storage only through ``series.py``, never
chunk formats.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from thanostools.core.constants import STALE_NAN_BITS
from thanostools.core.kernels.dtypes import I64, U64


@dataclass(frozen=True)
class HistogramLayouts:
    """Layout table: schema, zero threshold, spans and custom bounds per layout id."""

    schema: NDArray[np.int32]
    zero_threshold: NDArray[np.float64]
    n_pos: I64
    n_neg: I64
    span_bounds: I64
    span_offset: NDArray[np.int32]
    span_length: NDArray[np.uint32]
    custom_bounds: I64
    custom_values: NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.schema.shape[0])

    def spans(self, layout: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """(positive, negative) spans of one layout as (offset, length) pairs."""
        b = self.span_bounds
        sides = ((int(b[2 * layout]), int(b[2 * layout + 1])), (int(b[2 * layout + 1]), int(b[2 * layout + 2])))
        pos, neg = ([(int(self.span_offset[j]), int(self.span_length[j])) for j in range(lo, hi)] for lo, hi in sides)
        return pos, neg

    def custom(self, layout: int) -> NDArray[np.float64]:
        return self.custom_values[self.custom_bounds[layout] : self.custom_bounds[layout + 1]]

    def indices(self, layout: int) -> tuple[list[int], list[int]]:
        """Bucket indices of the positive and negative side (H1.3)."""
        return tuple(_indices(side) for side in self.spans(layout))  # type: ignore[return-value]


def _indices(spans: list[tuple[int, int]]) -> list[int]:
    out: list[int] = []
    i = 0
    for offset, length in spans:
        i += offset
        out.extend(range(i, i + length))
        i += length
    return out


@dataclass(frozen=True)
class HistogramBatch:
    """Histogram samples of many chunks of one kind (see the module docstring)."""

    is_float: bool
    offsets: I64
    encoding: NDArray[np.uint8]
    header: NDArray[np.uint8]
    t: I64
    st: I64
    hint: NDArray[np.uint8]
    count: NDArray[Any]
    zero_count: NDArray[Any]
    sum_bits: U64
    layout: I64
    bucket_offsets: I64
    buckets: NDArray[Any]
    layouts: HistogramLayouts

    def __len__(self) -> int:
        return int(self.t.shape[0])

    @property
    def num_chunks(self) -> int:
        return int(self.offsets.shape[0] - 1)

    @property
    def stale(self) -> NDArray[np.bool_]:
        stale: NDArray[np.bool_] = self.sum_bits == np.uint64(STALE_NAN_BITS)
        return stale

    @property
    def sum(self) -> NDArray[np.float64]:
        return self.sum_bits.view(np.float64)

    def sample_buckets(self, s: int) -> tuple[NDArray[Any], NDArray[Any]]:
        """(positive, negative) absolute bucket counts of sample s (both empty for a stale marker)."""
        lo, hi = int(self.bucket_offsets[s]), int(self.bucket_offsets[s + 1])
        npos = int(self.layouts.n_pos[self.layout[s]]) if hi > lo else 0
        return self.buckets[lo : lo + npos], self.buckets[lo + npos : hi]


def _shifted(parts: Sequence[I64], shifts: Sequence[int]) -> I64:
    """Bound arrays (leading 0, one entry per item) of consecutive tables, as one bound array."""
    tails = [p[1:] + s for p, s in zip(parts, shifts, strict=True)]
    return np.concatenate([np.zeros(1, np.int64), *tails]).astype(np.int64)


def concat_layouts(tables: Sequence[HistogramLayouts]) -> HistogramLayouts:
    """One layout table holding the given ones back to back (layout ids of table k shift by the sizes before)."""
    spans_before = np.cumsum([0] + [int(x.span_offset.shape[0]) for x in tables])[:-1].tolist()
    custom_before = np.cumsum([0] + [int(x.custom_values.shape[0]) for x in tables])[:-1].tolist()
    pairs = [x.span_bounds[1:].reshape(-1, 2) + s for x, s in zip(tables, spans_before, strict=True)]
    span_bounds = np.concatenate([np.zeros(1, np.int64), *[p.reshape(-1) for p in pairs]]).astype(np.int64)
    return HistogramLayouts(
        schema=np.concatenate([x.schema for x in tables]).astype(np.int32),
        zero_threshold=np.concatenate([x.zero_threshold for x in tables]).astype(np.float64),
        n_pos=np.concatenate([x.n_pos for x in tables]).astype(np.int64),
        n_neg=np.concatenate([x.n_neg for x in tables]).astype(np.int64),
        span_bounds=span_bounds,
        span_offset=np.concatenate([x.span_offset for x in tables]).astype(np.int32),
        span_length=np.concatenate([x.span_length for x in tables]).astype(np.uint32),
        custom_bounds=_shifted([x.custom_bounds for x in tables], custom_before),
        custom_values=np.concatenate([x.custom_values for x in tables]).astype(np.float64),
    )


def concat_histogram_batches(batches: Sequence[HistogramBatch], *, is_float: bool) -> HistogramBatch:
    """The chunks of several batches of one kind as one batch, in order (layout tables concatenated)."""
    if len(batches) == 1:
        return batches[0]
    if not batches:
        return empty_histogram_batch(is_float=is_float)
    value_type = np.float64 if is_float else np.int64
    samples_before = np.cumsum([0] + [len(b) for b in batches])[:-1].tolist()
    buckets_before = np.cumsum([0] + [int(b.buckets.shape[0]) for b in batches])[:-1].tolist()
    layouts_before = np.cumsum([0] + [len(b.layouts) for b in batches])[:-1].tolist()
    return HistogramBatch(
        is_float=is_float,
        offsets=_shifted([b.offsets for b in batches], samples_before),
        encoding=np.concatenate([b.encoding for b in batches]).astype(np.uint8),
        header=np.concatenate([b.header for b in batches]).astype(np.uint8),
        t=np.concatenate([b.t for b in batches]).astype(np.int64),
        st=np.concatenate([b.st for b in batches]).astype(np.int64),
        hint=np.concatenate([b.hint for b in batches]).astype(np.uint8),
        count=np.concatenate([b.count for b in batches]).astype(value_type),
        zero_count=np.concatenate([b.zero_count for b in batches]).astype(value_type),
        sum_bits=np.concatenate([b.sum_bits for b in batches]).astype(np.uint64),
        layout=np.concatenate([b.layout + s for b, s in zip(batches, layouts_before, strict=True)]).astype(np.int64),
        bucket_offsets=_shifted([b.bucket_offsets for b in batches], buckets_before),
        buckets=np.concatenate([b.buckets for b in batches]).astype(value_type),
        layouts=concat_layouts([b.layouts for b in batches]),
    )


def empty_histogram_batch(*, is_float: bool) -> HistogramBatch:
    value_type = np.float64 if is_float else np.int64
    i64 = np.zeros(0, np.int64)
    layouts = HistogramLayouts(
        schema=np.zeros(0, np.int32), zero_threshold=np.zeros(0, np.float64), n_pos=i64, n_neg=i64,
        span_bounds=np.zeros(1, np.int64), span_offset=np.zeros(0, np.int32), span_length=np.zeros(0, np.uint32),
        custom_bounds=np.zeros(1, np.int64), custom_values=np.zeros(0, np.float64),
    )
    return HistogramBatch(
        is_float=is_float, offsets=np.zeros(1, np.int64), encoding=np.zeros(0, np.uint8), header=np.zeros(0, np.uint8),
        t=i64, st=i64, hint=np.zeros(0, np.uint8), count=np.zeros(0, value_type), zero_count=np.zeros(0, value_type),
        sum_bits=np.zeros(0, np.uint64), layout=i64, bucket_offsets=np.zeros(1, np.int64),
        buckets=np.zeros(0, value_type), layouts=layouts,
    )


def gather_ranges(starts: I64, ends: I64) -> I64:
    """Indexes of the ranges ``[starts[i], ends[i])`` back to back."""
    lengths = ends - starts
    return np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(int(lengths.sum()), dtype=np.int64)


def take_layouts(table: HistogramLayouts, ids: I64) -> HistogramLayouts:
    """The layouts ``ids`` of a table, as a table of their own (new id i is old id ``ids[i]``)."""
    b = table.span_bounds
    pos_start, neg_start, end = b[2 * ids], b[2 * ids + 1], b[2 * ids + 2]
    span_idx = gather_ranges(pos_start, end)
    n_spans = end - pos_start
    new_end = np.cumsum(n_spans)
    span_bounds = np.zeros(2 * ids.shape[0] + 1, np.int64)
    span_bounds[2::2] = new_end
    span_bounds[1::2] = new_end - n_spans + (neg_start - pos_start)
    cv_start, cv_end = table.custom_bounds[ids], table.custom_bounds[ids + 1]
    return HistogramLayouts(
        schema=table.schema[ids], zero_threshold=table.zero_threshold[ids], n_pos=table.n_pos[ids],
        n_neg=table.n_neg[ids], span_bounds=span_bounds, span_offset=table.span_offset[span_idx],
        span_length=table.span_length[span_idx],
        custom_bounds=np.concatenate([[0], np.cumsum(cv_end - cv_start)]).astype(np.int64),
        custom_values=table.custom_values[gather_ranges(cv_start, cv_end)],
    )


def take_samples(batch: HistogramBatch, rows: I64) -> HistogramBatch:
    """The samples ``rows`` of a batch as a batch of their own, holding only the layouts they use. Each sample
    becomes a chunk of its own (keeping its chunk's encoding and header), so nothing a sample carries is lost."""
    chunk = np.searchsorted(batch.offsets, rows, side="right") - 1
    used, layout = np.unique(batch.layout[rows], return_inverse=True)
    b_start, b_end = batch.bucket_offsets[rows], batch.bucket_offsets[rows + 1]
    return HistogramBatch(
        is_float=batch.is_float, offsets=np.arange(rows.shape[0] + 1, dtype=np.int64),
        encoding=batch.encoding[chunk], header=batch.header[chunk], t=batch.t[rows], st=batch.st[rows],
        hint=batch.hint[rows], count=batch.count[rows], zero_count=batch.zero_count[rows],
        sum_bits=batch.sum_bits[rows], layout=layout.reshape(-1).astype(np.int64),
        bucket_offsets=np.concatenate([[0], np.cumsum(b_end - b_start)]).astype(np.int64),
        buckets=batch.buckets[gather_ranges(b_start, b_end)],
        layouts=take_layouts(batch.layouts, used.astype(np.int64)),
    )
