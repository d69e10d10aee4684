"""XOR (Gorilla) float chunks, FORMATS.md §4: batch decode/encode over numba kernels.

Values are always carried as raw IEEE-754 bits (uint64) so NaN payloads and StaleNaN survive exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from thanostools.core.errors import CorruptBlockError
from thanostools.core.kernels import select as select_kernels
from thanostools.core.kernels import xor as kernels
from thanostools.core.kernels import xor2 as xor2_kernels

ENC_XOR = xor2_kernels.ENC_XOR
ENC_XOR2 = xor2_kernels.ENC_XOR2
# Encodings of float chunks, read alike (XOR2, HISTOGRAMS.md H11.3, is read only: our writers emit XOR).
FLOAT_ENCODINGS = (ENC_XOR, ENC_XOR2)

NORMAL_NAN_BITS: int = 0x7FF8000000000001

MAX_SAMPLES_PER_CHUNK = 0xFFFF

_ERRORS = {
    kernels.ERR_SHORT: "shorter than its 2-byte header",
    kernels.ERR_TRUNCATED: "bit stream ends early",
    kernels.ERR_VARINT: "varint overflows 64 bits",
    kernels.ERR_WINDOW: "XOR window wider than 64 bits",
    xor2_kernels.ERR_ENCODING: "not a float chunk encoding (1 or 4)",
}
_SHORT_XOR2 = "shorter than its 3-byte header"


@dataclass(frozen=True)
class DecodedBatch:
    """Samples of many chunks, concatenated: chunk i owns t[offsets[i]:offsets[i+1]]."""

    offsets: NDArray[np.int64]
    t: NDArray[np.int64]
    v: NDArray[np.uint64]
    st: NDArray[np.int64] | None = None  # start timestamps (H11.1) when XOR2 chunks were decoded, else None

    def chunk(self, i: int) -> tuple[NDArray[np.int64], NDArray[np.uint64]]:
        lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.t[lo:hi], self.v[lo:hi]


def as_u8(data: Any) -> NDArray[np.uint8]:
    """A 1-D uint8 view of bytes-like data or of an array (no copy when possible)."""
    if isinstance(data, np.ndarray):
        arr = data if data.dtype == np.uint8 else data.view(np.uint8)
        return np.ascontiguousarray(arr.reshape(-1))
    return np.frombuffer(data, dtype=np.uint8)


def as_value_bits(v: Any) -> NDArray[np.uint64]:
    """Values as uint64 bits: uint64 is taken as bits, float64 is viewed (not converted), other numbers
    are converted to float64 first."""
    arr = np.asarray(v)
    if arr.dtype == np.uint64:
        return np.ascontiguousarray(arr)
    if arr.dtype != np.float64:
        if arr.dtype.kind not in "iuf" and arr.size:
            raise TypeError(f"sample values must be numbers, got dtype {arr.dtype}")
        arr = arr.astype(np.float64)
    return np.ascontiguousarray(arr).view(np.uint64)


def as_timestamps(t: Any) -> NDArray[np.int64]:
    arr = np.asarray(t)
    if arr.dtype.kind not in "iu" and arr.size:
        raise TypeError(f"timestamps must be integers (ms), got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _check_spans(buf: NDArray[np.uint8], starts: NDArray[np.int64], ends: NDArray[np.int64]) -> None:
    if starts.shape != ends.shape or starts.ndim != 1:
        raise ValueError("starts and ends must be 1-D arrays of the same length")
    bad = np.flatnonzero((starts < 0) | (ends < starts) | (ends > buf.shape[0]))
    if bad.size:
        i = int(bad[0])
        raise CorruptBlockError(
            f"chunk {i}: span [{starts[i]}, {ends[i]}) lies outside the {buf.shape[0]}-byte buffer",
            offset=int(starts[i]),
        )


def decode_batch(buf: NDArray[np.uint8], starts: NDArray[np.int64], ends: NDArray[np.int64],
                 encodings: ArrayLike | None = None) -> DecodedBatch:
    """Decode the float chunk payloads buf[starts[i]:ends[i]] (each beginning with its be16 sample count).

    ``encodings`` (one per chunk, 1 = XOR or 4 = XOR2) may be left out when all chunks are XOR. Both the
    Prometheus 2.x form (a possible extra trailing zero byte) and the 3.x form are accepted. When XOR2 chunks
    are present, the batch carries their start timestamps (``st``; 0 for XOR chunks).
    """
    data = as_u8(buf)
    s = np.ascontiguousarray(starts, dtype=np.int64)
    e = np.ascontiguousarray(ends, dtype=np.int64)
    _check_spans(data, s, e)
    if encodings is not None:
        encs = np.ascontiguousarray(encodings, dtype=np.int64)
        if encs.shape != s.shape:
            raise ValueError("encodings needs one entry per chunk")
        if bool((encs != ENC_XOR).any()):
            return _decode_mixed(data, s, e, encs)
    with np.errstate(over="ignore"):
        offsets, tb, vb, bad, status = kernels.decode_chunks(data, s, e)
    if status != kernels.OK:
        raise CorruptBlockError(f"XOR chunk {bad}: {_ERRORS[status]}", offset=int(s[bad]))
    return DecodedBatch(offsets=offsets, t=tb.view(np.int64), v=vb)


def _decode_mixed(data: NDArray[np.uint8], s: NDArray[np.int64], e: NDArray[np.int64],
                  encs: NDArray[np.int64]) -> DecodedBatch:
    with np.errstate(over="ignore"):
        offsets, tb, vb, stb, bad, status, bit = xor2_kernels.decode_chunks(data, s, e, encs)
    if status != kernels.OK:
        name = "XOR2" if int(encs[bad]) == ENC_XOR2 else "XOR"
        reason = _SHORT_XOR2 if status == kernels.ERR_SHORT and name == "XOR2" else _ERRORS[status]
        where = f" (bit {bit} of the chunk)" if name == "XOR2" and status != kernels.ERR_SHORT else ""
        raise CorruptBlockError(f"{name} chunk {bad}: {reason}{where}", offset=int(s[bad]) + bit // 8)
    return DecodedBatch(offsets=offsets, t=tb.view(np.int64), v=vb, st=stb.view(np.int64))


def decode_batch_into(buf: NDArray[np.uint8], starts: NDArray[np.int64], ends: NDArray[np.int64],
                      dst: NDArray[np.int64], t: NDArray[np.int64], v: NDArray[np.uint64]) -> None:
    """Like :func:`decode_batch`, but chunk i goes to ``t/v[dst[i]:]`` of caller-sized arrays (see the
    chunks' be16 sample counts), so chunks of several buffers can be laid out in one pair of arrays."""
    data = as_u8(buf)
    _check_spans(data, starts, ends)
    with np.errstate(over="ignore"):
        bad, status = select_kernels.decode_chunks_at(data, starts, ends, dst, t.view(np.uint64), v)
    if status != kernels.OK:
        raise CorruptBlockError(f"XOR chunk {bad}: {_ERRORS[status]}", offset=int(starts[bad]))


def decode(data: bytes | memoryview | NDArray[np.uint8],
           encoding: int = ENC_XOR) -> tuple[NDArray[np.int64], NDArray[np.uint64]]:
    """Decode one XOR (or XOR2) chunk payload -> (timestamps int64, value bits uint64)."""
    buf = as_u8(data)
    batch = decode_batch(buf, np.zeros(1, dtype=np.int64), np.full(1, buf.shape[0], dtype=np.int64),
                         np.full(1, encoding, dtype=np.int64))
    return batch.t, batch.v


def num_samples(data: bytes | memoryview) -> int:
    """The sample count from an XOR chunk's be16 header."""
    if len(data) < 2:
        raise CorruptBlockError("XOR chunk: shorter than its 2-byte header")
    return (data[0] << 8) | data[1]


def _check_bounds(t: NDArray[np.int64], bounds: NDArray[np.int64]) -> None:
    if bounds.ndim != 1 or bounds.shape[0] < 1:
        raise ValueError("bounds must be a 1-D array with at least one element")
    sizes = np.diff(bounds)
    if bounds[0] < 0 or bounds[-1] > t.shape[0] or (sizes < 0).any():
        raise ValueError(f"bounds must be non-decreasing within [0, {t.shape[0]}]")
    if (sizes > MAX_SAMPLES_PER_CHUNK).any():
        raise ValueError(f"an XOR chunk holds at most {MAX_SAMPLES_PER_CHUNK} samples")
    backwards = np.flatnonzero(t[1:] < t[:-1])
    if backwards.size:
        # a decrease only matters when both samples belong to the same chunk
        left = np.searchsorted(bounds, backwards, side="right")
        right = np.searchsorted(bounds, backwards + 1, side="right")
        inside = (left == right) & (backwards >= bounds[0]) & (backwards + 1 < bounds[-1])
        if inside.any():
            i = int(backwards[inside][0])
            raise ValueError(f"timestamps decrease within a chunk at sample {i + 1}: {t[i]} -> {t[i + 1]}")


def encode_batch(
    t: ArrayLike, v: ArrayLike, bounds: ArrayLike
) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """Encode chunk j = samples bounds[j]:bounds[j+1] for every j in one kernel call (Prometheus 3.x bytes).

    Returns (buf, offsets) with chunk j's payload (header included) at buf[offsets[j]:offsets[j+1]].
    """
    ts = as_timestamps(t)
    vs = as_value_bits(v)
    if ts.shape != vs.shape or ts.ndim != 1:
        raise ValueError("t and v must be 1-D arrays of the same length")
    b = np.ascontiguousarray(bounds, dtype=np.int64)
    _check_bounds(ts, b)
    capacity = 32 * (b.shape[0] - 1) + 3 * (int(b[-1]) - int(b[0]))
    with np.errstate(over="ignore"):
        out, offsets = kernels.encode_chunks(ts.view(np.uint64), vs, b, capacity)
    return out, offsets


def encode(t: ArrayLike, v: ArrayLike) -> bytes:
    """Encode one chunk (Prometheus 3.x byte form, no extra trailing byte)."""
    ts = as_timestamps(t)
    out, _ = encode_batch(ts, v, np.array([0, ts.shape[0]], dtype=np.int64))
    return out.tobytes()
