"""The in-memory form of native-histogram samples, shared by the chunk codec (``chunkenc/histogram.py``, whose
module docstring describes the columns), the storage contract (``series.py``) and everything above it.

It lives outside ``chunkenc`` because the PromQL engine may know storage only through ``series.py``, never
chunk formats.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from thanostools.core.constants import CUSTOM_BUCKETS_SCHEMA, ENC_FLOAT_HISTOGRAM, ENC_HISTOGRAM, STALE_NAN_BITS
from thanostools.core.kernels.dtypes import I64, U64

HINT_UNKNOWN = 0
HINT_RESET = 1
HINT_NOT_RESET = 2
HINT_GAUGE = 3


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


# Prometheus' schema-8 boundary fractions (H13; copied, never computed: many differ by ulps from 2^(j/256-1)).
_SCHEMA8_HEX = (
    "3fe0000000000000 3fe00b1afa5abcbf 3fe0163da9fb3335 3fe02168143b0281 "
    "3fe02c9a3e778061 3fe037d42e11bbcc 3fe04315e86e7f84 3fe04e5f72f654b1 "
    "3fe059b0d3158574 3fe0650a0e3c1f89 3fe0706b29ddf6dd 3fe07bd42b72a836 "
    "3fe0874518759bc8 3fe092bdf66607e0 3fe09e3ecac6f383 3fe0a9c79b1f3919 "
    "3fe0b5586cf9890f 3fe0c0f145e46c85 3fe0cc922b7247f6 3fe0d83b23395dea "
    "3fe0e3ec32d3d1a2 3fe0efa55fdfa9c5 3fe0fb66affed31a 3fe1073028d7233d "
    "3fe11301d0125b50 3fe11edbab5e2ab5 3fe12abdc06c31cb 3fe136a814f204aa "
    "3fe1429aaea92ddf 3fe14e95934f312d 3fe15a98c8a58e50 3fe166a45471c3c1 "
    "3fe172b83c7d517b 3fe17ed48695bbc0 3fe18af9388c8de9 3fe1972658375d2f "
    "3fe1a35beb6fcb75 3fe1af99f8138a1c 3fe1bbe084045cd3 3fe1c82f95281c6b "
    "3fe1d4873168b9aa 3fe1e0e75eb44026 3fe1ed5022fcd91c 3fe1f9c18438ce4c "
    "3fe2063b88628cd6 3fe212be3578a819 3fe21f49917ddc95 3fe22bdda27912d0 "
    "3fe2387a6e756238 3fe2451ffb82140a 3fe251ce4fb2a63e 3fe25e85711ece74 "
    "3fe26b4565e27cdd 3fe2780e341ddf2a 3fe284dfe1f56380 3fe291ba7591bb6f "
    "3fe29e9df51fdee1 3fe2ab8a66d10f13 3fe2b87fd0dad98f 3fe2c57e39771b2e "
    "3fe2d285a6e4030b 3fe2df961f641589 3fe2ecafa93e2f55 3fe2f9d24abd886a "
    "3fe306fe0a31b715 3fe31432edeeb2fd 3fe32170fc4cd831 3fe32eb83ba8ea32 "
    "3fe33c08b26416ff 3fe3496266e3fa2d 3fe356c55f929ff0 3fe36431a2de883a "
    "3fe371a7373aa9ca 3fe37f26231e7549 3fe38cae6d05d864 3fe39a401b7140ed "
    "3fe3a7db34e59ff6 3fe3b57fbfec6cf4 3fe3c32dc313a8e3 3fe3d0e544ede172 "
    "3fe3dea64c123422 3fe3ec70df1c5175 3fe3fa4504ac801b 3fe40822c367a024 "
    "3fe4160a21f72e2a 3fe423fb2709468a 3fe431f5d950a896 3fe43ffa3f84b9d4 "
    "3fe44e086061892d 3fe45c2042a7d232 3fe46a41ed1d0057 3fe4786d668b3236 "
    "3fe486a2b5c13cd0 3fe494e1e192aed2 3fe4a32af0d7d3de 3fe4b17dea6db7d7 "
    "3fe4bfdad5362a27 3fe4ce41b817c114 3fe4dcb299fddd0d 3fe4eb2d81d8abfe "
    "3fe4f9b2769d2ca7 3fe508417f4531ef 3fe516daa2cf6642 3fe5257de83f4eef "
    "3fe5342b569d4f81 3fe542e2f4f6ad27 3fe551a4ca5d920d 3fe56070dde910d0 "
    "3fe56f4736b527da 3fe57e27dbe2c4cf 3fe58d12d497c7fc 3fe59c0827ff07cb "
    "3fe5ab07dd485429 3fe5ba11fba87a02 3fe5c9268a5946b6 3fe5d84590998b92 "
    "3fe5e76f15ad2148 3fe5f6a320dceb71 3fe605e1b976dc08 3fe6152ae6cdf6f4 "
    "3fe6247eb03a5584 3fe633dd1d1929fd 3fe6434634ccc31e 3fe652b9febc8fb5 "
    "3fe6623882552224 3fe671c1c70833f5 3fe68155d44ca972 3fe690f4b19e9537 "
    "3fe6a09e667f3bcc 3fe6b052fa75173e 3fe6c012750bdabe 3fe6cfdcddd47645 "
    "3fe6dfb23c651a2e 3fe6ef9298593ae4 3fe6ff7df9519482 3fe70f7466f42e85 "
    "3fe71f75e8ec5f73 3fe72f8286ead089 3fe73f9a48a58172 3fe74fbd35d7cbfc "
    "3fe75feb564267c8 3fe77024b1ab6e09 3fe780694fde5d3e 3fe790b938ac1cf5 "
    "3fe7a11473eb0186 3fe7b17b0976cfda 3fe7c1ed0130c131 3fe7d26a62ff86ef "
    "3fe7e2f336cf4e61 3fe7f3878491c490 3fe80427543e1a10 3fe814d2add106d8 "
    "3fe82589994cce11 3fe8364c1eb941f6 3fe8471a4623c7ab 3fe857f4179f5b1f "
    "3fe868d99b4492eb 3fe879cad931a435 3fe88ac7d98a6697 3fe89bd0a478580d "
    "3fe8ace5422aa0db 3fe8be05bad61778 3fe8cf3216b5448b 3fe8e06a5e0866d8 "
    "3fe8f1ae99157736 3fe902fed0282c8a 3fe9145b0b91ffc5 3fe925c353aa2fe2 "
    "3fe93737b0cdc5e4 3fe948b82b5f98e4 3fe95a44cbc8520d 3fe96bdd9a7670b1 "
    "3fe97d829fde4e4f 3fe98f33e47a22a2 3fe9a0f170ca07b8 3fe9b2bb4d53fe0b "
    "3fe9c49182a3f08f 3fe9d674194bb8d4 3fe9e86319e32321 3fe9fa5e8d07f29c "
    "3fea0c667b5de564 3fea1e7aed8eb8bb 3fea309bec4a2d32 3fea42c980460ad7 "
    "3fea5503b23e255b 3fea674a8af46051 3fea799e1330b356 3fea8bfe53c12e57 "
    "3fea9e6b5579fdbe 3feab0e521356eb9 3feac36bbfd3f378 3fead5ff3a3c2773 "
    "3feae89f995ad3ac 3feafb4ce622f2fe 3feb0e07298db663 3feb20ce6c9a8950 "
    "3feb33a2b84f15fa 3feb468415b749b0 3feb59728de55938 3feb6c6e29f1c529 "
    "3feb7f76f2fb5e45 3feb928cf22749e2 3feba5b030a10647 3febb8e0b79a6f1d "
    "3febcc1e904bc1d0 3febdf69c3f3a205 3febf2c25bd71e06 3fec06286141b33b "
    "3fec199bdd85529a 3fec2d1cd9fa652a 3fec40ab5fffd078 3fec544778fafb20 "
    "3fec67f12e57d149 3fec7ba88988c931 3fec8f6d9406e7b2 3feca3405751c4d8 "
    "3fecb720dcef9066 3feccb0f2e6d1672 3fecdf0b555dc3f6 3fecf3155b5bab70 "
    "3fed072d4a078979 3fed1b532b08c966 3fed2f87080d89ee 3fed43c8eacaa1d3 "
    "3fed5818dcfba486 3fed6c76e862e6d2 3fed80e316c98396 3fed955d71ff6074 "
    "3feda9e603db3284 3fedbe7cd63a8313 3fedd321f301b45e 3fede7d5641c0656 "
    "3fedfc97337b9b5d 3fee11676b197d16 3fee264614f5a126 3fee3b333b16ee0f "
    "3fee502ee78b3ff5 3fee653924676d75 3fee7a51fbc74c81 3fee8f7977cdb73e "
    "3feea4afa2a490d8 3feeb9f4867cca6d 3feecf482d8e67ee 3feee4aaa218850e "
    "3feefa1bee615a26 3fef0f9c1cb64129 3fef252b376bba95 3fef3ac948dd7272 "
    "3fef50765b6e453e 3fef6632798844f6 3fef7bfdad9cbe10 3fef91d802243c86 "
    "3fefa7c1819e90d6 3fefbdba3692d512 3fefd3c22b8f71ee 3fefe9d96b2a23d6 "
)
SCHEMA8_FRACTIONS: tuple[float, ...] = tuple(
    struct.unpack(">d", bytes.fromhex(h))[0] for h in _SCHEMA8_HEX.split()
)
MAX_FLOAT64 = 1.7976931348623157e308


def bucket_upper(schema: int, index: int, custom: NDArray[np.float64] | None = None) -> float:
    """Upper bound of positive bucket ``index`` (H13)."""
    if schema == CUSTOM_BUCKETS_SCHEMA:
        if custom is None:
            raise ValueError("schema -53 needs the custom bounds")
        if index < 0:
            return -math.inf
        return float(custom[index]) if index < len(custom) else math.inf
    if schema < 0:
        e = index << -schema
        if e == 1024:
            return MAX_FLOAT64
        return _ldexp(1.0, e)
    frac = SCHEMA8_FRACTIONS[(index & ((1 << schema) - 1)) << (8 - schema)]
    e = (index >> schema) + 1
    if frac == 0.5 and e == 1025:
        return MAX_FLOAT64
    return _ldexp(frac, e)


def _ldexp(m: float, e: int) -> float:
    try:
        return math.ldexp(m, e)
    except OverflowError:
        return math.inf


# ---------------------------------------------------------------- building batches from Python objects


@dataclass(frozen=True)
class HistogramSample:
    """One histogram sample in plain Python form (absolute bucket counts; spans as (offset, length))."""

    t: int
    count: float
    zero_count: float
    sum: float
    schema: int = 0
    zero_threshold: float = 0.0
    positive_spans: tuple[tuple[int, int], ...] = ()
    positive_buckets: tuple[float, ...] = ()
    negative_spans: tuple[tuple[int, int], ...] = ()
    negative_buckets: tuple[float, ...] = ()
    hint: int = HINT_UNKNOWN
    custom_values: tuple[float, ...] = ()
    stale: bool = False


def build_batch(samples: list[HistogramSample], *, is_float: bool, chunk_sizes: list[int] | None = None,
                headers: list[int] | None = None) -> HistogramBatch:
    """A batch from Python samples (one layout per sample; stale samples: sum = StaleNaN, no buckets).

    ``chunk_sizes`` splits the samples into chunks (default: one chunk); ``headers`` gives their headers.
    """
    sizes = [len(samples)] if chunk_sizes is None else list(chunk_sizes)
    if sum(sizes) != len(samples):
        raise ValueError("chunk_sizes must add up to the number of samples")
    value_type = np.float64 if is_float else np.int64
    span_off: list[int] = []
    span_len: list[int] = []
    span_bounds = [0]
    cv: list[float] = []
    cv_bounds = [0]
    buckets: list[float] = []
    bucket_offsets = [0]
    for s in samples:
        for spans in (s.positive_spans, s.negative_spans):
            span_off.extend(o for o, _ in spans)
            span_len.extend(n for _, n in spans)
            span_bounds.append(len(span_off))
        cv.extend(s.custom_values)
        cv_bounds.append(len(cv))
        if not s.stale:
            buckets.extend(s.positive_buckets)
            buckets.extend(s.negative_buckets)
        bucket_offsets.append(len(buckets))
    stale_bits = np.uint64(STALE_NAN_BITS)
    sum_bits = np.array([s.sum for s in samples], dtype=np.float64).view(np.uint64)
    sum_bits[np.array([s.stale for s in samples], dtype=bool)] = stale_bits
    n = len(samples)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return HistogramBatch(
        is_float=is_float, offsets=offsets,
        encoding=np.full(len(sizes), ENC_FLOAT_HISTOGRAM if is_float else ENC_HISTOGRAM, dtype=np.uint8),
        header=np.array(headers if headers is not None else [0] * len(sizes), dtype=np.uint8),
        t=np.array([s.t for s in samples], dtype=np.int64), st=np.zeros(n, dtype=np.int64),
        hint=np.array([s.hint for s in samples], dtype=np.uint8),
        count=np.array([0 if s.stale else s.count for s in samples], dtype=value_type),
        zero_count=np.array([0 if s.stale else s.zero_count for s in samples], dtype=value_type),
        sum_bits=sum_bits, layout=np.arange(n, dtype=np.int64),
        bucket_offsets=np.array(bucket_offsets, dtype=np.int64), buckets=np.array(buckets, dtype=value_type),
        layouts=HistogramLayouts(
            schema=np.array([s.schema for s in samples], dtype=np.int32),
            zero_threshold=np.array([s.zero_threshold for s in samples], dtype=np.float64),
            n_pos=np.array([sum(n for _, n in s.positive_spans) for s in samples], dtype=np.int64),
            n_neg=np.array([sum(n for _, n in s.negative_spans) for s in samples], dtype=np.int64),
            span_bounds=np.array(span_bounds, dtype=np.int64), span_offset=np.array(span_off, dtype=np.int32),
            span_length=np.array(span_len, dtype=np.uint32), custom_bounds=np.array(cv_bounds, dtype=np.int64),
            custom_values=np.array(cv, dtype=np.float64),
        ),
    )
