"""Fast parser for the Prometheus (0.0.4) and OpenMetrics (1.0) text exposition formats.

One compiled pass over the whole buffer finds every sample line, recognises its series key (the
bytes before the value), parses value and timestamp and records which distinct key the line
carries. Keys are recognised without hashing in the common layouts (all samples of a series in a
row, or the same series order in every scrape) by comparing against the predicted key. Label
sets are parsed in Python once per distinct key. Values Go's ``strconv.ParseFloat`` would round
in a way the compiled parser cannot prove (more than 19 digits, subnormals, Eisel-Lemire
ambiguity) are handed to Python's correctly rounded ``float``.
"""

from __future__ import annotations

import itertools
import os
import re
import struct
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numpy as np

from thanostools.core.errors import ConfigError, FormatError
from thanostools.core.kernels._jit import HAVE_NUMBA, njit
from thanostools.core.labels import METRIC_NAME, Labels

__all__ = ["NAN_BITS", "ParsedSamples", "detect_format", "parse_exposition"]

NAN_BITS = 0x7FF8000000000001  # Go's math.NaN(), which Prometheus stores for "NaN"


@dataclass(frozen=True)
class ParsedSamples:
    series: list[Labels]
    series_index: np.ndarray  # int32, one per sample
    t: np.ndarray  # int64 ms
    v: np.ndarray  # uint64 float64 bits

    def __len__(self) -> int:
        return int(self.t.size)


F = TypeVar("F", bound=Callable[..., Any])


def _inline(func: F) -> F:
    """Inlined into the caller at numba IR level: no call, no reference counting."""
    if not HAVE_NUMBA:  # pragma: no cover
        return func
    import numba

    return cast(F, numba.njit(cache=True, nogil=True, inline="always")(func))


# --------------------------------------------------------------------------------------------
# Bit casts and unaligned loads inside compiled code, with plain-Python equivalents.


def _py_f64_bits(x: Any) -> Any:
    return np.uint64(struct.unpack("<Q", struct.pack("<d", float(x)))[0])


def _py_bits_f64(x: Any) -> Any:
    return struct.unpack("<d", struct.pack("<Q", int(x)))[0]


def _py_load_u64(arr: Any, idx: Any) -> Any:
    return np.uint64(int.from_bytes(arr[idx : idx + 8].tobytes(), "little"))


def _intrinsics() -> tuple[Any, Any, Any]:
    from llvmlite import ir  # type: ignore[import-untyped,unused-ignore]
    from numba import types
    from numba.extending import intrinsic

    def f64_bits(typingctx: Any, x: Any) -> Any:
        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            return builder.bitcast(args[0], ir.IntType(64))

        return types.uint64(types.float64), codegen

    def bits_f64(typingctx: Any, x: Any) -> Any:
        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            return builder.bitcast(args[0], ir.DoubleType())

        return types.float64(types.uint64), codegen

    def load_u64(typingctx: Any, arr: Any, idx: Any) -> Any:
        """Eight bytes of a uint8 array from idx on, unaligned, no bounds check."""

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            data = context.make_array(signature.args[0])(context, builder, args[0]).data
            wide = builder.bitcast(builder.gep(data, [args[1]]), ir.IntType(64).as_pointer())
            return builder.load(wide, align=1)

        return types.uint64(arr, types.intp), codegen

    make: Any = intrinsic
    return make(f64_bits), make(bits_f64), make(load_u64)


_f64_bits: Any = _py_f64_bits
_bits_f64: Any = _py_bits_f64
_load_u64: Any = _py_load_u64
if HAVE_NUMBA:
    _f64_bits, _bits_f64, _load_u64 = _intrinsics()


# --------------------------------------------------------------------------------------------
# Tables for decimal -> binary conversion.

_POW10_MIN = -348
_POW10_MAX = 347


def _pow10_table() -> tuple[np.ndarray, np.ndarray]:
    """128-bit mantissas of 10**q, normalised (top bit set) and rounded down."""
    hi = np.empty(_POW10_MAX - _POW10_MIN + 1, dtype=np.uint64)
    lo = np.empty_like(hi)
    for i, q in enumerate(range(_POW10_MIN, _POW10_MAX + 1)):
        if q >= 0:
            m = 5**q
            bits = m.bit_length()
            m = m >> (bits - 128) if bits > 128 else m << (128 - bits)
        else:
            d = 5**-q
            m = (1 << (d.bit_length() + 127)) // d
        hi[i] = m >> 64
        lo[i] = m & 0xFFFFFFFFFFFFFFFF
    return hi, lo


_POW_HI, _POW_LO = _pow10_table()
_EXACT_POW10 = np.array([10.0**i for i in range(23)], dtype=np.float64)

_U0 = np.uint64(0)
_U1 = np.uint64(1)
_M32 = np.uint64(0xFFFFFFFF)
_LOW9 = np.uint64(0x1FF)
_MANT52 = np.uint64((1 << 52) - 1)
_SIGN = np.uint64(1 << 63)
_INF_BITS = np.uint64(0x7FF0000000000000)
_NAN = np.uint64(NAN_BITS)
_TWO53 = np.uint64(1 << 53)
_U10 = np.uint64(10)
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)

# status codes of the float parser
_OK = 0
_SLOW = 1
_BAD = 2


@_inline
def _mul128(a: Any, b: Any) -> Any:
    a_lo = a & _M32
    a_hi = a >> np.uint64(32)
    b_lo = b & _M32
    b_hi = b >> np.uint64(32)
    p0 = a_lo * b_lo
    p1 = a_lo * b_hi
    p2 = a_hi * b_lo
    p3 = a_hi * b_hi
    mid = (p0 >> np.uint64(32)) + (p1 & _M32) + (p2 & _M32)
    lo = (p0 & _M32) | ((mid & _M32) << np.uint64(32))
    hi = p3 + (p1 >> np.uint64(32)) + (p2 >> np.uint64(32)) + (mid >> np.uint64(32))
    return hi, lo


@_inline
def _normalize(x: Any) -> Any:
    """Shift x (non-zero) left until its top bit is set; returns (shifted, shift)."""
    n = 0
    for width in (32, 16, 8, 4, 2, 1):
        if (x >> np.uint64(64 - width)) == _U0:
            x = x << np.uint64(width)
            n += width
    return x, n


@njit
def _eisel_lemire(man: Any, exp10: int) -> Any:
    """Correctly rounded man * 10**exp10 as float64 bits, or (False, 0) when undecidable."""
    man, clz = _normalize(man)
    exp2 = ((217706 * exp10) >> 16) + 64 + 1023 - clz
    idx = exp10 - _POW10_MIN
    x_hi, x_lo = _mul128(man, _POW_HI[idx])
    if (x_hi & _LOW9) == _LOW9 and x_lo + man < x_lo:
        y_hi, y_lo = _mul128(man, _POW_LO[idx])
        m_hi = x_hi
        m_lo = x_lo + y_hi
        if m_lo < x_lo:
            m_hi += _U1
        if (m_hi & _LOW9) == _LOW9 and m_lo + _U1 == _U0 and y_lo + man < y_lo:
            return False, _U0
        x_hi = m_hi
        x_lo = m_lo
    msb = x_hi >> np.uint64(63)
    ret = x_hi >> (msb + np.uint64(9))
    exp2 -= 1 - int(msb)
    if x_lo == _U0 and (x_hi & _LOW9) == _U0 and (ret & np.uint64(3)) == _U1:
        return False, _U0
    ret += ret & _U1
    ret >>= _U1
    if (ret >> np.uint64(53)) > _U0:
        ret >>= _U1
        exp2 += 1
    if exp2 <= 0 or exp2 >= 0x7FF:
        return False, _U0
    return True, (np.uint64(exp2) << np.uint64(52)) | (ret & _MANT52)


@_inline
def _lower(c: int) -> int:
    return c | 0x20


@_inline
def _parse_special(buf: Any, i: int, e: int, signed: bool) -> Any:
    """inf / infinity (any case, optional sign) and nan (any case, no sign), like Go."""
    n = e - i
    c = _lower(buf[i])
    if c == 110:  # 'n'
        if signed or n != 3 or _lower(buf[i + 1]) != 97 or _lower(buf[i + 2]) != 110:
            return _BAD, _U0
        return _OK, _NAN
    word = (105, 110, 102, 105, 110, 105, 116, 121)  # "infinity"
    if n != 3 and n != 8:
        return _BAD, _U0
    for j in range(n):
        if _lower(buf[i + j]) != word[j]:
            return _BAD, _U0
    return _OK, _INF_BITS


@_inline
def _parse_float(buf: Any, s: int, e: int) -> Any:
    """Parse buf[s:e] like Go's strconv.ParseFloat (decimal only). Returns (status, bits)."""
    i = s
    neg = False
    c = buf[i]
    if c == 45 or c == 43:
        neg = c == 45
        i += 1
        if i >= e:
            return _BAD, _U0
    c = buf[i]
    if c >= 65:
        status, bits = _parse_special(buf, i, e, i != s)
        return status, (bits | _SIGN) if neg and status == _OK else bits
    man = _U0
    nd = 0
    exp = 0
    digits = 0
    truncated = False
    while i < e and 48 <= buf[i] <= 57:
        d = np.uint64(buf[i] - 48)
        digits += 1
        if nd < 19:
            if man != _U0 or d != _U0:
                man = man * _U10 + d
                nd += 1
        else:
            exp += 1
            truncated = truncated or d != _U0
        i += 1
    if i < e and buf[i] == 46:
        i += 1
        while i < e and 48 <= buf[i] <= 57:
            d = np.uint64(buf[i] - 48)
            digits += 1
            if nd < 19:
                if man != _U0 or d != _U0:
                    man = man * _U10 + d
                    nd += 1
                exp -= 1
            else:
                truncated = truncated or d != _U0
            i += 1
    if digits == 0:
        return _BAD, _U0
    if i < e and (buf[i] == 101 or buf[i] == 69):
        i += 1
        eneg = False
        if i < e and (buf[i] == 45 or buf[i] == 43):
            eneg = buf[i] == 45
            i += 1
        if i >= e:
            return _BAD, _U0
        ev = 0
        while i < e and 48 <= buf[i] <= 57:
            if ev < 1_000_000:
                ev = ev * 10 + int(buf[i] - 48)
            i += 1
        exp += -ev if eneg else ev
    if i != e:
        return _BAD, _U0
    if truncated:
        return _SLOW, _U0
    sign = _SIGN if neg else _U0
    if man == _U0:
        return _OK, sign
    if man <= _TWO53 and -22 <= exp <= 22:
        f = float(man)
        f = f * _EXACT_POW10[exp] if exp >= 0 else f / _EXACT_POW10[-exp]
        return _OK, _f64_bits(f) | sign
    if exp < _POW10_MIN or exp > _POW10_MAX:
        return _SLOW, _U0
    ok, bits = _eisel_lemire(man, exp)
    if not ok:
        return _SLOW, _U0
    return _OK, bits | sign


# --------------------------------------------------------------------------------------------
# The line scanner.

# error codes reported by the kernel
_E_UNTERMINATED = 1
_E_NO_VALUE = 2
_E_VALUE = 3
_E_TIMESTAMP = 4
_E_NO_TIMESTAMP = 5
_E_TRAILING = 6
_E_COMMENT = 7
_E_EOF_EARLY = 8

_ERROR_TEXT = {
    _E_UNTERMINATED: "unterminated label set",
    _E_NO_VALUE: "missing value after series",
    _E_VALUE: "invalid value",
    _E_TIMESTAMP: "invalid timestamp",
    _E_NO_TIMESTAMP: "sample has no timestamp and no default timestamp was given",
    _E_TRAILING: "unexpected text after timestamp",
    _E_COMMENT: "invalid comment line (OpenMetrics allows # HELP, # TYPE, # UNIT, # EOF)",
    _E_EOF_EARLY: "data after # EOF",
}

# slow-path kinds
_K_VALUE = 0
_K_SECONDS = 1
_K_MILLIS = 2


@_inline
def _is_ws(c: int) -> bool:
    return c == 32 or c == 9 or c == 13


@_inline
def _skip_ws(buf: Any, p: int, end: int) -> int:
    while p < end and _is_ws(buf[p]):
        p += 1
    return p


@_inline
def _token_end(buf: Any, p: int, end: int) -> int:
    while p < end and buf[p] != 10 and not _is_ws(buf[p]):
        p += 1
    return p


@_inline
def _line_end(buf: Any, p: int, end: int) -> int:
    while p < end and buf[p] != 10:
        p += 1
    return p


@njit
def _key_end(buf: Any, p: int, end: int) -> Any:
    """End of the series key at p: a bare name, or up to the '}' closing its label set.

    Returns (end, bare); end is -1 when the label set is not closed on this line.
    """
    while p < end and buf[p] != 10 and buf[p] != 123 and not _is_ws(buf[p]):
        p += 1
    q = _skip_ws(buf, p, end)
    if q >= end or buf[q] != 123:
        return p, True
    q += 1
    quoted = False
    while q < end:
        c = buf[q]
        if c == 10:
            return -1, False
        if quoted:
            if c == 92:
                q += 1
            elif c == 34:
                quoted = False
        elif c == 34:
            quoted = True
        elif c == 125:
            return q + 1, False
        q += 1
    return -1, False


@_inline
def _key_matches(buf: Any, ks: int, end: int, cs: int, clen: int, bare: bool) -> bool:
    if ks + clen > end:
        return False
    j = 0
    while j + 8 <= clen:  # both ranges lie inside buf, so the wide loads do too
        if _load_u64(buf, ks + j) != _load_u64(buf, cs + j):
            return False
        j += 8
    while j < clen:
        if buf[ks + j] != buf[cs + j]:
            return False
        j += 1
    if not bare:
        return True
    p = ks + clen
    if p >= end or buf[p] == 10:
        return True
    if not _is_ws(buf[p]):
        return False
    p = _skip_ws(buf, p, end)
    return p >= end or buf[p] != 123


@_inline
def _predict(buf: Any, p: int, end: int, prev: int, keys: Any) -> int:
    """The key of the previous line, or the one that followed it last time, if the line has it."""
    if prev < 0:
        return -1
    if _key_matches(buf, p, end, keys[prev, _KS], keys[prev, _KL], keys[prev, _KB] != 0):
        return prev
    cand = keys[prev, _KN]
    if cand >= 0 and _key_matches(buf, p, end, keys[cand, _KS], keys[cand, _KL], keys[cand, _KB] != 0):
        return int(cand)
    return -1


@njit
def _hash(buf: Any, s: int, e: int) -> Any:
    h = _FNV_OFFSET
    for j in range(s, e):
        h = (h ^ np.uint64(buf[j])) * _FNV_PRIME
    return h


@njit
def _lookup(buf: Any, ks: int, ke: int, h: Any, slots: Any, keys: Any, hashes: Any) -> int:
    """Key id of buf[ks:ke] in the open-addressing table, or -(slot+1) where it belongs."""
    mask = slots.size - 1
    slot = np.int64(h & np.uint64(mask))
    n = ke - ks
    while True:
        kid = slots[slot]
        if kid < 0:
            return -(int(slot) + 1)
        if hashes[kid] == h and keys[kid, _KL] == n:
            cs = keys[kid, _KS]
            same = True
            for j in range(n):
                if buf[ks + j] != buf[cs + j]:
                    same = False
                    break
            if same:
                return int(kid)
        slot = (slot + 1) & mask


@njit
def _find_or_add(
    buf: Any, p: int, end: int, line: int, n_keys: int, keys: Any, hashes: Any, slots: Any
) -> Any:
    """(key id, key end, keys now known); key end is -1 for an unterminated label set."""
    ke, bare = _key_end(buf, p, end)
    if ke < 0:
        return -1, -1, n_keys
    h = _hash(buf, p, ke)
    found = _lookup(buf, p, ke, h, slots, keys, hashes)
    if found >= 0:
        return found, ke, n_keys
    keys[n_keys, _KS] = p
    keys[n_keys, _KL] = ke - p
    keys[n_keys, _KLINE] = line
    keys[n_keys, _KB] = 1 if bare else 0
    keys[n_keys, _KN] = -1
    hashes[n_keys] = h
    slots[-found - 1] = n_keys
    return n_keys, ke, n_keys + 1


@njit
def _rehash(hashes: Any, n_keys: int, size: int) -> Any:
    slots = np.full(size, -1, dtype=np.int32)
    mask = size - 1
    for kid in range(n_keys):
        slot = np.int64(hashes[kid] & np.uint64(mask))
        while slots[slot] >= 0:
            slot = (slot + 1) & mask
        slots[slot] = kid
    return slots


@njit
def _comment_kind(buf: Any, p: int, end: int) -> int:
    """0: HELP/TYPE/UNIT; 1: '# EOF'; 2: anything else."""
    if p + 7 <= end and buf[p + 1] == 32 and buf[p + 6] == 32:
        a, b, c, d = buf[p + 2], buf[p + 3], buf[p + 4], buf[p + 5]
        if (
            (a == 72 and b == 69 and c == 76 and d == 80)  # HELP
            or (a == 84 and b == 89 and c == 80 and d == 69)  # TYPE
            or (a == 85 and b == 78 and c == 73 and d == 84)  # UNIT
        ):
            return 0
    if p + 5 <= end and buf[p + 1] == 32 and buf[p + 2] == 69 and buf[p + 3] == 79 and buf[p + 4] == 70:
        e = _skip_ws(buf, p + 5, end)
        if e >= end or buf[e] == 10:
            return 1
    return 2


@_inline
def _add_slow(slow: Any, i: int, sample: int, s: int, e: int, kind: int, line: int) -> int:
    slow[i, 0] = sample
    slow[i, 1] = s
    slow[i, 2] = e
    slow[i, 3] = kind
    slow[i, 4] = line
    return i + 1


@_inline
def _parse_ts(buf: Any, s: int, e: int, om: bool) -> Any:
    """Timestamp token: float seconds (OpenMetrics) or integer milliseconds. (status, ms)."""
    if not om:
        return _parse_millis(buf, s, e)
    status, bits = _parse_float(buf, s, e)
    if status != _OK:
        return status, 0
    ms = _bits_f64(bits) * 1000.0
    if not (-9.2e18 < ms < 9.2e18):  # also rejects NaN and infinities
        return _BAD, 0
    return _OK, int(ms)


@_inline
def _parse_millis(buf: Any, s: int, e: int) -> Any:
    i = s
    neg = buf[i] == 45
    if buf[i] == 45 or buf[i] == 43:
        i += 1
    if i >= e or e - i > 18:
        return (_SLOW if i < e else _BAD), 0
    acc = 0
    while i < e:
        d = int(buf[i]) - 48
        if d < 0 or d > 9:
            return _BAD, 0
        acc = acc * 10 + d
        i += 1
    return _OK, -acc if neg else acc


# state slots shared between the kernel and its caller, so that the kernel can stop to let the
# caller grow the tables and then carry on where it was
_S_POS, _S_LINE, _S_N, _S_KEYS, _S_PREV, _S_SLOW, _S_ERR, _S_ERR_A, _S_ERR_B = range(9)
_DONE, _GROW, _FAILED = 0, 1, 2
# key table columns: start offset, length, line first seen, bare name, key seen next last time
_KS, _KL, _KLINE, _KB, _KN = range(5)


@njit
def _scan(
    buf: Any, end: int, om: bool, default_ts: int, has_default: bool,
    t_out: Any, v_out: Any, k_out: Any, keys: Any, hashes: Any, slots: Any, slow: Any, st: Any,
) -> int:
    pos, line, n = st[_S_POS], st[_S_LINE], st[_S_N]
    n_keys, prev, n_slow = st[_S_KEYS], st[_S_PREV], st[_S_SLOW]
    key_limit = min(keys.shape[0], slots.size // 2)
    slow_limit = slow.shape[0] - 2
    err, err_a, err_b = 0, 0, 0
    while pos < end:
        if n >= t_out.size or n_keys >= key_limit or n_slow > slow_limit:
            break
        line += 1
        p = _skip_ws(buf, pos, end)
        if p >= end:
            pos = end
            break
        c = buf[p]
        if c == 10:
            pos = p + 1
            continue
        if c == 35:
            kind = _comment_kind(buf, p, end) if om else 0
            if kind != 0:
                err, err_a, err_b = (_E_EOF_EARLY if kind == 1 else _E_COMMENT), p, _token_end(buf, p, end)
                break
            pos = _line_end(buf, p, end) + 1
            continue
        kid = _predict(buf, p, end, prev, keys)
        if kid >= 0:
            ke = p + keys[kid, _KL]
        else:
            kid, ke, n_keys = _find_or_add(buf, p, end, line, n_keys, keys, hashes, slots)
            if ke < 0:
                err, err_a, err_b = _E_UNTERMINATED, p, _token_end(buf, p, end)
                break
        if prev >= 0:
            keys[prev, _KN] = kid
        prev = kid
        vs = _skip_ws(buf, ke, end)
        ve = _token_end(buf, vs, end)
        if ve == vs:
            err, err_a, err_b = _E_NO_VALUE, p, ve
            break
        status, bits = _parse_float(buf, vs, ve)
        if status == _BAD:
            err, err_a, err_b = _E_VALUE, vs, ve
            break
        if status == _SLOW:
            n_slow = _add_slow(slow, n_slow, n, vs, ve, _K_VALUE, line)
        v_out[n] = bits
        ts_s = _skip_ws(buf, ve, end)
        ts_e = ts_s
        if ts_s < end and buf[ts_s] != 10 and not (om and buf[ts_s] == 35):
            ts_e = _token_end(buf, ts_s, end)
        p = _skip_ws(buf, ts_e, end)
        if om and p < end and buf[p] == 35:
            p = _line_end(buf, p, end)  # exemplar
        elif p < end and buf[p] != 10:
            err, err_a, err_b = _E_TRAILING, p, _token_end(buf, p, end)
            break
        if ts_e == ts_s:
            if not has_default:
                err, err_a, err_b = _E_NO_TIMESTAMP, vs, ve
                break
            t_out[n] = default_ts
        else:
            status, ts = _parse_ts(buf, ts_s, ts_e, om)
            if status == _BAD:
                err, err_a, err_b = _E_TIMESTAMP, ts_s, ts_e
                break
            if status == _SLOW:
                n_slow = _add_slow(slow, n_slow, n, ts_s, ts_e, _K_SECONDS if om else _K_MILLIS, line)
            t_out[n] = ts
        k_out[n] = kid
        n += 1
        pos = p + 1
    st[_S_POS], st[_S_LINE], st[_S_N] = pos, line, n
    st[_S_KEYS], st[_S_PREV], st[_S_SLOW] = n_keys, prev, n_slow
    st[_S_ERR], st[_S_ERR_A], st[_S_ERR_B] = err, err_a, err_b
    if err:
        return _FAILED
    return _DONE if pos >= end else _GROW


# --------------------------------------------------------------------------------------------
# Python side: format detection, label sets, slow values, errors.

_GO_FLOAT = re.compile(rb"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_GO_INT = re.compile(rb"[+-]?[0-9]+")
_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
_QUOTED = r'"(?:[^"\\\n]|\\.)*"'
_SIMPLE_KEY = re.compile(rf'({_NAME})(?:\{{((?:{_LABEL}="[^"\\\n]*",)*(?:{_LABEL}="[^"\\\n]*")?)\}})?')
_SIMPLE_PAIR = re.compile(rf'({_LABEL})="([^"\\\n]*)"')
_TOKEN = re.compile(rf'[ \t]*(?:({_LABEL})|({_QUOTED}))[ \t]*')
_VALUE = re.compile(rf"=[ \t]*({_QUOTED})[ \t]*")
_ESCAPE = re.compile(r"\\(.)")
_UNESCAPED = {"\\": "\\", '"': '"', "n": "\n"}


def detect_format(data: bytes) -> str:
    """'openmetrics' when the last non-empty line is ``# EOF``, else 'prometheus'."""
    end = _content_end(data)
    start = data.rfind(b"\n", 0, end) + 1
    return "openmetrics" if data[start:end].strip() == b"# EOF" else "prometheus"


def _content_end(data: bytes) -> int:
    end = len(data)
    while end > 0 and data[end - 1] in b" \t\r\n":
        end -= 1
    return end


def _unquote(quoted: str) -> str:
    body = quoted[1:-1]
    if "\\" not in body:
        return body
    # Prometheus unescapes only \\, \" and \n; other escapes stay as written.
    return _ESCAPE.sub(lambda m: _UNESCAPED.get(m.group(1), m.group(0)), body)


def _parse_key(key: str) -> Labels:
    """Label set of one series key; raises ValueError with the reason."""
    simple = _SIMPLE_KEY.fullmatch(key)
    if simple is not None:
        pairs = [(METRIC_NAME, simple.group(1))]
        if simple.group(2):
            pairs.extend(_SIMPLE_PAIR.findall(simple.group(2)))
        return _labels(pairs)
    return _parse_key_slow(key)


def _parse_key_slow(key: str) -> Labels:
    brace = key.find("{")
    name = (key if brace < 0 else key[:brace]).rstrip(" \t")
    if name and not re.fullmatch(_NAME, name):
        raise ValueError(f"invalid metric name {name!r}")
    pairs: list[tuple[str, str]] = [(METRIC_NAME, name)] if name else []
    if brace >= 0:
        pairs.extend(_parse_label_body(key, brace + 1, has_name=bool(name)))
    if not dict(pairs).get(METRIC_NAME):
        raise ValueError("metric name missing")
    return _labels(pairs)


def _parse_label_body(key: str, pos: int, *, has_name: bool) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    while True:
        if key[pos:].strip(" \t") == "}":
            return pairs
        tok = _TOKEN.match(key, pos)
        if tok is None:
            raise ValueError(f"expected label name at {key[pos:pos + 20]!r}")
        label = tok.group(1) or _unquote(tok.group(2))
        pos = tok.end()
        value = _VALUE.match(key, pos)
        if value is None:
            if tok.group(2) is None or has_name or pairs:
                raise ValueError(f"expected '=\"…\"' after label name {label!r}")
            pairs.append((METRIC_NAME, label))  # {"quoted.metric.name", …}
        else:
            pairs.append((label, _unquote(value.group(1))))
            pos = value.end()
        has_name = True
        if key.startswith(",", pos):
            pos += 1
        elif key[pos:].strip(" \t") != "}":
            raise ValueError(f"expected ',' or '}}' at {key[pos:pos + 20]!r}")


def _labels(pairs: list[tuple[str, str]]) -> Labels:
    names = [n for n, _ in pairs]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ValueError(f"duplicate label name {dup!r}")
    return tuple(sorted(p for p in pairs if p[1] != ""))


def _slow_value(token: bytes) -> int:
    if _GO_FLOAT.fullmatch(token) is None:
        raise ValueError("invalid")
    value = float(token)
    if value in (float("inf"), float("-inf")):
        raise ValueError("out of range")
    return int(struct.unpack("<Q", struct.pack("<d", value))[0])


def _slow_timestamp(token: bytes, kind: int) -> int:
    if kind == _K_MILLIS:
        if _GO_INT.fullmatch(token) is None:
            raise ValueError("invalid")
        ms = int(token)
    else:
        bits = _slow_value(token)
        ms = int(struct.unpack("<d", struct.pack("<Q", bits))[0] * 1000.0)
    if not -(2**63) <= ms < 2**63:
        raise ValueError("out of range")
    return ms


def _fail(source: str, line: int, what: str, token: bytes | None = None) -> FormatError:
    shown = f" {token.decode('utf-8', 'replace')[:80]!r}" if token else ""
    return FormatError(f"{source}:{line}: {what}{shown}")


# --------------------------------------------------------------------------------------------
# Entry point.


def parse_exposition(
    data: bytes,
    fmt: str = "auto",
    *,
    default_timestamp_ms: int | None = None,
    source: str = "<input>",
) -> ParsedSamples:
    """Parse a whole exposition document. Timestamps come out in ms, values as float64 bits."""
    if fmt == "auto":
        fmt = detect_format(data)
    if fmt not in ("openmetrics", "prometheus"):
        raise ConfigError(f"unknown exposition format {fmt!r} (use auto, openmetrics or prometheus)")
    om = fmt == "openmetrics"
    end = _openmetrics_end(data, source) if om else len(data)
    buf = np.frombuffer(data, dtype=np.uint8)
    chunks = _chunks(data, end)
    if len(chunks) == 1:
        scans = [_run_scan(buf, 0, end, om, default_timestamp_ms)]
    else:
        with ThreadPoolExecutor(len(chunks)) as pool:  # the kernel releases the GIL
            scans = list(pool.map(lambda c: _run_scan(buf, c[0], c[1], om, default_timestamp_ms), chunks))
    return _assemble(data, [c[0] for c in chunks], scans, source)


# Inputs above this size are scanned in pieces on several threads.
PARALLEL_CHUNK_BYTES = 64 << 20


def _chunks(data: bytes, end: int) -> list[tuple[int, int]]:
    """Split [0, end) at line starts into one piece per worker thread."""
    workers = min(os.cpu_count() or 1, 8, end // PARALLEL_CHUNK_BYTES)
    if workers <= 1:
        return [(0, end)]
    cuts = [0]
    for i in range(1, workers):
        cut = data.find(b"\n", end * i // workers, end) + 1
        if cut > cuts[-1]:
            cuts.append(cut)
    cuts.append(end)
    return [(a, b) for a, b in itertools.pairwise(cuts) if a < b]


@dataclass
class _Tables:
    t: np.ndarray
    v: np.ndarray
    k: np.ndarray
    keys: np.ndarray
    hashes: np.ndarray
    slots: np.ndarray
    slow: np.ndarray
    state: np.ndarray


def _run_scan(buf: np.ndarray, start: int, end: int, om: bool, default_ts: int | None) -> _Tables:
    """Run the kernel over buf[start:end], growing its tables whenever it stops for room."""
    cap = (end - start) // 64 + 64  # sample lines are rarely shorter; more room is made when they are
    tables = _Tables(
        t=np.empty(cap, dtype=np.int64),
        v=np.empty(cap, dtype=np.uint64),
        k=np.empty(cap, dtype=np.int32),
        keys=np.empty((1024, 5), dtype=np.int64),
        hashes=np.empty(1024, dtype=np.uint64),
        slots=np.full(4096, -1, dtype=np.int32),
        slow=np.empty((64, 5), dtype=np.int64),
        state=np.zeros(9, dtype=np.int64),
    )
    tables.state[_S_POS] = start
    tables.state[_S_PREV] = -1
    default = 0 if default_ts is None else int(default_ts)
    while True:
        with np.errstate(over="ignore"):
            status = _scan(buf, end, om, default, default_ts is not None, tables.t, tables.v, tables.k,
                           tables.keys, tables.hashes, tables.slots, tables.slow, tables.state)
        if status != _GROW:
            return tables
        if tables.state[_S_N] >= tables.t.size:
            tables.t, tables.v, tables.k = _grown(tables.t), _grown(tables.v), _grown(tables.k)
        n_keys = int(tables.state[_S_KEYS])
        if n_keys >= tables.keys.shape[0]:
            tables.keys = _grown(tables.keys)
            tables.hashes = _grown(tables.hashes)
            tables.slots = _rehash(tables.hashes, n_keys, 4 * tables.keys.shape[0])
        if tables.state[_S_SLOW] > tables.slow.shape[0] - 2:
            tables.slow = _grown(tables.slow)


def _grown(a: np.ndarray) -> np.ndarray:
    out = np.empty((2 * a.shape[0], *a.shape[1:]), dtype=a.dtype)
    out[: a.shape[0]] = a
    return out


def _openmetrics_end(data: bytes, source: str) -> int:
    """Offset of the final '# EOF' line, which must be the last non-empty line."""
    end = _content_end(data)
    start = data.rfind(b"\n", 0, end) + 1
    if data[start:end].rstrip(b" \t\r") != b"# EOF":
        line = data.count(b"\n", 0, end) + 1 if end else 1
        raise FormatError(f"{source}:{line}: missing '# EOF' at end of OpenMetrics input")
    return start


# A problem found on a line of a piece: (line within the piece, what, offending text).
_Problem = tuple[int, str, bytes]


class _SeriesIndex:
    """Label sets in first-seen order, found from series keys (bytes) of every piece."""

    def __init__(self) -> None:
        self.series: list[Labels] = []
        self._by_labels: dict[Labels, int] = {}
        self._by_key: dict[bytes, int] = {}

    def map_keys(self, data: bytes, keys: np.ndarray, stop_line: int | None) -> tuple[np.ndarray, _Problem | None]:
        """Series index of each key; stops at the first bad key before `stop_line`."""
        key_series = np.empty(keys.shape[0], dtype=np.int32)
        starts = keys[:, _KS].tolist()
        ends = (keys[:, _KS] + keys[:, _KL]).tolist()
        for kid, (s, e) in enumerate(zip(starts, ends, strict=True)):
            key = data[s:e]
            sid = self._by_key.get(key)
            if sid is None:
                try:
                    sid = self._add(_parse_key(key.decode("utf-8")))
                except (ValueError, UnicodeDecodeError) as exc:
                    line = int(keys[kid, _KLINE])
                    if stop_line is not None and line > stop_line:
                        break
                    reason = "invalid UTF-8" if isinstance(exc, UnicodeDecodeError) else str(exc)
                    return key_series, (line, f"invalid series: {reason}", key)
                self._by_key[key] = sid
            key_series[kid] = sid
        return key_series, None

    def _add(self, labels: Labels) -> int:
        sid = self._by_labels.setdefault(labels, len(self.series))
        if sid == len(self.series):
            self.series.append(labels)
        return sid


def _assemble(data: bytes, starts: list[int], scans: list[_Tables], source: str) -> ParsedSamples:
    index = _SeriesIndex()
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for start, tab in zip(starts, scans, strict=True):
        st = tab.state
        n, n_keys = int(st[_S_N]), int(st[_S_KEYS])
        problems: list[_Problem] = []
        err_line: int | None = None
        if st[_S_ERR]:
            err_line = int(st[_S_LINE])
            problems.append((err_line, _ERROR_TEXT[int(st[_S_ERR])], data[st[_S_ERR_A] : st[_S_ERR_B]]))
        key_series, key_problem = index.map_keys(data, tab.keys[:n_keys], err_line)
        slow_problem = _resolve_slow(data, tab.slow[: st[_S_SLOW]], tab.t, tab.v)
        problems += [p for p in (key_problem, slow_problem) if p is not None]
        if problems:
            line, what, token = min(problems, key=lambda p: p[0])
            raise _fail(source, line + data.count(b"\n", 0, start), what, token)
        k = tab.k[:n]
        if not np.array_equal(key_series, np.arange(n_keys)):
            k = key_series[k]
        parts.append((tab.t[:n], tab.v[:n], k))
    if len(parts) == 1:
        t, v, k = parts[0]
    else:
        t, v, k = (np.concatenate([p[i] for p in parts]) for i in range(3))
    return ParsedSamples(series=index.series, series_index=k, t=t, v=v)


def _resolve_slow(data: bytes, slow: np.ndarray, t: np.ndarray, v: np.ndarray) -> _Problem | None:
    for sample, s, e, kind, line in slow.tolist():
        token = data[s:e]
        try:
            if kind == _K_VALUE:
                v[sample] = _slow_value(token)
            else:
                t[sample] = _slow_timestamp(token, kind)
        except ValueError as exc:
            what = "invalid value" if kind == _K_VALUE else "invalid timestamp"
            if str(exc) == "out of range":
                what += " (out of range)"
            return line, what, token
    return None
