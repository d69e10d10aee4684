"""Batch kernels for the XOR (Gorilla) float chunk encoding, FORMATS.md §4.

Typing discipline (the kernels also run as plain Python on numpy scalars): every bit pattern, timestamp
and delta is a ``np.uint64`` and only ever meets other ``np.uint64`` values, because numba (like numpy)
turns ``uint64 op int64`` into float64. Timestamps are handled as their uint64 two's-complement bits, so
all time arithmetic wraps exactly like Go's. Counts, positions and shift widths are plain int64 and are
converted with ``np.uint64(...)`` right where they meet a bit pattern. No shift is ever by 64 or more.

Bit positions are absolute: ``pos`` is ``8 * byte_index + bit_in_byte`` within ``buf``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numpy as np

from thanostools.core.kernels._jit import HAVE_NUMBA, njit
from thanostools.core.kernels.dtypes import I64, U64
from thanostools.core.kernels.dtypes import U8 as Bytes  # U8 here is the shift constant 8

F = TypeVar("F", bound=Callable[..., Any])

if HAVE_NUMBA:
    import numba

    def inline(func: F) -> F:
        """njit, inlined into numba callers at the IR level (numba never inlines calls between
        separately compiled functions, and a call per bit-field read costs most of the time)."""
        return cast(F, numba.njit(inline="always", nogil=True)(func))

else:

    def inline(func: F) -> F:
        return func



OK = 0
ERR_SHORT = 1  # fewer than the two header bytes
ERR_TRUNCATED = 2  # the bit stream ends before num_samples samples were read
ERR_VARINT = 3  # a varint longer than 10 bytes or overflowing 64 bits
ERR_WINDOW = 4  # an XOR window with leading + significant bits > 64

U0 = np.uint64(0)
U1 = np.uint64(1)
U2 = np.uint64(2)
U3 = np.uint64(3)
U6 = np.uint64(6)
U7 = np.uint64(7)
U8 = np.uint64(8)
U11 = np.uint64(11)
U14 = np.uint64(14)
U15 = np.uint64(15)
U17 = np.uint64(17)
U20 = np.uint64(20)
U31 = np.uint64(31)
U32 = np.uint64(32)
U40 = np.uint64(40)
U44 = np.uint64(44)
U48 = np.uint64(48)
U51 = np.uint64(51)
U56 = np.uint64(56)
U57 = np.uint64(57)
U60 = np.uint64(60)
U61 = np.uint64(61)
U62 = np.uint64(62)
U63 = np.uint64(63)
U_7F = np.uint64(0x7F)
U_80 = np.uint64(0x80)
U_FF = np.uint64(0xFF)
U_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)

# dod buckets: payload masks, the sign threshold 2^(n-1), the high bits OR-ed in to sign-extend, and the
# offsets that map the (asymmetric) signed range -(2^(n-1)-1) .. 2^(n-1) onto 0 .. 2^n - 1 for one compare.
M14 = np.uint64((1 << 14) - 1)
M17 = np.uint64((1 << 17) - 1)
M20 = np.uint64((1 << 20) - 1)
H14 = np.uint64(1 << 13)
H17 = np.uint64(1 << 16)
H20 = np.uint64(1 << 19)
X14 = np.uint64(((1 << 64) - 1) ^ ((1 << 14) - 1))
X17 = np.uint64(((1 << 64) - 1) ^ ((1 << 17) - 1))
X20 = np.uint64(((1 << 64) - 1) ^ ((1 << 20) - 1))
B14 = np.uint64((1 << 13) - 1)
B17 = np.uint64((1 << 16) - 1)
B20 = np.uint64((1 << 19) - 1)
PREFIX_14 = np.uint64(0b10 << 14)
PREFIX_17 = np.uint64(0b110 << 17)
PREFIX_20 = np.uint64(0b1110 << 20)

# Readers load whole 64-bit words without bounds checks; they never touch more than PAD bytes past the
# end of a chunk (chunks closer than that to the end of the buffer are decoded from a padded copy).
PAD = 32

# Worst case bytes of one encoded chunk of n samples, plus slack: header, varint t0, v0, uvarint t1-t0,
# then at most 68 + 77 bits per sample.
CHUNK_OVERHEAD = 40
BYTES_PER_SAMPLE_MAX = 19


@inline
def to_int(x: np.integer[Any]) -> int:
    """An int64 count from any integer scalar (numba's int() keeps unsigned types unsigned)."""
    return np.int64(x)  # type: ignore[return-value]


if HAVE_NUMBA:
    from numba.cpython.unsafe.numbers import leading_zeros, trailing_zeros

    @inline
    def clz64(x: np.uint64) -> int:
        return np.int64(leading_zeros(x))  # type: ignore[call-arg,return-value]

    @inline
    def ctz64(x: np.uint64) -> int:
        return np.int64(trailing_zeros(x))  # type: ignore[call-arg,return-value]

else:

    def clz64(x: np.uint64) -> int:
        return 64 - int(x).bit_length()

    def ctz64(x: np.uint64) -> int:
        i = int(x)
        return 64 if i == 0 else (i & -i).bit_length() - 1


# ---------------------------------------------------------------- reading


if HAVE_NUMBA:
    from llvmlite import ir
    from numba.core import types
    from numba.extending import intrinsic

    @intrinsic
    def be64_unaligned(typingctx: Any, arr: Any, idx: Any) -> Any:
        """One unaligned 8-byte load plus a byte swap: LLVM does not merge the 8 byte loads itself."""
        if not (isinstance(arr, types.Array) and arr.dtype == types.uint8 and isinstance(idx, types.Integer)):
            return None

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            data = context.make_array(signature.args[0])(context, builder, args[0]).data
            i64 = ir.IntType(64)
            word = builder.load(builder.bitcast(builder.gep(data, [args[1]]), i64.as_pointer()), align=1)
            return builder.call(builder.module.declare_intrinsic("llvm.bswap", [i64]), [word])

        return types.uint64(arr, idx), codegen

    @inline
    def load_be64(buf: Bytes, p: int) -> np.uint64:
        """Eight bytes at byte index p, big-endian. No bounds check: callers keep PAD bytes after a chunk."""
        return be64_unaligned(buf, p)  # type: ignore[call-arg]

else:

    def load_be64(buf: Bytes, p: int) -> np.uint64:
        """Eight bytes at byte index p, big-endian (unsigned indexes keep numpy from switching to float)."""
        q = np.uint64(p)
        return (
            (np.uint64(buf[q]) << U56)
            | (np.uint64(buf[q + U1]) << U48)
            | (np.uint64(buf[q + U2]) << U40)
            | (np.uint64(buf[q + U3]) << U32)
            | (np.uint64(buf[q + np.uint64(4)]) << np.uint64(24))
            | (np.uint64(buf[q + np.uint64(5)]) << np.uint64(16))
            | (np.uint64(buf[q + U6]) << U8)
            | np.uint64(buf[q + U7])
        )


@inline
def peek(buf: Bytes, pos: int) -> np.uint64:
    """The bits from pos on, left-aligned; at least the top 57 are meaningful."""
    return load_be64(buf, pos >> 3) << np.uint64(pos & 7)


@inline
def read_bits(buf: Bytes, pos: int, n: int) -> np.uint64:
    """n bits (1 <= n <= 64) from pos, right-aligned."""
    if n <= 56:
        return peek(buf, pos) >> np.uint64(64 - n)
    hi = peek(buf, pos) >> U32
    lo = peek(buf, pos + 32) >> np.uint64(96 - n)
    return (hi << np.uint64(n - 32)) | lo


@njit
def read_uvarint(buf: Bytes, p: int, end: int) -> tuple[np.uint64, int, int]:
    """Go binary.Uvarint over whole bytes buf[p:end] -> (value, next byte index, status)."""
    x = U0
    s = U0
    for i in range(10):
        if p + i >= end:
            return U0, p, ERR_TRUNCATED
        b = np.uint64(buf[p + i])
        if b < U_80:
            if i == 9 and b > U1:
                return U0, p, ERR_VARINT
            return x | (b << s), p + i + 1, OK
        x = x | ((b & U_7F) << s)
        s = s + U7
    return U0, p, ERR_VARINT


@inline
def read_dod(buf: Bytes, pos: int) -> tuple[np.uint64, int, np.uint64, int]:
    """One varbit_dod -> (dod as uint64 two's complement, next pos, the bits from next pos on
    left-aligned, how many of those are meaningful), so the value can often skip its own load."""
    w = peek(buf, pos)
    if (w >> U63) == U0:
        return U0, pos + 1, w << U1, 56
    if (w >> U62) == U2:
        d = (w >> U48) & M14
        return (d | X14) if d > H14 else d, pos + 16, w << np.uint64(16), 41
    if (w >> U61) == U6:
        d = (w >> U44) & M17
        return (d | X17) if d > H17 else d, pos + 20, w << U20, 37
    if (w >> U60) == np.uint64(14):
        d = (w >> U40) & M20
        return (d | X20) if d > H20 else d, pos + 24, w << np.uint64(24), 33
    return read_bits(buf, pos + 4, 64), pos + 68, peek(buf, pos + 68), 57


@inline
def read_xor(
    buf: Bytes, pos: int, w: np.uint64, avail: int, lead: int, trail: int
) -> tuple[np.uint64, int, int, int]:
    """One varbit_xor at pos, whose first `avail` bits are already in w (left-aligned).

    Returns (xor, next pos, window leading, window trailing); next pos -1 means a bad window.
    """
    if (w >> U63) == U0:
        return U0, pos + 1, lead, trail
    if (w >> U62) == U2:
        nb = 64 - lead - trail
        m = ((w << U2) >> np.uint64(64 - nb)) if nb + 2 <= avail else read_bits(buf, pos + 2, nb)
        return m << np.uint64(trail), pos + 2 + nb, lead, trail
    lead = to_int((w >> U57) & U31)
    sig = to_int((w >> U51) & np.uint64(63))
    if sig == 0:
        sig = 64
    trail = 64 - lead - sig
    if trail < 0:
        return U0, -1, lead, 0
    m = ((w << np.uint64(13)) >> np.uint64(64 - sig)) if sig + 13 <= avail else read_bits(buf, pos + 13, sig)
    return m << np.uint64(trail), pos + 13 + sig, lead, trail


@njit
def decode_chunk(buf: Bytes, start: int, end: int, t_out: U64, v_out: U64, o: int) -> int:
    """Decode the XOR chunk buf[start:end] into t_out/v_out from index o on; returns a status."""
    n = (to_int(buf[start]) << 8) | to_int(buf[start + 1])
    if n == 0:
        return OK
    u, p, st = read_uvarint(buf, start + 2, end)
    if st != OK:
        return st
    t = (u >> U1) ^ (U_ALL if (u & U1) != U0 else U0)
    if p + 8 > end:
        return ERR_TRUNCATED
    v = load_be64(buf, p)
    t_out[o] = t
    v_out[o] = v
    if n == 1:
        return OK
    delta, p, st = read_uvarint(buf, p + 8, end)
    if st != OK:
        return st
    pos = p * 8
    endbit = end * 8
    lead = 0
    trail = 0
    for i in range(1, n):
        if i > 1:
            dod, pos, w, avail = read_dod(buf, pos)
            if pos > endbit:
                return ERR_TRUNCATED
            delta = delta + dod
        else:
            w = peek(buf, pos)
            avail = 57
        t = t + delta
        x, nxt, lead, trail = read_xor(buf, pos, w, avail, lead, trail)
        if nxt < 0:
            return ERR_TRUNCATED if pos + 13 > endbit else ERR_WINDOW
        pos = nxt
        if pos > endbit:
            return ERR_TRUNCATED
        v = v ^ x
        t_out[o + i] = t
        v_out[o + i] = v
    return OK


@njit
def decode_chunks(
    buf: Bytes, starts: I64, ends: I64
) -> tuple[I64, U64, U64, int, int]:
    """Decode every chunk buf[starts[i]:ends[i]] (spans already checked to lie inside buf).

    Returns (offsets, t bits, v bits, index of the first bad chunk or -1, status).
    """
    k = starts.shape[0]
    offsets = np.zeros(k + 1, dtype=np.int64)
    for i in range(k):
        s = starts[i]
        if ends[i] - s < 2:
            return offsets, np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.uint64), i, ERR_SHORT
        offsets[i + 1] = offsets[i] + ((to_int(buf[s]) << 8) | to_int(buf[s + 1]))
    t_out = np.empty(offsets[k], dtype=np.uint64)
    v_out = np.empty(offsets[k], dtype=np.uint64)
    nbuf = buf.shape[0]
    for i in range(k):
        s = starts[i]
        e = ends[i]
        if e + PAD <= nbuf:
            st = decode_chunk(buf, s, e, t_out, v_out, offsets[i])
        else:
            padded = np.zeros(e - s + PAD, dtype=np.uint8)
            padded[: e - s] = buf[s:e]
            st = decode_chunk(padded, 0, e - s, t_out, v_out, offsets[i])
        if st != OK:
            return offsets, t_out, v_out, i, st
    return offsets, t_out, v_out, -1, OK


# ---------------------------------------------------------------- writing
#
# The writer keeps up to 63 pending bits left-aligned in `acc` (`nacc` of them) and stores whole
# 64-bit words at byte index `op`; the caller reserves room for the worst case beforehand.


@inline
def store_be64(out: Bytes, op: int, w: np.uint64) -> None:
    for k in range(8):
        out[op + k] = np.uint8((w >> np.uint64(56 - 8 * k)) & U_FF)


@inline
def put(out: Bytes, op: int, acc: np.uint64, nacc: int, x: np.uint64, n: int) -> tuple[int, np.uint64, int]:
    """Append the n low bits of x (1 <= n <= 64; no higher bits set) -> (op, acc, nacc)."""
    free = 64 - nacc
    if n < free:
        return op, acc | (x << np.uint64(free - n)), nacc + n
    over = n - free
    store_be64(out, op, acc | (x >> np.uint64(over)))
    if over == 0:
        return op + 8, U0, 0
    return op + 8, x << np.uint64(64 - over), over


@inline
def flush(out: Bytes, op: int, acc: np.uint64, nacc: int) -> int:
    """Write the pending bits, zero-padded to a byte boundary; returns the next byte index."""
    nbytes = (nacc + 7) >> 3
    for k in range(nbytes):
        out[op + k] = np.uint8((acc >> np.uint64(56 - 8 * k)) & U_FF)
    return op + nbytes


@inline
def put_uvarint(out: Bytes, op: int, acc: np.uint64, nacc: int, u: np.uint64) -> tuple[int, np.uint64, int]:
    while u >= U_80:
        op, acc, nacc = put(out, op, acc, nacc, (u & U_7F) | U_80, 8)
        u = u >> U7
    return put(out, op, acc, nacc, u, 8)


@inline
def put_dod(out: Bytes, op: int, acc: np.uint64, nacc: int, dod: np.uint64) -> tuple[int, np.uint64, int]:
    """varbit_dod; dod is the uint64 two's complement of the signed value."""
    if dod == U0:
        return put(out, op, acc, nacc, U0, 1)
    if dod + B14 <= M14:
        return put(out, op, acc, nacc, PREFIX_14 | (dod & M14), 16)
    if dod + B17 <= M17:
        return put(out, op, acc, nacc, PREFIX_17 | (dod & M17), 20)
    if dod + B20 <= M20:
        return put(out, op, acc, nacc, PREFIX_20 | (dod & M20), 24)
    op, acc, nacc = put(out, op, acc, nacc, U15, 4)
    return put(out, op, acc, nacc, dod, 64)


@inline
def put_xor(
    out: Bytes, op: int, acc: np.uint64, nacc: int, x: np.uint64, lead: int, trail: int
) -> tuple[int, np.uint64, int, int, int]:
    """varbit_xor; lead < 0 means no window yet. Returns (op, acc, nacc, lead, trail)."""
    if x == U0:
        op, acc, nacc = put(out, op, acc, nacc, U0, 1)
        return op, acc, nacc, lead, trail
    lz = min(clz64(x), 31)
    tz = ctz64(x)
    if lead >= 0 and lz >= lead and tz >= trail:
        nb = 64 - lead - trail
        m = x >> np.uint64(trail)
        if nb <= 62:
            op, acc, nacc = put(out, op, acc, nacc, (U2 << np.uint64(nb)) | m, nb + 2)
        else:
            op, acc, nacc = put(out, op, acc, nacc, U2, 2)
            op, acc, nacc = put(out, op, acc, nacc, m, nb)
        return op, acc, nacc, lead, trail
    sig = 64 - lz - tz
    head = (U3 << U11) | (np.uint64(lz) << U6) | np.uint64(sig & 63)  # 64 significant bits -> 0
    m = x >> np.uint64(tz)
    if sig <= 51:
        op, acc, nacc = put(out, op, acc, nacc, (head << np.uint64(sig)) | m, 13 + sig)
    else:
        op, acc, nacc = put(out, op, acc, nacc, head, 13)
        op, acc, nacc = put(out, op, acc, nacc, m, sig)
    return op, acc, nacc, lz, tz


@njit
def encode_chunk(tb: U64, vb: U64, lo: int, hi: int, out: Bytes, op: int) -> int:
    """Encode samples lo:hi as one chunk at out[op:]; returns the byte index after it."""
    n = hi - lo
    out[op] = np.uint8((n >> 8) & 0xFF)
    out[op + 1] = np.uint8(n & 0xFF)
    op += 2
    if n == 0:
        return op
    acc = U0
    nacc = 0
    t_prev = tb[lo]
    zigzag = (t_prev << U1) ^ (U_ALL if (t_prev >> U63) != U0 else U0)
    op, acc, nacc = put_uvarint(out, op, acc, nacc, zigzag)
    v_prev = vb[lo]
    op, acc, nacc = put(out, op, acc, nacc, v_prev, 64)
    if n > 1:
        delta = tb[lo + 1] - t_prev
        op, acc, nacc = put_uvarint(out, op, acc, nacc, delta)
        lead = -1
        trail = 0
        t_prev = tb[lo + 1]
        op, acc, nacc, lead, trail = put_xor(out, op, acc, nacc, vb[lo + 1] ^ v_prev, lead, trail)
        v_prev = vb[lo + 1]
        for i in range(lo + 2, hi):
            t = tb[i]
            d = t - t_prev
            op, acc, nacc = put_dod(out, op, acc, nacc, d - delta)
            op, acc, nacc, lead, trail = put_xor(out, op, acc, nacc, vb[i] ^ v_prev, lead, trail)
            delta = d
            t_prev = t
            v_prev = vb[i]
    return flush(out, op, acc, nacc)


@njit
def encode_chunks(tb: U64, vb: U64, bounds: I64, capacity: int) -> tuple[Bytes, I64]:
    """Encode chunk j = samples bounds[j]:bounds[j+1] for every j, back to back in one byte buffer.

    The buffer starts with `capacity` bytes and grows (doubling) whenever the next chunk's worst case
    might not fit. Returns (bytes, offsets) with chunk j at bytes[offsets[j]:offsets[j+1]].
    """
    k = bounds.shape[0] - 1
    out = np.empty(max(capacity, 0), dtype=np.uint8)
    offsets = np.zeros(k + 1, dtype=np.int64)
    op = 0
    for j in range(k):
        lo = bounds[j]
        hi = bounds[j + 1]
        need = op + CHUNK_OVERHEAD + BYTES_PER_SAMPLE_MAX * (hi - lo)
        if need > out.shape[0]:
            grown = np.empty(max(need, 2 * out.shape[0]), dtype=np.uint8)
            grown[:op] = out[:op]
            out = grown
        op = encode_chunk(tb, vb, lo, hi, out, op)
        offsets[j + 1] = op
    return out[:op], offsets
