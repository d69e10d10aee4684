"""ULIDs: 48-bit millisecond timestamp + 80 random bits, written as 26 Crockford base32 characters."""

from __future__ import annotations

import secrets
import time

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE = {c: i for i, c in enumerate(ALPHABET)}
_LENGTH = 26
_MAX_MS = (1 << 48) - 1


def _encode(value: int) -> str:
    return "".join(ALPHABET[(value >> (5 * shift)) & 0x1F] for shift in range(_LENGTH - 1, -1, -1))


def new_ulid(ms: int | None = None) -> str:
    """A fresh ULID for time ``ms`` (default: now) with cryptographic randomness."""
    if ms is None:
        ms = time.time_ns() // 1_000_000
    if not 0 <= ms <= _MAX_MS:
        raise ValueError(f"ULID timestamp {ms} out of range")
    return _encode((ms << 80) | secrets.randbits(80))


def is_ulid(s: object) -> bool:
    """Strict check: 26 upper-case Crockford characters, first one 0-7 (the value fits 128 bits)."""
    return (
        isinstance(s, str)
        and len(s) == _LENGTH
        and "0" <= s[0] <= "7"
        and all(c in _DECODE for c in s)
    )


def ulid_to_int(s: str) -> int:
    if not is_ulid(s):
        raise ValueError(f"not a ULID: {s!r}")
    value = 0
    for c in s:
        value = (value << 5) | _DECODE[c]
    return value


def ulid_time_ms(s: str) -> int:
    """The millisecond Unix timestamp in the first 48 bits."""
    return ulid_to_int(s) >> 80
