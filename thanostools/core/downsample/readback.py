"""Histogram aggregates read back for queries (FORMATS.md §7.8): the average ``sum / count`` of each window, and
the counter histograms made one monotone series (§7.6).

Thanos' counter iterator passes histograms through untouched; here they get the reset handling float counters
get, so a series stays monotone across chunks and blocks. Histogram counter chunks carry no "true last raw
value", so the first histogram of a chunk is compared with the previous chunk's last running total: when that
chunk held a reset, its total is above the raw value and the boundary counts as a reset.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from thanostools.core.chunkenc import histogram as hc
from thanostools.core.constants import STALE_NAN_BITS
from thanostools.core.downsample import histkernels
from thanostools.core.downsample.histseries import FloatHists, concat_hists, float_hists
from thanostools.core.errors import UnsupportedError
from thanostools.core.histograms import HistogramBatch, HistogramLayouts, gather_ranges, take_samples
from thanostools.core.kernels.dtypes import F64, I64, U8
from thanostools.core.series import KIND_FLOAT_HISTOGRAM, KIND_INT_HISTOGRAM, HistogramColumns


def average_histograms(sums: HistogramBatch, rows: I64, counts: F64) -> HistogramBatch:
    """The sum histograms ``rows`` of ``sums`` divided by ``counts`` (Thanos' ``FloatHistogram.Div``), as float
    histograms keeping their chunks' headers and hints."""
    part = take_samples(sums, rows)
    per_bucket = np.repeat(counts, np.diff(part.bucket_offsets))
    with np.errstate(divide="ignore", invalid="ignore"):
        return replace(
            part, is_float=True, encoding=np.full(part.encoding.shape[0], hc.ENC_FLOAT_HISTOGRAM, np.uint8),
            count=part.count / counts, zero_count=part.zero_count / counts,
            sum_bits=(part.sum / counts).view(np.uint64), buckets=part.buckets / per_bucket)


def hists_of(cols: HistogramColumns, rows: I64) -> FloatHists:
    """The histogram rows ``rows`` of a batch's histogram part as float histograms, in ``rows`` order."""
    kind = cols.kind[rows]
    is_int = kind == KIND_INT_HISTOGRAM
    is_float = kind == KIND_FLOAT_HISTOGRAM
    if not bool((is_int | is_float).all()):
        raise ValueError("hists_of takes histogram rows only")
    parts = [float_hists(take_samples(cols.ints, cols.row[rows[is_int]])),
             float_hists(take_samples(cols.floats, cols.row[rows[is_float]]))]
    both = concat_hists(parts)
    order = np.concatenate([np.flatnonzero(is_int), np.flatnonzero(is_float)])
    back = np.empty(order.shape[0], np.int64)
    back[order] = np.arange(order.shape[0])
    return both.take(back)


def counter_histograms(h: FloatHists) -> tuple[I64, HistogramBatch]:
    """One series' counter histograms (time order, stale markers allowed) as a monotone running total: (the
    rows of ``h`` that gave a sample, the totals as float histograms in the series' smallest schema)."""
    live = np.flatnonzero(h.total.view(np.uint64) != np.uint64(STALE_NAN_BITS))
    h = h.take(live)
    if len(h) == 0:
        return live, histogram_batch(h)
    target = int(h.schema.min())
    if bool((h.zero_threshold != h.zero_threshold[0]).any()):
        bad = int(np.flatnonzero(h.zero_threshold != h.zero_threshold[0])[0])
        raise UnsupportedError(f"native histogram counters change their zero threshold at t={int(h.t[bad])}")
    delta = h.schema - target
    p_off, p_idx, p_val = histkernels.reduce_buckets(h.p_off, h.p_idx, h.p_val, delta)
    n_off, n_idx, n_val = histkernels.reduce_buckets(h.n_off, h.n_idx, h.n_val, delta)
    with np.errstate(invalid="ignore", over="ignore"):
        rows, cnt, zc, total, hint, b_off, b_idx, b_val = histkernels.counter_totals(
            np.array([0, len(h)], np.int64), h.t, h.hint, h.schema, h.count, h.zero_count, h.total,
            p_off, p_idx, p_val, n_off, n_idx, n_val)
    pos, neg = _side_rows(b_off, 0), _side_rows(b_off, 1)
    out = FloatHists(
        t=h.t[rows], hint=hint, schema=np.full(rows.shape[0], target, np.int64),
        zero_threshold=h.zero_threshold[rows], count=cnt, zero_count=zc, total=total,
        p_off=_offsets(b_off[1::2] - b_off[0:-1:2]), p_idx=b_idx[pos], p_val=b_val[pos],
        n_off=_offsets(b_off[2::2] - b_off[1::2]), n_idx=b_idx[neg], n_val=b_val[neg])
    return live[rows], histogram_batch(out)


def _offsets(sizes: I64) -> I64:
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


def _side_rows(b_off: I64, side: int) -> I64:
    """Indexes into b_idx/b_val of one side's buckets of every sample (``b_off`` alternates the sides)."""
    return gather_ranges(b_off[side:-1:2], b_off[side + 1 :: 2])


def _spans(off: I64, idx: I64) -> tuple[I64, I64, I64]:
    """Spans of every sample's sorted bucket indices: (sample, offset, length) per span (H9.3)."""
    sample_of = np.repeat(np.arange(off.shape[0] - 1), np.diff(off))
    new = np.ones(idx.shape[0], dtype=bool)
    new[1:] = (idx[1:] != idx[:-1] + 1) | (sample_of[1:] != sample_of[:-1])
    first = np.flatnonzero(new)
    length = np.diff(np.append(first, idx.shape[0]))
    span_sample = sample_of[first]
    prev_end = np.zeros(first.shape[0], np.int64)
    prev_end[1:] = idx[first[1:] - 1] + 1
    opens_sample = np.ones(first.shape[0], dtype=bool)
    opens_sample[1:] = span_sample[1:] != span_sample[:-1]
    prev_end[opens_sample] = 0
    return span_sample, idx[first] - prev_end, length


def histogram_batch(h: FloatHists) -> HistogramBatch:
    """Float histograms with absolute bucket indices as one float-histogram chunk, one layout per sample."""
    n = len(h)
    sides = (_spans(h.p_off, h.p_idx), _spans(h.n_off, h.n_idx))
    key = np.concatenate([2 * sides[0][0], 2 * sides[1][0] + 1])
    order = np.argsort(key, kind="stable")
    span_bounds = np.searchsorted(key[order], np.arange(2 * n + 1), side="left").astype(np.int64)
    n_pos, n_neg = np.diff(h.p_off), np.diff(h.n_off)
    bucket_key = np.concatenate([2 * np.repeat(np.arange(n), n_pos), 2 * np.repeat(np.arange(n), n_neg) + 1])
    buckets = np.concatenate([h.p_val, h.n_val])[np.argsort(bucket_key, kind="stable")]
    layouts = HistogramLayouts(
        schema=h.schema.astype(np.int32), zero_threshold=h.zero_threshold.astype(np.float64),
        n_pos=n_pos.astype(np.int64), n_neg=n_neg.astype(np.int64), span_bounds=span_bounds,
        span_offset=np.concatenate([sides[0][1], sides[1][1]])[order].astype(np.int32),
        span_length=np.concatenate([sides[0][2], sides[1][2]])[order].astype(np.uint32),
        custom_bounds=np.zeros(n + 1, np.int64), custom_values=np.zeros(0, np.float64))
    hint: U8 = h.hint.astype(np.uint8)
    return HistogramBatch(
        is_float=True, offsets=np.array([0, n], np.int64), encoding=np.array([hc.ENC_FLOAT_HISTOGRAM], np.uint8),
        header=np.array([hc.HEADER_UNKNOWN], np.uint8), t=h.t.astype(np.int64), st=np.zeros(n, np.int64),
        hint=hint, count=h.count.astype(np.float64), zero_count=h.zero_count.astype(np.float64),
        sum_bits=h.total.astype(np.float64).view(np.uint64), layout=np.arange(n, dtype=np.int64),
        bucket_offsets=_offsets(n_pos + n_neg), buckets=buckets,
        layouts=layouts)
