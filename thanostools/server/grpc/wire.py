"""Series frames encoded straight to protobuf wire bytes, many series per kernel call.

Building one protobuf object per chunk and serialising it costs microseconds each; a Series RPC returns
hundreds of thousands of chunks. The frames are simple enough to write directly (proto3: scalars equal to
zero and empty bytes are omitted, embedded messages are length-prefixed), and the result is byte for byte
what ``SeriesResponse.SerializeToString`` gives (checked by the tests).

Field numbers (our protos, as Thanos): SeriesResponse.series = 1, .batch = 4; SeriesBatch.series = 1;
Series.labels = 1, .chunks = 2; Label.name = 1, .value = 2; AggrChunk.min_time = 1, .max_time = 2, then
raw = 3, count = 4, sum = 5, min = 6, max = 7, counter = 8; Chunk.type = 1, .data = 2.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from thanostools.core.kernels._jit import njit
from thanostools.core.kernels.binary import put_uvarint, uvarint_len
from thanostools.core.labels import Labels
from thanostools.core.varint import encode_uvarint

CHUNK_FIELDS = ("raw", "count", "sum", "min", "max", "counter")  # AggrChunk fields 3..8, in order


def _length_delimited(field: int, payload: bytes) -> bytes:
    return encode_uvarint((field << 3) | 2) + encode_uvarint(len(payload)) + payload


class LabelEncoder:
    """The ``Series.labels`` part of series frames; label pairs are encoded once and remembered."""

    def __init__(self) -> None:
        self._pairs: dict[tuple[str, str], bytes] = {}

    def encode(self, labels: Labels) -> bytes:
        parts = []
        for pair in labels:
            enc = self._pairs.get(pair)
            if enc is None:
                name, value = pair[0].encode(), pair[1].encode()
                body = (_length_delimited(1, name) if name else b"") + (_length_delimited(2, value) if value else b"")
                enc = self._pairs[pair] = _length_delimited(1, body)
            parts.append(enc)
        return b"".join(parts)


def encode_frames(labels: Sequence[bytes], chunk_offsets: np.ndarray, mint: np.ndarray, maxt: np.ndarray,
                  starts: np.ndarray, ends: np.ndarray, types: np.ndarray, data: np.ndarray,
                  batch_size: int) -> list[bytes]:
    """SeriesResponse frames for series i with encoded labels ``labels[i]`` and AggrChunks
    ``chunk_offsets[i]:chunk_offsets[i+1]``; chunk c's field f (``CHUNK_FIELDS``) is
    ``data[starts[c, f]:ends[c, f]]`` of storepb type ``types[c, f]``, absent when that is -1.
    One frame per series when ``batch_size`` <= 1, else SeriesBatch frames of up to ``batch_size`` series."""
    n = len(labels)
    if n == 0:
        return []
    label_offsets = np.zeros(n + 1, dtype=np.int64)
    label_offsets[1:] = np.cumsum([len(b) for b in labels])
    label_blob = np.frombuffer(b"".join(labels), dtype=np.uint8) if label_offsets[-1] else np.zeros(1, np.uint8)
    out, frame_offsets = _encode(label_blob, label_offsets, np.asarray(chunk_offsets, np.int64),
                                 np.asarray(mint, np.int64), np.asarray(maxt, np.int64), starts, ends, types, data,
                                 max(1, batch_size))
    raw = out.tobytes()
    bounds = frame_offsets.tolist()
    return [raw[bounds[i] : bounds[i + 1]] for i in range(len(bounds) - 1)]


@njit
def _varint_len(value: int) -> int:
    """Bytes of an int64 field's varint (negative values take ten, as two's complement)."""
    if value < 0:
        return 10
    return uvarint_len(value)


@njit
def _put_varint64(out: np.ndarray, pos: int, value: int) -> int:
    if value < 0:  # two's complement as an unsigned varint: ten bytes, the last one holding bit 63
        v = value
        for _ in range(9):
            out[pos] = (v & 0x7F) | 0x80
            v >>= 7
            pos += 1
        out[pos] = 1
        return pos + 1
    return put_uvarint(out, pos, value)


@njit
def _chunk_sizes(mint: np.ndarray, maxt: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                 types: np.ndarray) -> np.ndarray:
    """Encoded size of every AggrChunk message (without its own tag and length)."""
    n = mint.shape[0]
    sizes = np.zeros(n, np.int64)
    for c in range(n):
        size = 0
        if mint[c] != 0:
            size += 1 + _varint_len(mint[c])
        if maxt[c] != 0:
            size += 1 + _varint_len(maxt[c])
        for f in range(starts.shape[1]):
            if types[c, f] < 0:
                continue
            inner = 0
            if types[c, f] != 0:
                inner += 1 + uvarint_len(types[c, f])
            length = ends[c, f] - starts[c, f]
            if length > 0:
                inner += 1 + uvarint_len(length) + length
            size += 1 + uvarint_len(inner) + inner
        sizes[c] = size
    return sizes


@njit
def _encode(label_blob: np.ndarray, label_offsets: np.ndarray, chunk_offsets: np.ndarray, mint: np.ndarray,
            maxt: np.ndarray, starts: np.ndarray, ends: np.ndarray, types: np.ndarray, data: np.ndarray,
            batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    n = label_offsets.shape[0] - 1
    csize = _chunk_sizes(mint, maxt, starts, ends, types)
    ssize = np.zeros(n, np.int64)  # Series message sizes
    for i in range(n):
        size = label_offsets[i + 1] - label_offsets[i]
        for c in range(chunk_offsets[i], chunk_offsets[i + 1]):
            size += 1 + uvarint_len(csize[c]) + csize[c]
        ssize[i] = size
    n_frames = n if batch_size <= 1 else (n + batch_size - 1) // batch_size
    fsize = np.zeros(n_frames, np.int64)  # frame payload sizes (Series, or SeriesBatch)
    for i in range(n):
        k = i if batch_size <= 1 else i // batch_size
        fsize[k] += ssize[i] if batch_size <= 1 else 1 + uvarint_len(ssize[i]) + ssize[i]
    frame_offsets = np.zeros(n_frames + 1, np.int64)
    for k in range(n_frames):
        frame_offsets[k + 1] = frame_offsets[k] + 1 + uvarint_len(fsize[k]) + fsize[k]
    out = np.empty(frame_offsets[n_frames], np.uint8)
    pos = 0
    for i in range(n):
        if batch_size <= 1:
            out[pos] = 0x0A  # SeriesResponse.series
            pos = put_uvarint(out, pos + 1, ssize[i])
        else:
            if i % batch_size == 0:
                out[pos] = 0x22  # SeriesResponse.batch
                pos = put_uvarint(out, pos + 1, fsize[i // batch_size])
            out[pos] = 0x0A  # SeriesBatch.series
            pos = put_uvarint(out, pos + 1, ssize[i])
        a, b = label_offsets[i], label_offsets[i + 1]
        out[pos : pos + b - a] = label_blob[a:b]
        pos += b - a
        for c in range(chunk_offsets[i], chunk_offsets[i + 1]):
            out[pos] = 0x12  # Series.chunks
            pos = put_uvarint(out, pos + 1, csize[c])
            if mint[c] != 0:
                out[pos] = 0x08
                pos = _put_varint64(out, pos + 1, mint[c])
            if maxt[c] != 0:
                out[pos] = 0x10
                pos = _put_varint64(out, pos + 1, maxt[c])
            for f in range(starts.shape[1]):
                t = types[c, f]
                if t < 0:
                    continue
                length = ends[c, f] - starts[c, f]
                inner = 0
                if t != 0:
                    inner += 1 + uvarint_len(t)
                if length > 0:
                    inner += 1 + uvarint_len(length) + length
                out[pos] = ((3 + f) << 3) | 2
                pos = put_uvarint(out, pos + 1, inner)
                if t != 0:
                    out[pos] = 0x08
                    pos = put_uvarint(out, pos + 1, t)
                if length > 0:
                    out[pos] = 0x12
                    pos = put_uvarint(out, pos + 1, length)
                    out[pos : pos + length] = data[starts[c, f] : ends[c, f]]
                    pos += length
    return out, frame_offsets
