"""Thanos AggrChunk (chunk encoding 0xFF, FORMATS.md §7.2) and the counter-reset iterator (§7.6)."""

from __future__ import annotations

import enum
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from thanostools.core.chunkenc.xor import as_u8
from thanostools.core.errors import CorruptBlockError
from thanostools.core.kernels import xor as kernels
from thanostools.core.kernels._jit import njit
from thanostools.core.varint import encode_uvarint

AGGR_ENCODING = 0xFF
NUM_AGGRS = 5


class Aggr(enum.IntEnum):
    """Position of an aggregate inside an AggrChunk (not the storepb enum value, which is one more)."""

    COUNT = 0
    SUM = 1
    MIN = 2
    MAX = 3
    COUNTER = 4


def _uvarint(data: bytes | memoryview, p: int) -> tuple[int, int]:
    """Go binary.Uvarint at data[p:] -> (value, next index); raises "invalid size" like Thanos."""
    x = 0
    for i in range(10):
        if p + i >= len(data):
            break
        b = data[p + i]
        if b < 0x80:
            if i == 9 and b > 1:
                break
            return x | (b << (7 * i)), p + i + 1
        x |= (b & 0x7F) << (7 * i)
    raise CorruptBlockError("invalid size")


def split_aggr(data: bytes | memoryview) -> list[tuple[int, bytes] | None]:
    """The five (sub-encoding, sub-chunk data) entries of an AggrChunk payload; None for absent ones.

    Slightly more lenient than Thanos, whose reader wants one more byte after a zero length: a payload
    ending in an absent counter entry is accepted here.
    """
    entries: list[tuple[int, bytes] | None] = []
    p = 0
    for _ in range(NUM_AGGRS):
        size, p = _uvarint(data, p)
        if size == 0:
            entries.append(None)
            continue
        if len(data) - p < size + 1:
            raise CorruptBlockError("invalid size")
        entries.append((data[p], bytes(data[p + 1 : p + 1 + size])))
        p += 1 + size
    return entries


def build_aggr(subs: Sequence[tuple[int, bytes] | None]) -> bytes:
    """An AggrChunk payload from five (sub-encoding, sub-chunk data) entries or None for absent ones."""
    if len(subs) != NUM_AGGRS:
        raise ValueError(f"an AggrChunk has {NUM_AGGRS} entries, got {len(subs)}")
    out = bytearray()
    for sub in subs:
        if sub is None:
            out.append(0)
            continue
        encoding, payload = sub
        if not payload:
            raise ValueError("a present aggregate cannot have empty data (length 0 means absent)")
        if not 0 <= encoding <= 0xFF:
            raise ValueError(f"sub-chunk encoding must be a byte, got {encoding}")
        out += encode_uvarint(len(payload))
        out.append(encoding)
        out += payload
    return bytes(out)


@njit
def aggr_spans_kernel(
    buf: NDArray[np.uint8], starts: NDArray[np.int64], ends: NDArray[np.int64], which: int
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], int]:
    """Locate aggregate `which` in every AggrChunk -> (starts, ends, encodings, first bad chunk or -1)."""
    k = starts.shape[0]
    sub_starts = np.empty(k, dtype=np.int64)
    sub_ends = np.empty(k, dtype=np.int64)
    sub_enc = np.full(k, -1, dtype=np.int64)
    for i in range(k):
        p = starts[i]
        end = ends[i]
        sub_starts[i] = p
        sub_ends[i] = p
        for a in range(which + 1):
            size, p, st = kernels.read_uvarint(buf, p, end)
            if st != kernels.OK:
                return sub_starts, sub_ends, sub_enc, i
            if size == kernels.U0:
                if a == which:
                    sub_starts[i] = p
                    sub_ends[i] = p
                continue
            if size >= np.uint64(end - p):  # the encoding byte and `size` data bytes must follow
                return sub_starts, sub_ends, sub_enc, i
            n = kernels.to_int(size)
            if a == which:
                sub_enc[i] = kernels.to_int(buf[p])
                sub_starts[i] = p + 1
                sub_ends[i] = p + 1 + n
            p += 1 + n
    return sub_starts, sub_ends, sub_enc, -1


def aggr_spans(
    buf: NDArray[np.uint8], starts: NDArray[np.int64], ends: NDArray[np.int64], which: Aggr
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """For each AggrChunk payload buf[starts[i]:ends[i]], where aggregate `which` lies in buf.

    Returns (sub_starts, sub_ends, sub_encoding): the sub-chunk data without its encoding byte, ready for
    ``decode_batch``; encoding -1 and an empty span when the aggregate is absent.
    """
    data = as_u8(buf)
    s = np.ascontiguousarray(starts, dtype=np.int64)
    e = np.ascontiguousarray(ends, dtype=np.int64)
    if s.shape != e.shape or s.ndim != 1:
        raise ValueError("starts and ends must be 1-D arrays of the same length")
    outside = np.flatnonzero((s < 0) | (e < s) | (e > data.shape[0]))
    if outside.size:
        i = int(outside[0])
        raise CorruptBlockError(f"AggrChunk {i}: span lies outside the buffer", offset=int(s[i]))
    sub_starts, sub_ends, sub_enc, bad = aggr_spans_kernel(data, s, e, int(Aggr(which)))
    if bad >= 0:
        raise CorruptBlockError(f"AggrChunk {bad}: invalid size", offset=int(s[bad]))
    return sub_starts, sub_ends, sub_enc


@njit
def counter_reset_kernel(
    t: NDArray[np.int64], v: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    n = t.shape[0]
    out_t = np.empty(n, dtype=np.int64)
    out_v = np.empty(n, dtype=np.float64)
    m = 0
    total = 0.0
    last_t = 0
    last_v = 0.0
    for i in range(n):
        x = v[i]
        if np.isnan(x):
            continue
        ti = t[i]
        if m == 0:
            total = x
        elif ti > last_t:
            total += x - last_v if x >= last_v else x
        else:
            if ti == last_t:
                last_v = x  # the duplicated "true last raw value" marker
            continue
        last_t = ti
        last_v = x
        out_t[m] = ti
        out_v[m] = total
        m += 1
    return out_t[:m].copy(), out_v[:m].copy()


def counter_reset_series(
    t: NDArray[np.int64], v: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """§7.6 over one series' concatenated counter samples -> the monotone (t, total) series.

    NaNs are skipped, a repeated timestamp only replaces the last raw value, an earlier one is ignored.
    ``v`` may also be uint64 bits (viewed as float64).
    """
    ts = np.ascontiguousarray(t, dtype=np.int64)
    vs = np.asarray(v)
    vs = np.ascontiguousarray(vs).view(np.float64) if vs.dtype == np.uint64 else np.asarray(vs, np.float64)
    if ts.shape != vs.shape or ts.ndim != 1:
        raise ValueError("t and v must be 1-D arrays of the same length")
    return counter_reset_kernel(ts, vs)
