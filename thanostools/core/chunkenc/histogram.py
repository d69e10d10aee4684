"""Native-histogram chunks (encodings 2, 3, 5, 6; HISTOGRAMS.md): a columnar batch, decode/encode over numba.

**The batch** (:class:`HistogramBatch`) holds the samples of many chunks of ONE kind — integer histograms
(encodings 2/5: exact ``int64`` counts) or float histograms (3/6: ``float64``) — because the two kinds need
different arithmetic everywhere downstream; :func:`decode_by_kind` splits a mixed selection into two batches.
Chunk ``i`` owns samples ``offsets[i]:offsets[i+1]`` (like ``xor.DecodedBatch``). Per sample:

* ``t`` (int64 ms), ``st`` (int64 start timestamp; 0 unless the chunk was an ST encoding, H11),
* ``hint`` (uint8, the counter-reset hint of H8.2/H8.3: ``HINT_UNKNOWN`` 0, ``HINT_RESET`` 1,
  ``HINT_NOT_RESET`` 2, ``HINT_GAUGE`` 3 — the in-memory enum, not the chunk-header bits),
* ``count``, ``zero_count`` (int64 or float64), ``sum_bits`` (uint64: the raw float64 bits, so a stale marker —
  sum bits ``STALE_NAN_BITS``, H10 — survives; see :attr:`HistogramBatch.stale`),
* ``layout`` (int64 id into :class:`HistogramLayouts`) and ``buckets[bucket_offsets[s]:bucket_offsets[s+1]]``:
  the **absolute** counts of the layout's positive buckets (index order), then its negative buckets.

**Layouts live in a table** (schema, zero threshold, positive/negative spans, custom bounds) and samples point
into it: inside a chunk the layout is fixed by the format (H5.2), so per-sample spans would repeat the same
spans 120 times; a table makes "same layout" a single integer compare (what the appender logic of H9 asks at
every sample), keeps custom bounds (schema -53) once per layout, and lets later PromQL results share layouts
too. Decoding makes one layout per chunk (no interning). Spans of layout ``l``: positive
``span_offset/span_length[span_bounds[2l]:span_bounds[2l+1]]``, negative ``[span_bounds[2l+1]:span_bounds[2l+2]]``.

**Stale markers** keep the layout id of their chunk but carry no buckets (zero-length bucket range), count and
zero count 0: a stale marker is not a histogram (Prometheus returns only its sum). Invariant: a sample's bucket
range is empty when it is stale and ``n_pos + n_neg`` of its layout otherwise.

**Flavors**: ``"2.42"`` reproduces Prometheus 2.42 (the 2.x trailing zero byte of H2.3 when encoding, hint
CounterReset for sample 0 of a ``10`` chunk, its head-cutting and reset rules of H9); ``"3"`` follows 3.x
(source only, not verifiable here: no trailing byte, Unknown for sample 0 of a ``10`` chunk, the head cutting
by encoded size of H9.5, the 3.x appender and headers of H8.5/H9.1). The test blocks under
shared/testdata/native-histograms are 2.42 output.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from thanostools.core.constants import CUSTOM_BUCKETS_SCHEMA as CUSTOM_BUCKETS_SCHEMA
from thanostools.core.constants import ENC_FLOAT_HISTOGRAM as ENC_FLOAT_HISTOGRAM
from thanostools.core.constants import ENC_HISTOGRAM as ENC_HISTOGRAM
from thanostools.core.errors import CorruptBlockError
from thanostools.core.histograms import HINT_GAUGE as HINT_GAUGE
from thanostools.core.histograms import HINT_NOT_RESET as HINT_NOT_RESET
from thanostools.core.histograms import HINT_RESET as HINT_RESET
from thanostools.core.histograms import HINT_UNKNOWN as HINT_UNKNOWN
from thanostools.core.histograms import MAX_FLOAT64 as MAX_FLOAT64
from thanostools.core.histograms import SCHEMA8_FRACTIONS as SCHEMA8_FRACTIONS
from thanostools.core.histograms import HistogramBatch as HistogramBatch
from thanostools.core.histograms import HistogramLayouts as HistogramLayouts
from thanostools.core.histograms import HistogramSample as HistogramSample
from thanostools.core.histograms import bucket_upper as bucket_upper
from thanostools.core.histograms import build_batch as build_batch
from thanostools.core.kernels import histogram as kernels
from thanostools.core.kernels.dtypes import I64

Flavor = Literal["2.42", "3"]
FLAVORS: tuple[Flavor, ...] = ("2.42", "3")

# chunk counter-reset headers, as the 2 stored bits (H8.1)
HEADER_UNKNOWN = 0
HEADER_NOT_RESET = 1
HEADER_RESET = 2
HEADER_GAUGE = 3

ENC_HISTOGRAM_ST = kernels.ENC_HISTOGRAM_ST
ENC_FLOAT_HISTOGRAM_ST = kernels.ENC_FLOAT_HISTOGRAM_ST
INT_ENCODINGS = (ENC_HISTOGRAM, ENC_HISTOGRAM_ST)
FLOAT_ENCODINGS = (ENC_FLOAT_HISTOGRAM, ENC_FLOAT_HISTOGRAM_ST)
MAX_SAMPLES_PER_CHUNK = 0xFFFF

_ERRORS = {
    kernels.ERR_SHORT: "shorter than its 3-byte header",
    kernels.ERR_TRUNCATED: "bit stream ends early",
    kernels.ERR_VARINT: "start-timestamp varint overflows 64 bits",
    kernels.ERR_WINDOW: "XOR window wider than 64 bits",
    kernels.ERR_SCHEMA: "schema outside -9..52 and not -53",
    kernels.ERR_SPANS: "impossible spans (length/offset out of range or more buckets than the chunk holds)",
    kernels.ERR_ENCODING: "not a histogram chunk encoding (2, 3, 5 or 6)",
}



def _as_u8(data: Any) -> NDArray[np.uint8]:
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data.reshape(-1).view(np.uint8))
    return np.frombuffer(data, dtype=np.uint8)


def _check_flavor(flavor: str) -> None:
    if flavor not in FLAVORS:
        raise ValueError(f"flavor must be one of {FLAVORS}, got {flavor!r}")


def _corrupt(i: int, start: int, bit: int, status: int) -> CorruptBlockError:
    return CorruptBlockError(f"histogram chunk {i}: {_ERRORS[status]} (bit {bit} of the chunk)",
                             offset=start + bit // 8)


def hints_from_headers(offsets: I64, header: NDArray[np.uint8], flavor: Flavor) -> NDArray[np.uint8]:
    """Per-sample counter-reset hints a chunk iterator returns (H8.3)."""
    n = int(offsets[-1])
    sizes = np.diff(offsets)
    per_sample = np.repeat(header, sizes)
    hint = np.full(n, HINT_NOT_RESET, dtype=np.uint8)
    hint[per_sample == HEADER_GAUGE] = HINT_GAUGE
    first = offsets[:-1][sizes > 0]
    first_header = header[sizes > 0]
    first_hint = np.where(first_header == HEADER_GAUGE, HINT_GAUGE, HINT_UNKNOWN).astype(np.uint8)
    if flavor == "2.42":
        first_hint[first_header == HEADER_RESET] = HINT_RESET
    hint[first] = first_hint
    return hint


def decode_batch(buf: Any, starts: Any, ends: Any, encodings: Any, *, flavor: Flavor = "3") -> HistogramBatch:
    """Decode the histogram chunks ``buf[starts[i]:ends[i]]`` (payloads, header included) in one kernel call.

    All chunks must be of one kind (integer: 2, 5; float: 3, 6). Errors raise ``CorruptBlockError`` naming
    the chunk and the byte offset in ``buf``; trailing bytes after the last sample (the 2.x extra byte) are
    ignored.
    """
    _check_flavor(flavor)
    data = _as_u8(buf)
    s = np.ascontiguousarray(starts, dtype=np.int64)
    e = np.ascontiguousarray(ends, dtype=np.int64)
    encs = np.ascontiguousarray(encodings, dtype=np.int64)
    if not (s.shape == e.shape == encs.shape) or s.ndim != 1:
        raise ValueError("starts, ends and encodings must be 1-D arrays of the same length")
    bad = np.flatnonzero((s < 0) | (e < s) | (e > data.shape[0]))
    if bad.size:
        i = int(bad[0])
        raise CorruptBlockError(f"histogram chunk {i}: span [{s[i]}, {e[i]}) lies outside the "
                                f"{data.shape[0]}-byte buffer", offset=int(s[i]))
    floats = np.isin(encs, FLOAT_ENCODINGS)
    if floats.any() and not floats.all() and np.isin(encs, INT_ENCODINGS).any():
        raise ValueError("decode_batch needs chunks of one kind; use decode_by_kind for a mixed selection")
    with np.errstate(over="ignore"):
        sizes, bad_chunk, status, bit = kernels.scan_chunks(data, s, e, encs)
        if status != kernels.OK:
            raise _corrupt(bad_chunk, int(s[bad_chunk]), bit, status)
        k = s.shape[0]
        offsets = np.zeros(k + 1, dtype=np.int64)
        np.cumsum(sizes[:, 0], out=offsets[1:])
        span_bounds = np.zeros(2 * k + 1, dtype=np.int64)
        span_bounds[2::2] = np.cumsum(sizes[:, 1])
        span_bounds[1::2] = span_bounds[0:-1:2]
        cv_bounds = np.zeros(k + 1, dtype=np.int64)
        np.cumsum(sizes[:, 2], out=cv_bounds[1:])
        (t, cnt, zc, total, st, bo, bk, schema, zt, n_pos, n_neg, span_off, span_len, custom, headers,
         bad_chunk, status, bit) = kernels.decode_chunks(data, s, e, encs, offsets, span_bounds, cv_bounds,
                                                         int(sizes[:, 3].sum()))
    if status != kernels.OK:
        raise _corrupt(bad_chunk, int(s[bad_chunk]), bit, status)
    is_float = bool(floats.any())
    layouts = HistogramLayouts(
        schema=schema.astype(np.int32), zero_threshold=zt.view(np.float64), n_pos=n_pos, n_neg=n_neg,
        span_bounds=span_bounds, span_offset=span_off.astype(np.int32), span_length=span_len.astype(np.uint32),
        custom_bounds=cv_bounds, custom_values=custom.view(np.float64),
    )
    value_type = np.float64 if is_float else np.int64
    return HistogramBatch(
        is_float=is_float, offsets=offsets, encoding=encs.astype(np.uint8), header=headers,
        t=t.view(np.int64), st=st.view(np.int64), hint=hints_from_headers(offsets, headers, flavor),
        count=cnt.view(value_type), zero_count=zc.view(value_type), sum_bits=total,
        layout=np.repeat(np.arange(k, dtype=np.int64), np.diff(offsets)), bucket_offsets=bo,
        buckets=bk.view(value_type), layouts=layouts,
    )


def decode_by_kind(buf: Any, starts: Any, ends: Any, encodings: Any, *, flavor: Flavor = "3",
                   ) -> tuple[HistogramBatch, HistogramBatch, NDArray[np.bool_]]:
    """A mixed selection as (integer batch, float batch, is_float per chunk): one kernel call per kind.

    Chunk i is chunk ``cumsum`` position ``np.flatnonzero(is_float == is_float[i])`` of its kind's batch.
    """
    encs = np.ascontiguousarray(encodings, dtype=np.int64)
    is_float = np.isin(encs, FLOAT_ENCODINGS)
    s = np.asarray(starts, dtype=np.int64)
    e = np.asarray(ends, dtype=np.int64)
    ints = decode_batch(buf, s[~is_float], e[~is_float], encs[~is_float], flavor=flavor)
    floats = decode_batch(buf, s[is_float], e[is_float], encs[is_float], flavor=flavor)
    return ints, floats, is_float


def as_one_chunk(batch: HistogramBatch, idx: I64) -> HistogramBatch:
    """Samples ``idx`` of a batch, in that order, as one chunk (header unknown) sharing the batch's layout
    table: the input of :func:`reencode_chunks`."""
    idx = np.asarray(idx, dtype=np.int64)
    lo = batch.bucket_offsets[idx]
    sizes = batch.bucket_offsets[idx + 1] - lo
    bo = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    gather = np.repeat(lo - bo[:-1], sizes) + np.arange(int(bo[-1]), dtype=np.int64)
    return HistogramBatch(
        is_float=batch.is_float, offsets=np.array([0, idx.shape[0]], dtype=np.int64),
        encoding=np.full(1, ENC_FLOAT_HISTOGRAM if batch.is_float else ENC_HISTOGRAM, dtype=np.uint8),
        header=np.zeros(1, dtype=np.uint8), t=batch.t[idx],
        st=batch.st[idx], hint=batch.hint[idx], count=batch.count[idx], zero_count=batch.zero_count[idx],
        sum_bits=batch.sum_bits[idx], layout=batch.layout[idx], bucket_offsets=bo, buckets=batch.buckets[gather],
        layouts=batch.layouts,
    )


# ---------------------------------------------------------------- encoding


def _check_encodable(batch: HistogramBatch) -> None:
    sizes = np.diff(batch.offsets)
    if (sizes < 1).any() or (sizes > MAX_SAMPLES_PER_CHUNK).any():
        raise ValueError(f"every chunk needs 1..{MAX_SAMPLES_PER_CHUNK} samples")
    n = len(batch)
    if n == 0:
        return
    chunk_of = np.repeat(np.arange(batch.num_chunks), sizes)
    first = batch.offsets[:-1][chunk_of]
    stale = batch.stale
    if (batch.layout < 0).any() or (batch.layout >= len(batch.layouts)).any():
        raise ValueError("layout ids must index the layout table")
    bad = np.flatnonzero(~stale & (batch.layout != batch.layout[first]))
    if bad.size:
        raise ValueError(f"sample {int(bad[0])} does not have its chunk's layout (recode the chunk first)")
    stale_seen = np.maximum.accumulate(np.where(stale, np.arange(n), -1))
    bad = np.flatnonzero(~stale & (stale_seen >= first))
    if bad.size:
        raise ValueError(f"sample {int(bad[0])} follows a stale marker in the same chunk (H9.1: only stale "
                         f"markers may follow one)")
    lay = batch.layouts
    want = (lay.n_pos + lay.n_neg)[batch.layout]
    have = np.diff(batch.bucket_offsets)
    bad = np.flatnonzero(~stale & (have != want))
    if bad.size:
        raise ValueError(f"sample {int(bad[0])} has {int(have[bad[0]])} bucket values, its layout "
                         f"{int(batch.layout[bad[0]])} has {int(want[bad[0]])} buckets")
    b = lay.span_bounds
    lengths = np.concatenate([[0], np.cumsum(lay.span_length.astype(np.int64))])
    if ((lengths[b[1::2]] - lengths[b[0:-1:2]]) != lay.n_pos).any() or (
            (lengths[b[2::2]] - lengths[b[1::2]]) != lay.n_neg).any():
        raise ValueError("layout table: span lengths do not add up to n_pos / n_neg")


def encode_batch(batch: HistogramBatch, *, flavor: Flavor = "3") -> tuple[NDArray[np.uint8], I64]:
    """Encode every chunk of the batch as encoding 2 (integer) or 3 (float), header bits from ``batch.header``.

    The chunk layout is the layout of its first sample (the empty layout if that one is stale, H10).
    ``flavor="2.42"`` appends the 2.x trailing zero byte where 2.42 does (H2.3). Returns (buf, offsets):
    chunk j's payload is ``buf[offsets[j]:offsets[j+1]]``.
    """
    _check_flavor(flavor)
    _check_encodable(batch)
    lay = batch.layouts
    sizes = np.diff(batch.offsets)
    first = batch.offsets[:-1]
    ly = batch.layout[first] if len(batch) else np.zeros(0, dtype=np.int64)
    nspans = (lay.span_bounds[2::2] - lay.span_bounds[0:-1:2])[ly]
    ncustom = np.diff(lay.custom_bounds)[ly]
    nb = (lay.n_pos + lay.n_neg)[ly]
    capacity = 32 + 18 * nspans + 9 * ncustom + sizes * (40 + 10 * nb)
    as_u64 = np.uint64
    with np.errstate(over="ignore"):
        out, offsets = kernels.encode_chunks(
            batch.is_float, flavor == "2.42", np.ascontiguousarray(batch.offsets),
            np.ascontiguousarray(batch.header, dtype=np.uint8), capacity.astype(np.int64),
            batch.t.view(as_u64), np.ascontiguousarray(batch.count).view(as_u64),
            np.ascontiguousarray(batch.zero_count).view(as_u64), batch.sum_bits,
            np.ascontiguousarray(batch.buckets).view(as_u64), batch.bucket_offsets, batch.layout,
            lay.schema.astype(np.int64), lay.zero_threshold.view(as_u64), lay.n_pos, lay.n_neg, lay.span_bounds,
            lay.span_offset.astype(np.int64), lay.span_length.astype(np.int64), lay.custom_bounds,
            lay.custom_values.view(as_u64),
        )
    return out, offsets


# ---------------------------------------------------------------- bucket boundaries and API JSON

# ---------------------------------------------------------------- head cutting

DEFAULT_CHUNK_RANGE_MS = 2 * 3600 * 1000
DEFAULT_SAMPLES_PER_CHUNK = 120


def head_chunks(series: HistogramBatch, *, flavor: Flavor = "2.42", chunk_range: int = DEFAULT_CHUNK_RANGE_MS,
                samples_per_chunk: int = DEFAULT_SAMPLES_PER_CHUNK,
                run_start: NDArray[np.bool_] | None = None) -> HistogramBatch:
    """The chunks Prometheus' head builds from ONE series' histogram samples (time order, one kind).

    ``run_start`` (one flag per sample) appends several runs in one call — the histogram runs of many series, or of
    one series between samples of another value type: each run starts as a series' first chunk (H8.5: after a
    chunk of another encoding the head's header is ``00`` too).

    The input's chunking is ignored; ``series.hint`` is taken as the ingested hint (``HINT_GAUGE`` appends as
    a gauge, ``HINT_RESET`` forces a reset chunk). Returns a batch whose chunks are where the head cuts,
    with the counter-reset header the head sets (H8.5) and every sample expanded to its chunk's final layout
    (recoding and backward inserts, H9.1–H9.3); its first chunk is treated as the first chunk of the series.
    ``encode_batch(result, flavor=...)`` gives the chunk bytes.

    ``flavor="2.42"`` cuts as the 2.42 head (H9.4: ~``samples_per_chunk`` samples, verified against the 2.42
    test blocks); ``flavor="3"`` as the >= 2.47 / 3.x head (H9.5: by encoded bytes, target 1024, at least 10
    samples) with the 3.x appender and headers (H8.5, H9.1); ``samples_per_chunk`` does not apply to it.
    """
    _check_flavor(flavor)
    if chunk_range <= 0 or samples_per_chunk < 4:
        raise ValueError("need chunk_range > 0 and samples_per_chunk >= 4")
    starts = np.zeros(len(series), dtype=bool) if run_start is None else np.ascontiguousarray(run_start, dtype=bool)
    if starts.shape[0] != len(series):
        raise ValueError("run_start needs one flag per sample")
    if ((np.diff(series.t) <= 0) & ~starts[1:]).any():
        raise ValueError("head_chunks needs strictly increasing timestamps (the head rejects the others)")
    mode = kernels.CUT_HEAD_COUNT if flavor == "2.42" else kernels.CUT_HEAD_SIZE
    return _append_chunks(series, flavor, chunk_range, samples_per_chunk, mode, starts)


REENCODE_SAMPLES_PER_CHUNK = 120


def reencode_chunks(series: HistogramBatch, run_start: NDArray[np.bool_], *, flavor: Flavor = "2.42",
                    samples_per_chunk: int = REENCODE_SAMPLES_PER_CHUNK) -> HistogramBatch:
    """Chunks for samples re-encoded outside the head (H9.6: compaction, merges): the samples of every run
    (a run starts where ``run_start`` is set; strictly increasing timestamps within it) are appended as
    Prometheus' appender does (H9.1–H9.3: resets, layout and gauge changes cut a chunk; recoding), and a new
    chunk starts every ``samples_per_chunk`` samples. Each run starts as a series' first chunk.

    ``series.hint`` is taken as the hint of each sample (``hints_from_headers`` of the decoded chunks keeps
    their resets and gauges). ``flavor`` picks the appender rules and headers: 2.42's, or 3.x's (a fresh appender
    per chunk: header from the first sample's hint, ``10`` for a detected reset, ``00`` for a layout change).
    """
    _check_flavor(flavor)
    if samples_per_chunk < 1 or samples_per_chunk > MAX_SAMPLES_PER_CHUNK:
        raise ValueError(f"samples_per_chunk must be 1..{MAX_SAMPLES_PER_CHUNK}")
    starts = np.ascontiguousarray(run_start, dtype=bool).copy()
    if starts.shape[0] != len(series):
        raise ValueError("run_start needs one flag per sample")
    if starts.shape[0]:
        starts[0] = True
    if ((np.diff(series.t) <= 0) & ~starts[1:]).any():
        raise ValueError("reencode_chunks needs strictly increasing timestamps within each run")
    return _append_chunks(series, flavor, DEFAULT_CHUNK_RANGE_MS, samples_per_chunk, kernels.CUT_FIXED, starts)


def _append_chunks(series: HistogramBatch, flavor: Flavor, chunk_range: int, samples_per_chunk: int, cut_mode: int,
                   run_start: NDArray[np.bool_]) -> HistogramBatch:
    t = np.ascontiguousarray(series.t)
    lay = series.layouts
    as_u64 = np.uint64
    span_off = lay.span_offset.astype(np.int64)
    span_len = lay.span_length.astype(np.int64)
    cnt = np.ascontiguousarray(series.count).view(as_u64)
    zc = np.ascontiguousarray(series.zero_count).view(as_u64)
    buckets = np.ascontiguousarray(series.buckets).view(as_u64)
    with np.errstate(over="ignore"):
        bounds, headers, base, u_idx, ub = kernels.append_chunks(
            series.is_float, t, cnt, zc, series.sum_bits, np.ascontiguousarray(series.hint, dtype=np.uint8),
            series.layout, series.bucket_offsets, buckets, lay.schema.astype(np.int64), lay.zero_threshold.view(as_u64),
            lay.custom_bounds, lay.custom_values.view(as_u64), lay.span_bounds, span_off, span_len, int(chunk_range),
            int(samples_per_chunk), cut_mode, flavor == "3", run_start,
        )
        l_idx, l_b = kernels.layout_indices(lay.span_bounds, span_off, span_len)
        out_buckets, out_bo = kernels.expand_samples(bounds, u_idx, ub, series.sum_bits, series.layout,
                                                     series.bucket_offsets, buckets, l_idx, l_b)
    layouts = _chunk_layouts(lay, base, u_idx, ub)
    k = bounds.shape[0] - 1
    sizes = np.diff(bounds)
    value_type = np.float64 if series.is_float else np.int64
    enc = ENC_FLOAT_HISTOGRAM if series.is_float else ENC_HISTOGRAM
    return HistogramBatch(
        is_float=series.is_float, offsets=bounds, encoding=np.full(k, enc, dtype=np.uint8), header=headers,
        t=t, st=np.zeros_like(t), hint=hints_from_headers(bounds, headers, flavor),
        count=np.where(series.stale, 0, series.count).astype(value_type),
        zero_count=np.where(series.stale, 0, series.zero_count).astype(value_type), sum_bits=series.sum_bits,
        layout=np.repeat(np.arange(k, dtype=np.int64), sizes), bucket_offsets=out_bo,
        buckets=out_buckets.view(value_type), layouts=layouts,
    )


def _chunk_layouts(lay: HistogramLayouts, base: I64, u_idx: I64, ub: I64) -> HistogramLayouts:
    """One layout per chunk: the first sample's layout, or canonical union spans after a recode (H9.3)."""
    schema, zt, n_pos, n_neg, span_off, span_len, cv, bounds = [], [], [], [], [], [], [], [0]
    span_bounds = [0]
    for c, b in enumerate(base.tolist()):
        sides = (u_idx[ub[2 * c] : ub[2 * c + 1]], u_idx[ub[2 * c + 1] : ub[2 * c + 2]])
        if b < 0:
            schema.append(0)
            zt.append(0.0)
        else:
            schema.append(int(lay.schema[b]))
            zt.append(float(lay.zero_threshold[b]))
            cv.extend(lay.custom(b).tolist())
        bounds.append(len(cv))
        n_pos.append(len(sides[0]))
        n_neg.append(len(sides[1]))
        recoded = b >= 0 and len(sides[0]) + len(sides[1]) != int(lay.n_pos[b] + lay.n_neg[b])
        for side, idx in enumerate(sides):
            if b >= 0 and not recoded:
                lo, hi = int(lay.span_bounds[2 * b + side]), int(lay.span_bounds[2 * b + side + 1])
                span_off.extend(lay.span_offset[lo:hi].tolist())
                span_len.extend(lay.span_length[lo:hi].tolist())
            else:
                offs, lens = _union_spans(idx)
                span_off.extend(offs)
                span_len.extend(lens)
            span_bounds.append(len(span_off))
    return HistogramLayouts(
        schema=np.array(schema, dtype=np.int32), zero_threshold=np.array(zt, dtype=np.float64),
        n_pos=np.array(n_pos, dtype=np.int64), n_neg=np.array(n_neg, dtype=np.int64),
        span_bounds=np.array(span_bounds, dtype=np.int64), span_offset=np.array(span_off, dtype=np.int32),
        span_length=np.array(span_len, dtype=np.uint32), custom_bounds=np.array(bounds, dtype=np.int64),
        custom_values=np.array(cv, dtype=np.float64),
    )


def _union_spans(idx: I64) -> tuple[list[int], list[int]]:
    """Spans of sorted bucket indices: a new span wherever an index is not the previous one plus 1 (H9.3)."""
    if idx.size == 0:
        return [], []
    starts = np.flatnonzero(np.diff(idx) != 1) + 1
    first = np.concatenate([[0], starts])
    lengths = np.diff(np.concatenate([first, [idx.size]]))
    prev_end = np.concatenate([[0], idx[first[1:] - 1] + 1])
    offsets = idx[first] - prev_end
    return offsets.tolist(), lengths.tolist()
