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

import math
import struct
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from thanostools.core.constants import STALE_NAN_BITS
from thanostools.core.errors import CorruptBlockError
from thanostools.core.histograms import HistogramBatch as HistogramBatch
from thanostools.core.histograms import HistogramLayouts as HistogramLayouts
from thanostools.core.kernels import histogram as kernels
from thanostools.core.kernels.dtypes import I64

Flavor = Literal["2.42", "3"]
FLAVORS: tuple[Flavor, ...] = ("2.42", "3")

# counter-reset hints (in-memory enum, H8.2)
HINT_UNKNOWN = 0
HINT_RESET = 1
HINT_NOT_RESET = 2
HINT_GAUGE = 3
# chunk counter-reset headers, as the 2 stored bits (H8.1)
HEADER_UNKNOWN = 0
HEADER_NOT_RESET = 1
HEADER_RESET = 2
HEADER_GAUGE = 3

ENC_HISTOGRAM = kernels.ENC_HISTOGRAM
ENC_FLOAT_HISTOGRAM = kernels.ENC_FLOAT_HISTOGRAM
ENC_HISTOGRAM_ST = kernels.ENC_HISTOGRAM_ST
ENC_FLOAT_HISTOGRAM_ST = kernels.ENC_FLOAT_HISTOGRAM_ST
INT_ENCODINGS = (ENC_HISTOGRAM, ENC_HISTOGRAM_ST)
FLOAT_ENCODINGS = (ENC_FLOAT_HISTOGRAM, ENC_FLOAT_HISTOGRAM_ST)
CUSTOM_BUCKETS_SCHEMA = kernels.CUSTOM_BUCKETS_SCHEMA
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
