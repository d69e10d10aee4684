"""Batch kernels for native-histogram chunks: encodings 2, 3, 5 and 6 (HISTOGRAMS.md H2–H11).

Same discipline as ``kernels/xor.py`` (whose bit reader/writer primitives these reuse): every field value is
a ``np.uint64`` bit pattern (int64 two's complement for integer fields, IEEE-754 bits for floats), positions
and counts are plain ints, bit positions are absolute (``8 * byte_index + bit``). Readers load whole words,
so a chunk is decoded in place only when ``PAD`` bytes follow it in the buffer (else from a padded copy).

Layout arrays (one entry per chunk on decode, per layout id on encode): ``schema``, ``zt_bits`` (zero
threshold bits), ``span_bounds`` (layout l's positive spans are ``span_*[span_bounds[2l]:span_bounds[2l+1]]``,
its negative spans ``span_*[span_bounds[2l+1]:span_bounds[2l+2]]``), ``n_pos``/``n_neg`` (bucket counts per
side), ``cv_bounds``/``custom`` (custom bounds bits of schema -53).
"""

from __future__ import annotations

import numpy as np

from thanostools.core.constants import CUSTOM_BUCKETS_SCHEMA, ENC_FLOAT_HISTOGRAM
from thanostools.core.kernels._jit import njit
from thanostools.core.kernels.arrays import grow
from thanostools.core.kernels.dtypes import I64, U8, U64, Bool
from thanostools.core.kernels.stale import STALE_NAN_BITS_U64
from thanostools.core.kernels.xor import (
    ERR_TRUNCATED as ERR_TRUNCATED,
)
from thanostools.core.kernels.xor import (
    ERR_VARINT as ERR_VARINT,
)
from thanostools.core.kernels.xor import (
    ERR_WINDOW as ERR_WINDOW,
)
from thanostools.core.kernels.xor import (
    OK as OK,
)
from thanostools.core.kernels.xor import (
    U0,
    U1,
    U63,
    U_7F,
    U_80,
    U_ALL,
    U_FF,
    clz64,
    ctz64,
    flush,
    inline,
    peek,
    put,
    put_xor,
    read_bits,
    read_xor,
    to_int,
)

ERR_SHORT = 1  # fewer than the three header bytes
ERR_SCHEMA = 5  # a schema outside -9..52 and not -53
ERR_SPANS = 6  # a span length/offset out of range, or more buckets than the chunk can hold
ERR_ENCODING = 7  # not a histogram encoding
ERR_AFTER_STALE = 8  # (encoder) a non-stale sample after a stale one in the same chunk

ENC_HISTOGRAM_ST = 5
ENC_FLOAT_HISTOGRAM_ST = 6

U52 = np.uint64(52)
U_7FF = np.uint64(0x7FF)
MANTISSA = np.uint64((1 << 52) - 1)
MAX_U32 = np.uint64(0xFFFFFFFF)
I32_MIN = -(1 << 31)
I32_MAX = (1 << 31) - 1

# Bytes that must follow a chunk for in-place reads: more than the fields read between two end checks.
HIST_PAD = 64


@inline
def is_float_enc(enc: int) -> bool:
    return enc in (ENC_FLOAT_HISTOGRAM, ENC_FLOAT_HISTOGRAM_ST)


@inline
def is_st_enc(enc: int) -> bool:
    return enc in (ENC_HISTOGRAM_ST, ENC_FLOAT_HISTOGRAM_ST)


@inline
def varbit_width(k: int) -> int:
    """Payload bits of the varbit row with k leading one bits (H3.1)."""
    if k <= 4:
        return 3 * k
    if k == 5:
        return 18
    if k == 6:
        return 25
    if k == 7:
        return 56
    return 64


# ---------------------------------------------------------------- reading


@inline
def read_varbit(buf: U8, pos: int, signed: bool) -> tuple[np.uint64, int]:
    """One varbit_int / varbit_uint at pos -> (value bits, next pos)."""
    inv = ~peek(buf, pos)
    k = 8 if inv == U0 else min(clz64(inv), 8)
    if k == 0:
        return U0, pos + 1
    n = varbit_width(k)
    start = pos + (k + 1 if k < 8 else 8)
    p = read_bits(buf, start, n)
    if signed and n < 64 and p > (U1 << np.uint64(n - 1)):
        p = p - (U1 << np.uint64(n))
    return p, start + n


@inline
def read_bit_uvarint(buf: U8, pos: int, endbit: int) -> tuple[np.uint64, int, int]:
    """A uvarint written as 8-bit groups into the bit stream -> (value, next pos, status)."""
    x = U0
    s = U0
    for i in range(10):
        if pos + 8 > endbit:
            return U0, pos, ERR_TRUNCATED
        b = read_bits(buf, pos, 8)
        pos += 8
        if b < U_80:
            if i == 9 and b > U1:
                return U0, pos, ERR_VARINT
            return x | (b << s), pos, OK
        x = x | ((b & U_7F) << s)
        s = s + np.uint64(7)
    return U0, pos, ERR_VARINT


@inline
def zt_from_code(code: int) -> np.uint64:
    """Zero-threshold bits for a one-byte code 0..254 (H5.3): 0, else 2^(code - 244)."""
    if code == 0:
        return U0
    return np.uint64(code + 779) << U52


@njit
def parse_layout(
    buf: U8, pos: int, endbit: int, fill: bool, span_off: I64, span_len: I64, sp: int,
    custom: U64, cp: int,
) -> tuple[int, int, int, np.uint64, int, int, int, int, int]:
    """The layout at pos (byte aligned, H5.2). When ``fill``, spans go to span_*[sp:], bounds to custom[cp:].

    Returns (status, pos, schema, zero-threshold bits, positive spans, negative spans, positive buckets,
    negative buckets, custom bounds); on error pos is where the bad field starts.
    """
    if pos + 8 > endbit:
        return ERR_TRUNCATED, pos, 0, U0, 0, 0, 0, 0, 0
    code = to_int(buf[pos >> 3])
    zt = zt_from_code(code)
    pos += 8
    if code == 0xFF:
        if pos + 64 > endbit:
            return ERR_TRUNCATED, pos, 0, U0, 0, 0, 0, 0, 0
        zt = read_bits(buf, pos, 64)
        pos += 64
    field = pos
    v, pos = read_varbit(buf, pos, True)
    if pos > endbit:
        return ERR_TRUNCATED, field, 0, zt, 0, 0, 0, 0, 0
    schema = to_int(v)
    if not (-9 <= schema <= 52 or schema == CUSTOM_BUCKETS_SCHEMA):
        return ERR_SCHEMA, field, schema, zt, 0, 0, 0, 0, 0
    nspans = np.zeros(2, dtype=np.int64)
    nbuckets = np.zeros(2, dtype=np.int64)
    for side in range(2):
        field = pos
        count, pos = read_varbit(buf, pos, False)
        if pos > endbit:
            return ERR_TRUNCATED, field, schema, zt, 0, 0, 0, 0, 0
        index = 0
        i = U0
        while i < count:
            field = pos
            length, pos = read_varbit(buf, pos, False)
            off, pos = read_varbit(buf, pos, True)
            if pos > endbit:
                return ERR_TRUNCATED, field, schema, zt, 0, 0, 0, 0, 0
            offset = to_int(off)
            if length > MAX_U32 or offset < I32_MIN or offset > I32_MAX:
                return ERR_SPANS, field, schema, zt, 0, 0, 0, 0, 0
            index += offset
            nbuckets[side] += to_int(length)
            index += to_int(length)
            if index < I32_MIN or index > I32_MAX + 1 or nbuckets[side] > endbit:
                return ERR_SPANS, field, schema, zt, 0, 0, 0, 0, 0
            if fill:
                span_off[sp] = offset
                span_len[sp] = to_int(length)
                sp += 1
            nspans[side] += 1
            i += U1
    ncustom = 0
    if schema == CUSTOM_BUCKETS_SCHEMA:
        field = pos
        count, pos = read_varbit(buf, pos, False)
        if pos > endbit:
            return ERR_TRUNCATED, field, schema, zt, 0, 0, 0, 0, 0
        i = U0
        while i < count:
            field = pos
            code_v, pos = read_varbit(buf, pos, False)
            if code_v == U0:
                bound = read_bits(buf, pos, 64)
                pos += 64
            else:
                bound = np.array([np.float64(to_int(code_v - U1)) / 1000.0]).view(np.uint64)[0]
            if pos > endbit:
                return ERR_TRUNCATED, field, schema, zt, 0, 0, 0, 0, 0
            if fill:
                custom[cp] = bound
                cp += 1
            ncustom += 1
            i += U1
    return OK, pos, schema, zt, nspans[0], nspans[1], nbuckets[0], nbuckets[1], ncustom


@inline
def header_fields(buf: U8, s: int, enc: int) -> tuple[int, int, int]:
    """(sample count, counter-reset header 0..3, ST header byte) from the 3 header bytes."""
    b0 = to_int(buf[s])
    b1 = to_int(buf[s + 1])
    b2 = to_int(buf[s + 2])
    if is_st_enc(enc):
        return ((b0 & 0x3F) << 8) | b1, b0 >> 6, b2
    return (b0 << 8) | b1, b2 >> 6, 0


@njit
def padded_view(buf: U8, s: int, e: int) -> tuple[U8, int, int]:
    """buf and the chunk's bounds, or a zero-padded copy of the chunk when fewer than HIST_PAD bytes follow."""
    if e + HIST_PAD <= buf.shape[0]:
        return buf, s, e
    padded = np.zeros(e - s + HIST_PAD, dtype=np.uint8)
    padded[: e - s] = buf[s:e]
    return padded, 0, e - s


@njit
def scan_chunks(
    buf: U8, starts: I64, ends: I64, encs: I64
) -> tuple[I64, int, int, int]:
    """Pass 1: per chunk [samples, spans, custom bounds, bucket capacity]; (sizes, bad chunk, status, bit)."""
    k = starts.shape[0]
    sizes = np.zeros((k, 4), dtype=np.int64)
    dummy_i = np.empty(0, dtype=np.int64)
    dummy_u = np.empty(0, dtype=np.uint64)
    for c in range(k):
        enc = encs[c]
        if not (enc == 2 or enc == 3 or enc == 5 or enc == 6):
            return sizes, c, ERR_ENCODING, 0
        if ends[c] - starts[c] < 3:
            return sizes, c, ERR_SHORT, 0
        b, s, e = padded_view(buf, starts[c], ends[c])
        n, _, _ = header_fields(b, s, enc)
        if n == 0:
            continue
        st, pos, _, _, nps, nns, npb, nnb, ncu = parse_layout(
            b, (s + 3) * 8, e * 8, False, dummy_i, dummy_i, 0, dummy_u, 0
        )
        if st != OK:
            return sizes, c, st, pos - s * 8
        nb = npb + nnb
        left = e * 8 - pos
        if (nb * 64 if is_float_enc(enc) else nb) > left:
            return sizes, c, ERR_SPANS, pos - s * 8
        sizes[c, 0] = n
        sizes[c, 1] = nps + nns
        sizes[c, 2] = ncu
        # a non-stale sample spends at least one bit per bucket, so the bits bound the stored buckets
        sizes[c, 3] = min(n * nb, nb + left)
    return sizes, -1, OK, 0


@njit
def decode_samples(
    b: U8, pos: int, endbit: int, n: int, enc: int, st_header: int, npb: int, nnb: int,
    t_out: U64, c_out: U64, z_out: U64, s_out: U64, st_out: U64,
    bk_out: U64, bo_out: I64, o: int, bo: int,
) -> tuple[int, int, int]:
    """Samples of one chunk whose bit stream continues at pos -> (status, bit of the bad field, next bo)."""
    nb = npb + nnb
    is_float = is_float_enc(enc)
    has_st = is_st_enc(enc)
    st_known = (st_header >> 7) != 0
    st_change_on = st_header & 0x7F
    bprev = np.zeros(nb, dtype=np.uint64)
    bdelta = np.zeros(nb, dtype=np.uint64)
    blead = np.zeros(nb, dtype=np.int64)
    btrail = np.zeros(nb, dtype=np.int64)
    lead_c = 0
    trail_c = 0
    lead_z = 0
    trail_z = 0
    lead_s = 0
    trail_s = 0
    t = U0
    dt = U0
    cnt = U0
    dc = U0
    zc = U0
    dz = U0
    total = U0
    st = U0
    st_d = U0
    t_before = U0
    for i in range(n):
        field = pos
        t_before = t
        if i == 0:
            t, pos = read_varbit(b, pos, True)
            if pos > endbit:
                return ERR_TRUNCATED, field, bo
            if is_float:
                cnt = read_bits(b, pos, 64)
                zc = read_bits(b, pos + 64, 64)
                total = read_bits(b, pos + 128, 64)
                pos += 192
            else:
                cnt, pos = read_varbit(b, pos, False)
                zc, pos = read_varbit(b, pos, False)
                if pos > endbit:
                    return ERR_TRUNCATED, field, bo
                total = read_bits(b, pos, 64)
                pos += 64
        else:
            v, pos = read_varbit(b, pos, True)
            dt = dt + v
            t = t + dt
            if pos > endbit:
                return ERR_TRUNCATED, field, bo
            if is_float:
                x, nxt, lead_c, trail_c = read_xor(b, pos, peek(b, pos), 57, lead_c, trail_c)
                if nxt < 0:
                    return (ERR_TRUNCATED if pos + 13 > endbit else ERR_WINDOW), pos, bo
                pos = nxt
                cnt = cnt ^ x
                x, nxt, lead_z, trail_z = read_xor(b, pos, peek(b, pos), 57, lead_z, trail_z)
                if nxt < 0:
                    return (ERR_TRUNCATED if pos + 13 > endbit else ERR_WINDOW), pos, bo
                pos = nxt
                zc = zc ^ x
            else:
                v, pos = read_varbit(b, pos, True)
                dc = dc + v
                cnt = cnt + dc
                v, pos = read_varbit(b, pos, True)
                dz = dz + v
                zc = zc + dz
            if pos > endbit:
                return ERR_TRUNCATED, field, bo
            x, nxt, lead_s, trail_s = read_xor(b, pos, peek(b, pos), 57, lead_s, trail_s)
            if nxt < 0:
                return (ERR_TRUNCATED if pos + 13 > endbit else ERR_WINDOW), pos, bo
            pos = nxt
            total = total ^ x
        if pos > endbit:
            return ERR_TRUNCATED, field, bo
        stale = total == STALE_NAN_BITS_U64
        o_i = o + i
        bo_out[o_i] = bo
        if i == 0 or not stale:
            for j in range(nb):
                field = pos
                if i == 0:
                    if is_float:
                        v = read_bits(b, pos, 64)
                        pos += 64
                    else:
                        v, pos = read_varbit(b, pos, True)
                    bprev[j] = v
                elif is_float:
                    x, nxt, bl, bt = read_xor(b, pos, peek(b, pos), 57, blead[j], btrail[j])
                    if nxt < 0:
                        return (ERR_TRUNCATED if pos + 13 > endbit else ERR_WINDOW), pos, bo
                    blead[j] = bl
                    btrail[j] = bt
                    pos = nxt
                    bprev[j] = bprev[j] ^ x
                else:
                    v, pos = read_varbit(b, pos, True)
                    bdelta[j] = bdelta[j] + v
                    bprev[j] = bprev[j] + bdelta[j]
                if pos > endbit:
                    return ERR_TRUNCATED, field, bo
            if not stale:
                if bo + nb > bk_out.shape[0]:
                    return ERR_SPANS, field, bo
                if is_float:
                    for j in range(nb):
                        bk_out[bo + j] = bprev[j]
                else:
                    run = U0
                    for j in range(nb):
                        if j == npb:
                            run = U0
                        run = run + bprev[j]
                        bk_out[bo + j] = run
                bo += nb
        if has_st:
            field = pos
            if i == 0:
                if st_known:
                    u, pos, status = read_bit_uvarint(b, pos, endbit)
                    if status != OK:
                        return status, field, bo
                    zz = (u >> U1) ^ (U_ALL if (u & U1) != U0 else U0)
                    st = t - zz
            elif st_change_on != 0 and i >= st_change_on:
                v, pos = read_varbit(b, pos, True)
                if pos > endbit:
                    return ERR_TRUNCATED, field, bo
                st_d = v if i == st_change_on else st_d + v
                st = t_before - st_d
            st_out[o_i] = st
        t_out[o_i] = t
        if stale:
            c_out[o_i] = U0
            z_out[o_i] = U0
        else:
            c_out[o_i] = cnt
            z_out[o_i] = zc
        s_out[o_i] = total
    return OK, pos, bo


@njit
def decode_chunks(
    buf: U8, starts: I64, ends: I64, encs: I64, offsets: I64, span_bounds: I64,
    cv_bounds: I64, bucket_cap: int,
) -> tuple[
    U64, U64, U64, U64, U64, I64, U64,
    I64, U64, I64, I64, I64, I64, U64, U8,
    int, int, int,
]:
    """Pass 2 (sizes from :func:`scan_chunks`): every chunk's samples and layout.

    Returns per sample (t, count, zero count, sum, start time, bucket offsets), buckets, per chunk
    (schema, zero-threshold bits, n_pos, n_neg), spans (offset, length), custom bounds, headers, and
    (bad chunk, status, bit of the bad field relative to the chunk start).
    """
    k = starts.shape[0]
    n = offsets[k]
    t_out = np.zeros(n, dtype=np.uint64)
    c_out = np.zeros(n, dtype=np.uint64)
    z_out = np.zeros(n, dtype=np.uint64)
    s_out = np.zeros(n, dtype=np.uint64)
    st_out = np.zeros(n, dtype=np.uint64)
    bo_out = np.zeros(n + 1, dtype=np.int64)
    bk_out = np.zeros(bucket_cap, dtype=np.uint64)
    schema = np.zeros(k, dtype=np.int64)
    zt = np.zeros(k, dtype=np.uint64)
    n_pos = np.zeros(k, dtype=np.int64)
    n_neg = np.zeros(k, dtype=np.int64)
    span_off = np.zeros(span_bounds[2 * k], dtype=np.int64)
    span_len = np.zeros(span_bounds[2 * k], dtype=np.int64)
    custom = np.zeros(cv_bounds[k], dtype=np.uint64)
    headers = np.zeros(k, dtype=np.uint8)
    bo = 0
    for c in range(k):
        enc = encs[c]
        b, s, e = padded_view(buf, starts[c], ends[c])
        cnt, hdr, st_header = header_fields(b, s, enc)
        headers[c] = np.uint8(hdr)
        if cnt == 0:
            continue
        status, pos, sch, z, nps, _, npb, nnb, _ = parse_layout(
            b, (s + 3) * 8, e * 8, True, span_off, span_len, span_bounds[2 * c], custom, cv_bounds[c]
        )
        schema[c] = sch
        zt[c] = z
        n_pos[c] = npb
        n_neg[c] = nnb
        span_bounds[2 * c + 1] = span_bounds[2 * c] + nps
        status, bad_pos, bo = decode_samples(
            b, pos, e * 8, cnt, enc, st_header, npb, nnb, t_out, c_out, z_out, s_out, st_out, bk_out, bo_out,
            offsets[c], bo,
        )
        if status != OK:
            return (t_out, c_out, z_out, s_out, st_out, bo_out, bk_out, schema, zt, n_pos, n_neg, span_off,
                    span_len, custom, headers, c, status, bad_pos - s * 8)
    bo_out[n] = bo
    return (t_out, c_out, z_out, s_out, st_out, bo_out, bk_out[:bo], schema, zt, n_pos, n_neg, span_off,
            span_len, custom, headers, -1, OK, 0)


# ---------------------------------------------------------------- writing
#
# Writers return (op, acc, nacc, last_start, last_len): the bit position and length of the last single
# write Prometheus' bit stream would make for the field (a varbit payload, an XOR payload, ...), which
# decides the 2.x trailing zero byte (H2.3).


@inline
def bitpos(op: int, nacc: int) -> int:
    return op * 8 + nacc


@inline
def put_varbit(
    out: U8, op: int, acc: np.uint64, nacc: int, v: np.uint64, signed: bool
) -> tuple[int, np.uint64, int, int, int]:
    """varbit_int (signed) or varbit_uint of the two's-complement bits v (H3.2)."""
    p0 = bitpos(op, nacc)
    if v == U0:
        op, acc, nacc = put(out, op, acc, nacc, U0, 1)
        return op, acc, nacc, p0, 1
    for k in range(1, 8):
        n = varbit_width(k)
        mask = (U1 << np.uint64(n)) - U1
        fits = (v + (mask >> U1)) <= mask if signed else v <= mask
        if fits:
            prefix = ((U1 << np.uint64(k)) - U1) << U1
            op, acc, nacc = put(out, op, acc, nacc, (prefix << np.uint64(n)) | (v & mask), k + 1 + n)
            return op, acc, nacc, p0 + k + 1, n
    op, acc, nacc = put(out, op, acc, nacc, U_FF, 8)
    op, acc, nacc = put(out, op, acc, nacc, v, 64)
    return op, acc, nacc, p0 + 8, 64


@inline
def put_raw64(out: U8, op: int, acc: np.uint64, nacc: int, v: np.uint64) -> tuple[int, np.uint64, int, int, int]:
    p0 = bitpos(op, nacc)
    op, acc, nacc = put(out, op, acc, nacc, v, 64)
    return op, acc, nacc, p0, 64


@inline
def put_xor_field(
    out: U8, op: int, acc: np.uint64, nacc: int, x: np.uint64, lead: int, trail: int
) -> tuple[int, np.uint64, int, int, int, int, int]:
    """put_xor plus the last write: (op, acc, nacc, lead, trail, last_start, last_len)."""
    p0 = bitpos(op, nacc)
    reuse = lead >= 0 and x != U0 and min(clz64(x), 31) >= lead and ctz64(x) >= trail
    op, acc, nacc, lead, trail = put_xor(out, op, acc, nacc, x, lead, trail)
    p1 = bitpos(op, nacc)
    if x == U0:
        return op, acc, nacc, lead, trail, p0, 1
    head = 2 if reuse else 13
    return op, acc, nacc, lead, trail, p0 + head, p1 - p0 - head


@inline
def zt_code(bits: np.uint64) -> int:
    """One-byte zero-threshold code, or 0xFF when the raw 64 bits must follow (H5.3)."""
    if (bits << U1) == U0:  # +0 and -0 (Go compares threshold == 0)
        return 0
    exp = to_int((bits >> U52) & U_7FF)
    if (bits >> U63) == U0 and (bits & MANTISSA) == U0 and 780 <= exp <= 1033:
        return exp - 779
    return 0xFF


@inline
def custom_bound_code(bits: np.uint64) -> np.uint64:
    """varbit_uint code r + 1 of a bound whole in thousandths (H5.5), 0 when the raw 64 bits must follow."""
    x = np.array([bits]).view(np.float64)[0]
    y = x * 1000.0
    if not (0.0 <= y <= 33554430.0):
        return U0
    r = np.floor(y)
    if y - r >= 0.5:
        r += 1.0
    if r / 1000.0 != x:
        return U0
    return np.uint64(to_int(np.int64(r))) + U1


@njit
def encode_layout(
    out: U8, op: int, empty: bool, schema: int, zt: np.uint64, span_off: I64, span_len: I64,
    p0: int, p1: int, p2: int, custom: U64, c0: int, c1: int,
) -> tuple[int, np.uint64, int]:
    """The layout at byte op (H5.2); ``empty`` writes the empty layout of a stale first sample (H10)."""
    acc = U0
    nacc = 0
    if empty:
        return put(out, op, acc, nacc, U0, 8 + 1 + 1 + 1)
    code = zt_code(zt)
    op, acc, nacc = put(out, op, acc, nacc, np.uint64(code), 8)
    if code == 0xFF:
        op, acc, nacc = put(out, op, acc, nacc, zt, 64)
    op, acc, nacc, _, _ = put_varbit(out, op, acc, nacc, np.uint64(schema), True)
    for lo, hi in ((p0, p1), (p1, p2)):
        op, acc, nacc, _, _ = put_varbit(out, op, acc, nacc, np.uint64(hi - lo), False)
        for j in range(lo, hi):
            op, acc, nacc, _, _ = put_varbit(out, op, acc, nacc, np.uint64(span_len[j]), False)
            op, acc, nacc, _, _ = put_varbit(out, op, acc, nacc, np.uint64(span_off[j]), True)
    if schema == CUSTOM_BUCKETS_SCHEMA:
        op, acc, nacc, _, _ = put_varbit(out, op, acc, nacc, np.uint64(c1 - c0), False)
        for j in range(c0, c1):
            code_v = custom_bound_code(custom[j])
            if code_v == U0:
                op, acc, nacc = put(out, op, acc, nacc, U0, 1)
                op, acc, nacc = put(out, op, acc, nacc, custom[j], 64)
            else:
                op, acc, nacc, _, _ = put_varbit(out, op, acc, nacc, code_v, False)
    return op, acc, nacc


@njit
def encode_chunk(
    out: U8, op: int, lo: int, hi: int, is_float: bool, header: int, legacy_byte: bool,
    t: U64, cnt: U64, zc: U64, total: U64, buckets: U64, bo: I64,
    npb: int, nnb: int, schema: int, zt: np.uint64, span_off: I64, span_len: I64,
    p0: int, p1: int, p2: int, custom: U64, c0: int, c1: int,
) -> int:
    """Samples lo:hi as one chunk of encoding 2 or 3 at out[op:]; returns the byte index after it."""
    n = hi - lo
    out[op] = np.uint8((n >> 8) & 0xFF)
    out[op + 1] = np.uint8(n & 0xFF)
    out[op + 2] = np.uint8(header << 6)
    op += 3
    nb = npb + nnb
    empty = total[lo] == STALE_NAN_BITS_U64
    if empty:
        nb = 0
        npb = 0
    op, acc, nacc = encode_layout(out, op, empty, schema, zt, span_off, span_len, p0, p1, p2, custom, c0, c1)
    bprev = np.zeros(nb, dtype=np.uint64)
    bdelta = np.zeros(nb, dtype=np.uint64)
    blead = np.full(nb, -1, dtype=np.int64)
    btrail = np.zeros(nb, dtype=np.int64)
    lead_c = -1
    trail_c = 0
    lead_z = -1
    trail_z = 0
    lead_s = -1
    trail_s = 0
    vals = np.zeros(nb, dtype=np.uint64)
    tp = U0
    dt = U0
    cp = U0
    dc = U0
    zp = U0
    dz = U0
    sp = U0
    ls = 0
    ll = 0
    for i in range(lo, hi):
        stale = total[i] == STALE_NAN_BITS_U64
        c_i = U0 if stale else cnt[i]
        z_i = U0 if stale else zc[i]
        if not stale:
            base = bo[i]
            prev_abs = U0
            for j in range(nb):
                a = buckets[base + j]
                if is_float:
                    vals[j] = a
                else:
                    if j == npb:
                        prev_abs = U0
                    vals[j] = a - prev_abs
                    prev_abs = a
        if i == lo:
            op, acc, nacc, ls, ll = put_varbit(out, op, acc, nacc, t[i], True)
            if is_float:
                op, acc, nacc, ls, ll = put_raw64(out, op, acc, nacc, c_i)
                op, acc, nacc, ls, ll = put_raw64(out, op, acc, nacc, z_i)
            else:
                op, acc, nacc, ls, ll = put_varbit(out, op, acc, nacc, c_i, False)
                op, acc, nacc, ls, ll = put_varbit(out, op, acc, nacc, z_i, False)
            op, acc, nacc, ls, ll = put_raw64(out, op, acc, nacc, total[i])
            for j in range(nb if not stale else 0):
                if is_float:
                    op, acc, nacc, ls, ll = put_raw64(out, op, acc, nacc, vals[j])
                else:
                    op, acc, nacc, ls, ll = put_varbit(out, op, acc, nacc, vals[j], True)
                bprev[j] = vals[j]
        else:
            d = t[i] - tp
            op, acc, nacc, ls, ll = put_varbit(out, op, acc, nacc, d - dt, True)
            dt = d
            if is_float:
                op, acc, nacc, lead_c, trail_c, ls, ll = put_xor_field(out, op, acc, nacc, c_i ^ cp, lead_c, trail_c)
                op, acc, nacc, lead_z, trail_z, ls, ll = put_xor_field(out, op, acc, nacc, z_i ^ zp, lead_z, trail_z)
            elif stale:
                op, acc, nacc, ls, ll = put_varbit(out, op, acc, nacc, U0, True)
                op, acc, nacc, ls, ll = put_varbit(out, op, acc, nacc, U0, True)
            else:
                d = c_i - cp
                op, acc, nacc, ls, ll = put_varbit(out, op, acc, nacc, d - dc, True)
                dc = d
                d = z_i - zp
                op, acc, nacc, ls, ll = put_varbit(out, op, acc, nacc, d - dz, True)
                dz = d
            op, acc, nacc, lead_s, trail_s, ls, ll = put_xor_field(out, op, acc, nacc, total[i] ^ sp, lead_s, trail_s)
            if not stale:
                for j in range(nb):
                    if is_float:
                        op, acc, nacc, bl, bt, ls, ll = put_xor_field(
                            out, op, acc, nacc, vals[j] ^ bprev[j], blead[j], btrail[j]
                        )
                        blead[j] = bl
                        btrail[j] = bt
                    else:
                        d = vals[j] - bprev[j]
                        op, acc, nacc, ls, ll = put_varbit(out, op, acc, nacc, d - bdelta[j], True)
                        bdelta[j] = d
                    bprev[j] = vals[j]
        tp = t[i]
        cp = c_i
        zp = z_i
        sp = total[i]
    op = flush(out, op, acc, nacc)
    if legacy_byte and ll % 8 == 0 and ls % 8 == 0:
        out[op] = np.uint8(0)
        op += 1
    return op


@njit
def encode_chunks(
    is_float: bool, legacy_byte: bool, bounds: I64, headers: U8, capacity: I64,
    t: U64, cnt: U64, zc: U64, total: U64, buckets: U64, bo: I64,
    layout: I64, schema: I64, zt: U64, n_pos: I64, n_neg: I64, span_bounds: I64,
    span_off: I64, span_len: I64, cv_bounds: I64, custom: U64,
) -> tuple[U8, I64]:
    """Chunk j = samples bounds[j]:bounds[j+1] with the layout of its first sample, back to back.

    ``capacity[j]`` is an upper bound of chunk j's bytes. Returns (bytes, offsets).
    """
    k = bounds.shape[0] - 1
    out = np.zeros(capacity.sum() + 16, dtype=np.uint8)
    offsets = np.zeros(k + 1, dtype=np.int64)
    op = 0
    for j in range(k):
        lo = bounds[j]
        hi = bounds[j + 1]
        ly = layout[lo]
        op = encode_chunk(
            out, op, lo, hi, is_float, to_int(headers[j]), legacy_byte, t, cnt, zc, total, buckets, bo,
            n_pos[ly], n_neg[ly], schema[ly], zt[ly], span_off, span_len, span_bounds[2 * ly],
            span_bounds[2 * ly + 1], span_bounds[2 * ly + 2], custom, cv_bounds[ly], cv_bounds[ly + 1],
        )
        offsets[j + 1] = op
    return out[:op], offsets


# ---------------------------------------------------------------- head cutting (H8.5, H9)

H_UNKNOWN = 0
H_NOT_RESET = 1
H_RESET = 2
H_GAUGE = 3
HINT_RESET = 1
HINT_GAUGE = 3


@njit
def layout_indices(span_bounds: I64, span_off: I64, span_len: I64) -> tuple[I64, I64]:
    """Bucket indices of every layout side: side q (= 2 * layout + negative) is idx[bounds[q]:bounds[q+1]]."""
    nq = span_bounds.shape[0] - 1
    bounds = np.zeros(nq + 1, dtype=np.int64)
    for q in range(nq):
        total = 0
        for j in range(span_bounds[q], span_bounds[q + 1]):
            total += span_len[j]
        bounds[q + 1] = bounds[q] + total
    idx = np.zeros(bounds[nq], dtype=np.int64)
    for q in range(nq):
        i = 0
        w = bounds[q]
        for j in range(span_bounds[q], span_bounds[q + 1]):
            i += span_off[j]
            for _ in range(span_len[j]):
                idx[w] = i
                w += 1
                i += 1
    return idx, bounds


@inline
def count_lt(is_float: bool, ai: np.int64, af: np.float64, bi: np.int64, bf: np.float64) -> bool:
    return bool(af < bf) if is_float else bool(ai < bi)


@njit
def compare_side(
    is_float: bool, gauge: bool, legacy: bool, u_idx: I64, ulo: int, uhi: int, p_i: I64,
    p_f: U64, poff: int, h_idx: I64, hlo: int, hhi: int, hb: int, bi: I64, bf: U64,
) -> tuple[bool, bool]:
    """Walk one side of the chunk's indices (the last sample's counts at p_*[poff + i - ulo]) and of the new
    sample's (its counts at b*[hb:]) -> (reset, forward insert). ``legacy``: a missing bucket is a reset (2.42).
    """
    pf = p_f.view(np.float64)
    hf = bf.view(np.float64)
    ulo -= poff
    i = ulo + poff
    j = hlo
    forward = False
    while i < uhi or j < hhi:
        if j >= hhi or (i < uhi and u_idx[i] < h_idx[j]):
            if not gauge and (legacy or (pf[i - ulo] != 0.0 if is_float else p_i[i - ulo] != 0)):
                return True, False
            i += 1
        elif i >= uhi or h_idx[j] < u_idx[i]:
            forward = True
            j += 1
        else:
            k = hb + j - hlo
            if not gauge and count_lt(is_float, bi[k], hf[k], p_i[i - ulo], pf[i - ulo]):
                return True, False
            i += 1
            j += 1
    return False, forward


@njit
def merge_into(u_idx: I64, ulo: int, uhi: int, h_idx: I64, hlo: int, hhi: int, tmp: I64) -> int:
    """Sorted union of u_idx[ulo:uhi] and h_idx[hlo:hhi] into tmp; returns its length."""
    i = ulo
    j = hlo
    w = 0
    while i < uhi or j < hhi:
        if j >= hhi or (i < uhi and u_idx[i] < h_idx[j]):
            tmp[w] = u_idx[i]
            i += 1
        elif i >= uhi or h_idx[j] < u_idx[i]:
            tmp[w] = h_idx[j]
            j += 1
        else:
            tmp[w] = u_idx[i]
            i += 1
            j += 1
        w += 1
    return w


@njit
def go_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return -q if (a < 0) != (b < 0) else q


# ---------------------------------------------------------------- encoded size of the open chunk (H9.5)
#
# The 3.x head cuts histogram chunks by their byte size, so appending keeps the bit count encode_chunk would
# write (3.x form, no 2.x trailing byte): the layout's bits plus each sample's, with the encoder's running
# state (previous values, deltas, XOR windows) in two small arrays.

TARGET_BYTES = 1024  # Prometheus' TargetBytesPerHistogramChunk
MIN_SAMPLES = 10  # Prometheus' MinSamplesPerHistogramChunk
EMPTY_LAYOUT_BITS = 11  # zero-threshold code, schema 0, no positive spans, no negative spans (H10)

# indices into the uint64 state: previous t, t delta, count, count delta, zero count, zero-count delta, sum bits
S_T, S_DT, S_C, S_DC, S_Z, S_DZ, S_SUM = 0, 1, 2, 3, 4, 5, 6
# indices into the int64 state: XOR windows (leading, trailing) of count, zero count and sum
W_LC, W_TC, W_LZ, W_TZ, W_LS, W_TS = 0, 1, 2, 3, 4, 5

CUT_HEAD_COUNT = 0  # Prometheus 2.42 head: ~samples_per_chunk samples, end time predicted at a quarter (H9.4)
CUT_FIXED = 1  # a new chunk every samples_per_chunk samples (re-encoding outside the head, H9.6)
CUT_HEAD_SIZE = 2  # Prometheus >= 2.47 / 3.x head: by encoded bytes (H9.5)


@inline
def varbit_bits(v: np.uint64, signed: bool) -> int:
    """Bits put_varbit writes for v."""
    if v == U0:
        return 1
    for k in range(1, 8):
        n = varbit_width(k)
        mask = (U1 << np.uint64(n)) - U1
        if ((v + (mask >> U1)) <= mask) if signed else (v <= mask):
            return k + 1 + n
    return 8 + 64


@inline
def xor_bits(x: np.uint64, lead: int, trail: int) -> tuple[int, int, int]:
    """Bits put_xor writes for x -> (bits, lead, trail) as put_xor leaves the window."""
    if x == U0:
        return 1, lead, trail
    lz = min(clz64(x), 31)
    tz = ctz64(x)
    if lead >= 0 and lz >= lead and tz >= trail:
        return 2 + 64 - lead - trail, lead, trail
    return 13 + 64 - lz - tz, lz, tz


@njit
def layout_bits(schema: int, zt: np.uint64, custom: U64, c0: int, c1: int) -> int:
    """Bits of a layout without its spans (zero threshold, schema, custom bounds)."""
    bits = 8 + (64 if zt_code(zt) == 0xFF else 0) + varbit_bits(np.uint64(schema), True)
    if schema == CUSTOM_BUCKETS_SCHEMA:
        bits += varbit_bits(np.uint64(c1 - c0), False)
        for j in range(c0, c1):
            code_v = custom_bound_code(custom[j])
            bits += 65 if code_v == U0 else varbit_bits(code_v, False)
    return bits


@njit
def given_spans_bits(span_off: I64, span_len: I64, lo: int, hi: int) -> int:
    bits = varbit_bits(np.uint64(hi - lo), False)
    for j in range(lo, hi):
        bits += varbit_bits(np.uint64(span_len[j]), False) + varbit_bits(np.uint64(span_off[j]), True)
    return bits


@njit
def union_spans_bits(idx: I64, lo: int, hi: int) -> int:
    """Bits of the canonical spans of sorted indices (H9.3: a span ends where an index is not the last + 1)."""
    nspans = 0
    body = 0
    j = lo
    prev_end = 0
    while j < hi:
        start = j
        while j + 1 < hi and idx[j + 1] == idx[j] + 1:
            j += 1
        j += 1
        body += varbit_bits(np.uint64(j - start), False) + varbit_bits(np.uint64(idx[start] - prev_end), True)
        prev_end = idx[j - 1] + 1
        nspans += 1
    return varbit_bits(np.uint64(nspans), False) + body


@njit
def sample_bits(
    is_float: bool, first: bool, t: np.uint64, c: np.uint64, z: np.uint64, total: np.uint64, absb: U64,
    npb: int, nb: int, sv: U64, win: I64, bprev: U64, bdelta: U64, blead: I64, btrail: I64,
) -> int:
    """Bits encode_chunk writes for one sample (absolute bucket counts ``absb[:nb]`` on the chunk's layout,
    the first npb positive), updating the encoder state ``sv``/``win``/``b*`` as it does."""
    stale = total == STALE_NAN_BITS_U64
    if stale:
        c = U0
        z = U0
    bits = 0
    if first:
        bits += varbit_bits(t, True)
        bits += 128 if is_float else varbit_bits(c, False) + varbit_bits(z, False)
        bits += 64
        win[:] = -1
        win[W_TC] = 0
        win[W_TZ] = 0
        win[W_TS] = 0
        sv[S_DT] = U0
        sv[S_DC] = U0
        sv[S_DZ] = U0
    else:
        d = t - sv[S_T]
        bits += varbit_bits(d - sv[S_DT], True)
        sv[S_DT] = d
        if is_float:
            n, lead, trail = xor_bits(c ^ sv[S_C], win[W_LC], win[W_TC])
            win[W_LC] = lead
            win[W_TC] = trail
            bits += n
            n, lead, trail = xor_bits(z ^ sv[S_Z], win[W_LZ], win[W_TZ])
            win[W_LZ] = lead
            win[W_TZ] = trail
            bits += n
        elif stale:
            bits += 2
        else:
            d = c - sv[S_C]
            bits += varbit_bits(d - sv[S_DC], True)
            sv[S_DC] = d
            d = z - sv[S_Z]
            bits += varbit_bits(d - sv[S_DZ], True)
            sv[S_DZ] = d
        n, lead, trail = xor_bits(total ^ sv[S_SUM], win[W_LS], win[W_TS])
        win[W_LS] = lead
        win[W_TS] = trail
        bits += n
    prev_abs = U0
    for j in range(0 if stale else nb):
        if is_float:
            v = absb[j]
        else:
            if j == npb:
                prev_abs = U0
            v = absb[j] - prev_abs
            prev_abs = absb[j]
        if first:
            bits += 64 if is_float else varbit_bits(v, True)
            blead[j] = -1
            btrail[j] = 0
            bdelta[j] = U0
        elif is_float:
            n, lead, trail = xor_bits(v ^ bprev[j], blead[j], btrail[j])
            blead[j] = lead
            btrail[j] = trail
            bits += n
        else:
            d = v - bprev[j]
            bits += varbit_bits(d - bdelta[j], True)
            bdelta[j] = d
        bprev[j] = v
    sv[S_T] = t
    sv[S_C] = c
    sv[S_Z] = z
    sv[S_SUM] = total
    return bits


@njit
def expand_onto(
    u_idx: I64, lo: int, mid: int, hi: int, l_idx: I64, l_b: I64, ly: int, b0: int, buckets: U64, out: U64,
) -> None:
    """A sample's absolute counts (layout ly, starting at buckets[b0]) on the indices u_idx[lo:hi] (positive
    up to mid) into out[:hi - lo]; 0 where the sample has no bucket."""
    for side in range(2):
        j = l_b[2 * ly + side]
        jhi = l_b[2 * ly + side + 1]
        k = b0 + j - l_b[2 * ly]
        for i in range(lo if side == 0 else mid, mid if side == 0 else hi):
            if j < jhi and l_idx[j] == u_idx[i]:
                out[i - lo] = buckets[k]
                j += 1
                k += 1
            else:
                out[i - lo] = U0


@njit
def compute_chunk_end(start: int, cur: int, max_t: int, ratio: float) -> int:
    """Prometheus' computeChunkEndTime: the end that spreads the rest of the range over equal chunks."""
    n = float(max_t - start) / (float(cur - start + 1) * ratio)
    if n <= 1.0:
        return max_t
    return int(float(start) + float(max_t - start) / np.floor(n))


@njit
def append_chunks(
    is_float: bool, t: I64, cnt: U64, zc: U64, total: U64, hint: U8, layout: I64,
    bo: I64, buckets: U64, schema: I64, zt: U64, cv_bounds: I64, custom: U64,
    span_bounds: I64, span_off: I64, span_len: I64, chunk_range: int, samples_per_chunk: int,
    cut_mode: int, modern: bool, run_start: Bool,
) -> tuple[I64, U8, I64, I64, I64]:
    """Prometheus' appending of samples (time order within each run, one kind): H8.5, H9.1–H9.3, and where
    chunks end by ``cut_mode`` — CUT_HEAD_COUNT (the 2.42 head, H9.4), CUT_FIXED (every ``samples_per_chunk``
    samples, H9.6) or CUT_HEAD_SIZE (the 3.x head, by encoded bytes, H9.5). ``modern`` selects the 3.x
    appender (empty buckets may disappear, custom-bounds changes are resets) and 3.x headers; otherwise 2.42's.
    A sample with ``run_start`` set starts a new chunk as a series' first sample.

    Returns (chunk bounds, chunk headers, per chunk: the layout id of its first sample or -1 for the empty
    layout of a stale first sample, per chunk side q = 2 * chunk + negative: union indices idx[ub[q]:ub[q+1]]
    (the chunk's final layout; equal to the first sample's when nothing was inserted), ub).
    """
    n = t.shape[0]
    l_idx, l_b = layout_indices(span_bounds, span_off, span_len)
    bi = buckets.view(np.int64)
    ci = cnt.view(np.int64)
    cf = cnt.view(np.float64)
    zi = zc.view(np.int64)
    zf = zc.view(np.float64)
    bounds = np.zeros(n + 1, dtype=np.int64)
    headers = np.zeros(n, dtype=np.uint8)
    base = np.full(n, -1, dtype=np.int64)
    u_idx = np.zeros(16, dtype=np.int64)
    ub = np.zeros(2 * n + 1, dtype=np.int64)
    tmp = np.zeros(16, dtype=np.int64)
    p_f = np.zeros(16, dtype=np.uint64)
    p_i = p_f.view(np.int64)
    by_size = cut_mode == CUT_HEAD_SIZE
    sv = np.zeros(7, dtype=np.uint64)
    win = np.zeros(6, dtype=np.int64)
    bprev = np.zeros(16, dtype=np.uint64)
    bdelta = np.zeros(16, dtype=np.uint64)
    blead = np.zeros(16, dtype=np.int64)
    btrail = np.zeros(16, dtype=np.int64)
    scratch = np.zeros(16, dtype=np.uint64)
    bits = 0  # encoded bits of the open chunk after its 3 header bytes (CUT_HEAD_SIZE only)
    end_computed = False  # Prometheus' histogramChunkHasComputedEndTime
    nc = 0  # chunks started so far; the open chunk is nc - 1
    mint = 0
    next_at = 0
    quarter = samples_per_chunk // 4
    for s in range(n):
        stale = total[s] == STALE_NAN_BITS_U64
        gauge = hint[s] == HINT_GAUGE
        ly = layout[s]
        ok = False
        reset = False
        unknown = False  # 3.x integer appender: "UnknownCounterReset" (schema change, after a stale marker)
        fwd = False
        fresh = nc == 0 or run_start[s]
        size_cut = False
        count_cut = False
        if not fresh:
            c = nc - 1
            held = s - bounds[c]
            if cut_mode == CUT_FIXED:
                count_cut = held >= samples_per_chunk
            elif cut_mode == CUT_HEAD_COUNT:
                if held == quarter:
                    d = (next_at - mint) // ((t[s - 1] - mint + 1) * 4)
                    if d > 1:
                        next_at = mint + (next_at - mint) // d
                count_cut = t[s] >= next_at or held >= 2 * samples_per_chunk
            else:
                nbytes = 3 + (bits + 7) // 8
                if not end_computed and nbytes >= TARGET_BYTES // 4:
                    next_at = compute_chunk_end(mint, t[s - 1], next_at, TARGET_BYTES / nbytes)
                    end_computed = True
                range_end = go_div(mint, chunk_range) * chunk_range + chunk_range
                size_cut = (t[s] >= next_at or nbytes >= 2 * TARGET_BYTES) and (held >= MIN_SAMPLES
                                                                                  or t[s] >= range_end)
            p = s - 1
            p_stale = total[p] == STALE_NAN_BITS_U64
            chunk_gauge = headers[c] == H_GAUGE
            same_scale = base[c] >= 0 and schema[ly] == schema[base[c]] and zt[ly] == zt[base[c]]
            same_bounds = cv_bounds[ly + 1] - cv_bounds[ly] == cv_bounds[base[c] + 1] - cv_bounds[base[c]]
            if same_scale and same_bounds:
                for j in range(cv_bounds[ly + 1] - cv_bounds[ly]):
                    if custom[cv_bounds[ly] + j] != custom[cv_bounds[base[c]] + j]:
                        same_bounds = False
            if gauge != chunk_gauge:
                pass
            elif not gauge and hint[s] == HINT_RESET:
                reset = True
            elif stale:
                ok = True
            elif p_stale:
                unknown = True
            elif not gauge and count_lt(is_float, ci[s], cf[s], ci[p], cf[p]):
                reset = True
            elif base[c] >= 0 and not same_scale:
                unknown = True
            elif base[c] >= 0 and not same_bounds:
                reset = modern and not gauge
                unknown = not reset
            elif not gauge and count_lt(is_float, zi[s], zf[s], zi[p], zf[p]):
                reset = True
            elif base[c] < 0:
                unknown = True
            else:
                hb = bo[s]
                ulo = ub[2 * c]
                legacy = not modern
                reset, fwd_p = compare_side(is_float, gauge, legacy, u_idx, ulo, ub[2 * c + 1], p_i, p_f, 0, l_idx,
                                            l_b[2 * ly], l_b[2 * ly + 1], hb, bi, buckets)
                fwd_n = False
                if not reset:
                    npos = ub[2 * c + 1] - ulo
                    reset, fwd_n = compare_side(is_float, gauge, legacy, u_idx, ub[2 * c + 1], ub[2 * c + 2],
                                                p_i, p_f, npos, l_idx, l_b[2 * ly + 1], l_b[2 * ly + 2],
                                                hb + l_b[2 * ly + 1] - l_b[2 * ly], bi, buckets)
                fwd = (fwd_p or fwd_n) and not reset
                ok = not reset
        if fresh or size_cut or count_cut or not ok or reset:
            c = nc
            nc += 1
            bounds[c] = s
            mint = t[s]
            next_at = go_div(mint, chunk_range) * chunk_range + chunk_range
            if fresh or size_cut:
                end_computed = False  # an appender's own cut keeps the flag, as Prometheus' head does
            headers[c] = new_chunk_header(gauge, hint[s] == HINT_RESET, fresh, size_cut, count_cut, modern,
                                          is_float, ok, reset, unknown)
            start = ub[2 * c]
            if stale:
                base[c] = -1
                ub[2 * c + 1] = start
                ub[2 * c + 2] = start
            else:
                base[c] = ly
                m = l_b[2 * ly + 2] - l_b[2 * ly]
                u_idx = grow(u_idx, start + m)
                u_idx[start : start + m] = l_idx[l_b[2 * ly] : l_b[2 * ly + 2]]
                ub[2 * c + 1] = start + l_b[2 * ly + 1] - l_b[2 * ly]
                ub[2 * c + 2] = start + m
            if by_size:
                bits = EMPTY_LAYOUT_BITS if stale else (
                    layout_bits(schema[ly], zt[ly], custom, cv_bounds[ly], cv_bounds[ly + 1])
                    + given_spans_bits(span_off, span_len, span_bounds[2 * ly], span_bounds[2 * ly + 1])
                    + given_spans_bits(span_off, span_len, span_bounds[2 * ly + 1], span_bounds[2 * ly + 2]))
        elif fwd:
            c = nc - 1
            start = ub[2 * c]
            mid = ub[2 * c + 1]
            end = ub[2 * c + 2]
            tmp = grow(tmp, (end - start) + (l_b[2 * ly + 2] - l_b[2 * ly]))
            wp = merge_into(u_idx, start, mid, l_idx, l_b[2 * ly], l_b[2 * ly + 1], tmp)
            wn = merge_into(u_idx, mid, end, l_idx, l_b[2 * ly + 1], l_b[2 * ly + 2], tmp[wp:])
            u_idx = grow(u_idx, start + wp + wn)
            u_idx[start : start + wp + wn] = tmp[: wp + wn]
            ub[2 * c + 1] = start + wp
            ub[2 * c + 2] = start + wp + wn
            if by_size:
                # a recode re-encodes the chunk's samples on the union layout (H9.3)
                b = base[c]
                bits = (layout_bits(schema[b], zt[b], custom, cv_bounds[b], cv_bounds[b + 1])
                        + union_spans_bits(u_idx, start, start + wp)
                        + union_spans_bits(u_idx, start + wp, start + wp + wn))
                m = wp + wn
                scratch = grow(scratch, m)
                bprev = grow(bprev, m)
                bdelta = grow(bdelta, m)
                blead = grow(blead, m)
                btrail = grow(btrail, m)
                for q in range(bounds[c], s):
                    if total[q] != STALE_NAN_BITS_U64:
                        expand_onto(u_idx, start, start + wp, start + wp + wn, l_idx, l_b, layout[q], bo[q], buckets,
                                    scratch)
                    bits += sample_bits(is_float, q == bounds[c], np.uint64(t[q]), cnt[q], zc[q], total[q], scratch,
                                        wp, m, sv, win, bprev, bdelta, blead, btrail)
        c = nc - 1
        start = ub[2 * c]
        m = ub[2 * c + 2] - start
        if not stale:
            # the last sample's counts, expanded to the chunk's indices
            p_f = grow(p_f, m)
            expand_onto(u_idx, start, ub[2 * c + 1], ub[2 * c + 2], l_idx, l_b, ly, bo[s], buckets, p_f)
            p_i = p_f.view(np.int64)
        if by_size:
            bprev = grow(bprev, m)
            bdelta = grow(bdelta, m)
            blead = grow(blead, m)
            btrail = grow(btrail, m)
            bits += sample_bits(is_float, s == bounds[c], np.uint64(t[s]), cnt[s], zc[s], total[s], p_f,
                                ub[2 * c + 1] - start, m, sv, win, bprev, bdelta, blead, btrail)
    bounds[nc] = n
    return bounds[: nc + 1].copy(), headers[:nc].copy(), base[:nc].copy(), u_idx[: ub[2 * nc]].copy(), \
        ub[: 2 * nc + 1].copy()


@inline
def new_chunk_header(
    gauge: bool, hinted_reset: bool, fresh: bool, size_cut: bool, count_cut: bool, modern: bool, is_float: bool,
    ok: bool, reset: bool, unknown: bool,
) -> np.uint8:
    """The counter-reset header of a chunk that a sample starts (H8.5)."""
    if gauge:
        return np.uint8(H_GAUGE)
    if hinted_reset:
        return np.uint8(H_RESET)
    if fresh or (modern and count_cut):
        return np.uint8(H_UNKNOWN)  # a fresh appender without a previous one (3.x re-encoding too)
    if reset:
        return np.uint8(H_RESET)
    if not modern:
        return np.uint8(H_NOT_RESET if ok else H_UNKNOWN)
    if size_cut:
        # the head asks the previous chunk's appender; float histograms know only reset / not reset
        return np.uint8(H_NOT_RESET if is_float or not unknown else H_UNKNOWN)
    # the appender's own cut: integer chunks carry its verdict, float chunks reset or unknown
    return np.uint8(H_UNKNOWN if is_float or unknown else H_NOT_RESET)


@njit
def expand_samples(
    bounds: I64, u_idx: I64, ub: I64, total: U64, layout: I64, bo: I64,
    buckets: U64, l_idx: I64, l_b: I64,
) -> tuple[U64, I64]:
    """Every non-stale sample's buckets on its chunk's union indices (0 where it has no bucket)."""
    n = total.shape[0]
    k = bounds.shape[0] - 1
    size = 0
    for c in range(k):
        size += (bounds[c + 1] - bounds[c]) * (ub[2 * c + 2] - ub[2 * c])
    out = np.zeros(size, dtype=np.uint64)
    obo = np.zeros(n + 1, dtype=np.int64)
    w = 0
    for c in range(k):
        for s in range(bounds[c], bounds[c + 1]):
            obo[s] = w
            if total[s] == STALE_NAN_BITS_U64:
                continue
            ly = layout[s]
            for side in range(2):
                j = l_b[2 * ly + side]
                jhi = l_b[2 * ly + side + 1]
                q = bo[s] + j - l_b[2 * ly]
                for i in range(ub[2 * c + side], ub[2 * c + side + 1]):
                    if j < jhi and l_idx[j] == u_idx[i]:
                        out[w] = buckets[q]
                        j += 1
                        q += 1
                    w += 1
    obo[n] = w
    return out[:w].copy(), obo
