"""Varints in plain Python, for the few places that write a handful of them (tables, AggrChunk framing)."""

from __future__ import annotations


def encode_uvarint(n: int) -> bytes:
    """Unsigned LEB128 as Go's ``encoding/binary`` writes it (minimal form)."""
    if n < 0:
        raise ValueError(f"uvarint of a negative number: {n}")
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def encode_varint(n: int) -> bytes:
    """Zig-zag signed varint."""
    return encode_uvarint((n << 1) ^ (n >> 63) if n >= -(1 << 63) else 0)
