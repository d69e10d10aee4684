"""Tombstones file (FORMATS.md §6): deleted intervals per series, applied on read."""

from __future__ import annotations

import struct
from collections.abc import Mapping

import numpy as np

from thanostools.core.errors import CorruptBlockError
from thanostools.core.kernels import binary as kb

TOMBSTONES_MAGIC = 0x0130BA30
Intervals = list[tuple[int, int]]


def parse_tombstones(data: bytes, *, block: str | None = None) -> dict[int, Intervals]:
    """Series ref → sorted, merged, closed intervals."""

    def corrupt(msg: str, offset: int) -> CorruptBlockError:
        return CorruptBlockError(msg, block=block, file="tombstones", offset=offset)

    if len(data) < 9:
        raise corrupt(f"tombstones file too short ({len(data)} bytes)", 0)
    magic, version = struct.unpack(">IB", data[:5])
    if magic != TOMBSTONES_MAGIC:
        raise corrupt(f"bad tombstones magic 0x{magic:08x}", 0)
    if version != 1:
        raise corrupt(f"unsupported tombstones version {version}", 4)
    arr = np.frombuffer(data, dtype=np.uint8)
    end = len(data) - 4
    (crc,) = struct.unpack(">I", data[end:])
    if kb.crc32c(arr, 5, end) != crc:
        raise corrupt("tombstones checksum mismatch", end)
    raw: dict[int, Intervals] = {}
    pos = 5
    while pos < end:
        start = pos
        ref, pos = kb.uvarint(arr, pos, end)
        mint, pos = kb.varint(arr, pos, end) if pos >= 0 else (0, -1)
        maxt, pos = kb.varint(arr, pos, end) if pos >= 0 else (0, -1)
        if pos < 0:
            raise corrupt("truncated tombstone entry", start)
        raw.setdefault(ref, []).append((mint, maxt))
    return {ref: merge_intervals(iv) for ref, iv in raw.items()}


def merge_intervals(intervals: Intervals) -> Intervals:
    """Sort and merge overlapping or touching closed intervals."""
    out: Intervals = []
    for lo, hi in sorted(intervals):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def encode_tombstones(stones: Mapping[int, Intervals]) -> bytes:
    body = bytearray()
    out = np.zeros(30, np.uint8)
    for ref in sorted(stones):
        for lo, hi in stones[ref]:
            n = kb.put_uvarint(out, 0, ref)
            n = kb.put_varint(out, n, lo)
            n = kb.put_varint(out, n, hi)
            body += out[:n].tobytes()
    crc = kb.crc32c(np.frombuffer(bytes(body), np.uint8), 0, len(body)) if body else 0
    return struct.pack(">IB", TOMBSTONES_MAGIC, 1) + bytes(body) + struct.pack(">I", crc)


EMPTY_TOMBSTONES = encode_tombstones({})


def deleted_mask(t: np.ndarray, intervals: Intervals) -> np.ndarray:
    """Boolean mask of samples (sorted timestamps ``t``) that fall inside any interval."""
    mask = np.zeros(t.shape[0], dtype=bool)
    for lo, hi in intervals:
        a = int(np.searchsorted(t, lo, side="left"))
        b = int(np.searchsorted(t, hi, side="right"))
        mask[a:b] = True
    return mask
