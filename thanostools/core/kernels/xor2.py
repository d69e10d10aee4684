"""Batch decoder for float chunks of both encodings: XOR (1, FORMATS.md §4) and XOR2 (4, HISTOGRAMS.md H11.3).

XOR2 keeps XOR's sample 0 and 1 (varint t0, raw v0, uvarint t1 - t0), then joins the timestamp and value control
bits (a `0` means "same delta, same value"), XORs against the last non-stale value (stale markers have their own
codes) and may carry start timestamps (H11.1) after each sample. Same discipline as ``kernels/xor.py``: bit
patterns and times are ``np.uint64``, positions plain ints; reads run ahead of the end checks, so a chunk is
decoded in place only when ``histogram.HIST_PAD`` bytes follow it (else from a padded copy).
"""

from __future__ import annotations

import numpy as np

from thanostools.core.kernels import xor as xk
from thanostools.core.kernels._jit import njit
from thanostools.core.kernels.dtypes import I64, U8, U64
from thanostools.core.kernels.histogram import padded_view, read_bit_uvarint, read_varbit
from thanostools.core.kernels.stale import STALE_NAN_BITS_U64
from thanostools.core.kernels.xor import OK, U0, U1, U63, U_ALL, inline, peek, read_bits, to_int

ENC_XOR = 1
ENC_XOR2 = 4

ERR_ENCODING = 5  # not a float chunk encoding (1 or 4)

U6 = np.uint64(6)
U14 = np.uint64(14)
U30 = np.uint64(30)
U59 = np.uint64(59)
U60 = np.uint64(60)
U61 = np.uint64(61)
U62 = np.uint64(62)
M13 = np.uint64((1 << 13) - 1)
M20 = np.uint64((1 << 20) - 1)
H13 = np.uint64(1 << 12)
H20 = np.uint64(1 << 19)
X13 = np.uint64(((1 << 64) - 1) ^ ((1 << 13) - 1))
X20 = np.uint64(((1 << 64) - 1) ^ ((1 << 20) - 1))

# joint control codes of samples >= 2
CTRL_SAME = 0  # `0`: dod 0, value unchanged
CTRL_CHANGED = 1  # `10`: dod 0, value changed (xor2nn form)
CTRL_DOD = 2  # `110` / `1110` / `11110`: dod != 0, value in xor2 form
CTRL_STALE = 3  # `11111`: dod 0, stale marker


@inline
def zigzag(u: np.uint64) -> np.uint64:
    return (u >> U1) ^ (U_ALL if (u & U1) != U0 else U0)


@inline
def read_control(buf: U8, pos: int) -> tuple[int, np.uint64, int]:
    """The joint control of a sample >= 2 -> (CTRL_*, dod as uint64 two's complement, next pos)."""
    w = peek(buf, pos)
    if (w >> U63) == U0:
        return CTRL_SAME, U0, pos + 1
    if (w >> U62) == np.uint64(2):
        return CTRL_CHANGED, U0, pos + 2
    if (w >> U61) == U6:
        d = (w >> np.uint64(48)) & M13
        return CTRL_DOD, ((d | X13) if d >= H13 else d), pos + 16
    if (w >> U60) == U14:
        d = (w >> np.uint64(40)) & M20
        return CTRL_DOD, ((d | X20) if d >= H20 else d), pos + 24
    if (w >> U59) == U30:
        return CTRL_DOD, read_bits(buf, pos + 5, 64), pos + 69
    return CTRL_STALE, U0, pos + 5


@inline
def read_window(buf: U8, pos: int) -> tuple[np.uint64, int, int, int]:
    """A new window (L 5 bits, S 6 bits with 0 meaning 64, then S bits) -> (xor, next pos, lead, trail);
    next pos -1 when L + S exceeds 64."""
    head = read_bits(buf, pos, 11)
    lead = to_int(head >> U6)
    sig = to_int(head & np.uint64(63))
    if sig == 0:
        sig = 64
    trail = 64 - lead - sig
    if trail < 0:
        return U0, -1, lead, 0
    return read_bits(buf, pos + 11, sig) << np.uint64(trail), pos + 11 + sig, lead, trail


@inline
def read_reuse(buf: U8, pos: int, lead: int, trail: int) -> tuple[np.uint64, int]:
    nb = 64 - lead - trail
    return read_bits(buf, pos, nb) << np.uint64(trail), pos + nb


@njit
def decode_xor2_chunk(buf: U8, start: int, end: int, t_out: U64, v_out: U64, st_out: U64, o: int) -> tuple[int, int]:
    """Decode the XOR2 chunk buf[start:end] into the outputs from index o on -> (status, bit of the bad field
    counted from the chunk's first byte)."""
    n = (to_int(buf[start]) << 8) | to_int(buf[start + 1])
    st_header = to_int(buf[start + 2])
    st_known = (st_header >> 7) != 0
    change_on = st_header & 0x7F
    base = start * 8
    endbit = end * 8
    pos = base + 24
    if n == 0:
        return OK, 0
    u, pos, status = read_bit_uvarint(buf, pos, endbit)
    if status != OK:
        return status, pos - base
    t = zigzag(u)
    if pos + 64 > endbit:
        return xk.ERR_TRUNCATED, pos - base
    v = read_bits(buf, pos, 64)
    pos += 64
    ref = U0 if v == STALE_NAN_BITS_U64 else v  # the XOR reference: the last non-stale value
    st = U0
    if st_known:
        u, pos, status = read_bit_uvarint(buf, pos, endbit)
        if status != OK:
            return status, pos - base
        st = t - zigzag(u)
    t_out[o] = t
    v_out[o] = v
    st_out[o] = st
    delta = U0
    st_d = U0
    lead = 0
    trail = 0
    for i in range(1, n):
        field = pos
        t_prev = t
        if i == 1:
            delta, pos, status = read_bit_uvarint(buf, pos, endbit)
            if status != OK:
                return status, field - base
            ctrl = CTRL_DOD
        else:
            ctrl, dod, pos = read_control(buf, pos)
            delta = delta + dod
        t = t + delta
        if pos > endbit:
            return xk.ERR_TRUNCATED, field - base
        field = pos
        if ctrl == CTRL_SAME:
            v = ref
        elif ctrl == CTRL_STALE:
            v = STALE_NAN_BITS_U64
        else:
            w = peek(buf, pos)
            if ctrl == CTRL_CHANGED:  # xor2nn: `0` reuse, `1` new window
                if (w >> U63) == U0:
                    x, pos = read_reuse(buf, pos + 1, lead, trail)
                else:
                    x, pos, lead, trail = read_window(buf, pos + 1)
            elif (w >> U63) == U0:  # xor2: `0` unchanged, `10` reuse, `110` new window, `111` stale
                x, pos = U0, pos + 1
            elif (w >> U62) == np.uint64(2):
                x, pos = read_reuse(buf, pos + 2, lead, trail)
            elif (w >> U61) == U6:
                x, pos, lead, trail = read_window(buf, pos + 3)
            else:
                x, pos = U0, pos + 3
                ctrl = CTRL_STALE
            if pos < 0:
                return (xk.ERR_TRUNCATED if field + 14 > endbit else xk.ERR_WINDOW), field - base
            if ctrl == CTRL_STALE:
                v = STALE_NAN_BITS_U64
            else:
                ref = ref ^ x
                v = ref
        if pos > endbit:
            return xk.ERR_TRUNCATED, field - base
        if change_on != 0 and i >= change_on:
            field = pos
            d, pos = read_varbit(buf, pos, True)
            if pos > endbit:
                return xk.ERR_TRUNCATED, field - base
            st_d = d if i == change_on else st_d + d
            st = t_prev - st_d
        t_out[o + i] = t
        v_out[o + i] = v
        st_out[o + i] = st
    return OK, 0


@njit
def decode_chunks(
    buf: U8, starts: I64, ends: I64, encs: I64
) -> tuple[I64, U64, U64, U64, int, int, int]:
    """Decode every XOR / XOR2 chunk buf[starts[i]:ends[i]] (spans already checked to lie inside buf).

    Returns (offsets, t bits, v bits, st bits, index of the first bad chunk or -1, status, bit in that chunk).
    """
    k = starts.shape[0]
    offsets = np.zeros(k + 1, dtype=np.int64)
    none = np.empty(0, dtype=np.uint64)
    for i in range(k):
        s = starts[i]
        if encs[i] != ENC_XOR and encs[i] != ENC_XOR2:
            return offsets, none, none, none, i, ERR_ENCODING, 0
        if ends[i] - s < (3 if encs[i] == ENC_XOR2 else 2):
            return offsets, none, none, none, i, xk.ERR_SHORT, 0
        offsets[i + 1] = offsets[i] + ((to_int(buf[s]) << 8) | to_int(buf[s + 1]))
    t_out = np.empty(offsets[k], dtype=np.uint64)
    v_out = np.empty(offsets[k], dtype=np.uint64)
    st_out = np.zeros(offsets[k], dtype=np.uint64)
    for i in range(k):
        b, s, e = padded_view(buf, starts[i], ends[i])
        if encs[i] == ENC_XOR2:
            status, bit = decode_xor2_chunk(b, s, e, t_out, v_out, st_out, offsets[i])
        else:
            status = xk.decode_chunk(b, s, e, t_out, v_out, offsets[i])
            bit = 0
        if status != OK:
            return offsets, t_out, v_out, st_out, i, status, bit
    return offsets, t_out, v_out, st_out, -1, OK, 0
