"""A test-only XOR2 (chunk encoding 4) encoder, written from HISTOGRAMS.md H11.1 and H11.3 in plain Python.

The package must never write XOR2 (Prometheus < 3.11 and Thanos cannot read it); tests use this to make chunks
for the reader.
"""

from __future__ import annotations

from collections.abc import Sequence

from thanostools.core.constants import STALE_NAN_BITS

MASK64 = (1 << 64) - 1
# varbit_int rows (H3.1): (leading ones, payload bits, smallest, largest)
VARBIT_ROWS = ((1, 3, -3, 4), (2, 6, -31, 32), (3, 9, -255, 256), (4, 12, -2047, 2048), (5, 18, -131071, 131072),
               (6, 25, -(2**24 - 1), 2**24), (7, 56, -(2**55 - 1), 2**55))
MAX_CHANGE_ON = 127


class BitWriter:
    def __init__(self) -> None:
        self.bits: list[str] = []

    def put(self, value: int, n: int) -> None:
        self.bits.append(format(value & ((1 << n) - 1), f"0{n}b"))

    def put_bits(self, text: str) -> None:
        self.bits.append(text)

    def put_uvarint(self, u: int) -> None:
        u &= MASK64
        while u >= 0x80:
            self.put((u & 0x7F) | 0x80, 8)
            u >>= 7
        self.put(u, 8)

    def put_varint(self, x: int) -> None:
        self.put_uvarint((x << 1) ^ (-1 if x < 0 else 0))

    def put_varbit_int(self, v: int) -> None:
        if v == 0:
            self.put_bits("0")
            return
        for ones, width, lo, hi in VARBIT_ROWS:
            if lo <= v <= hi:
                self.put_bits("1" * ones + "0")
                self.put(v, width)
                return
        self.put_bits("1" * 8)
        self.put(v, 64)

    def tobytes(self) -> bytes:
        text = "".join(self.bits)
        text += "0" * (-len(text) % 8)
        return bytes(int(text[i : i + 8], 2) for i in range(0, len(text), 8))


def _leading_trailing(x: int) -> tuple[int, int]:
    return min(64 - x.bit_length(), 31), (x & -x).bit_length() - 1


class _Values:
    """The value half of XOR2: the reference (last non-stale value) and the window."""

    def __init__(self, out: BitWriter, v0: int) -> None:
        self.out = out
        self.ref = 0 if v0 == STALE_NAN_BITS else v0
        self.window: tuple[int, int] | None = None

    def _bits(self, x: int, reuse_code: str, new_code: str) -> None:
        lead, trail = _leading_trailing(x)
        if self.window is not None and lead >= self.window[0] and trail >= self.window[1]:
            lead, trail = self.window
            self.out.put_bits(reuse_code)
            self.out.put(x >> trail, 64 - lead - trail)
            return
        self.window = (lead, trail)
        sig = 64 - lead - trail
        self.out.put_bits(new_code)
        self.out.put(lead, 5)
        self.out.put(sig & 63, 6)
        self.out.put(x >> trail, sig)

    def xor2(self, v: int) -> None:
        """The form after sample 1's delta and after a dod != 0."""
        if v == STALE_NAN_BITS:
            self.out.put_bits("111")
            return
        x = v ^ self.ref
        if x == 0:
            self.out.put_bits("0")
            return
        self._bits(x, "10", "110")
        self.ref = v

    def joint_dod_zero(self, v: int) -> None:
        if v == STALE_NAN_BITS:
            self.out.put_bits("11111")
            return
        x = v ^ self.ref
        if x == 0:
            self.out.put_bits("0")
            return
        self.out.put_bits("10")
        self._bits(x, "0", "1")
        self.ref = v


def _put_dod(out: BitWriter, dod: int) -> None:
    if -(1 << 12) <= dod < (1 << 12):
        out.put_bits("110")
        out.put(dod, 13)
    elif -(1 << 19) <= dod < (1 << 19):
        out.put_bits("1110")
        out.put(dod, 20)
    else:
        out.put_bits("11110")
        out.put(dod, 64)


def encode_xor2(t: Sequence[int], v: Sequence[int], st: Sequence[int] | None = None) -> bytes:
    """One XOR2 chunk payload (header included) of timestamps ``t`` (t[1] >= t[0]), value bits ``v`` and start
    timestamps ``st`` (all 0 when None)."""
    n = len(t)
    sts = list(st) if st is not None else [0] * n
    out = BitWriter()
    st_header = 0
    if n:
        out.put_varint(t[0])
        out.put(v[0], 64)
        if sts[0] != 0:
            out.put_varint(t[0] - sts[0])
            st_header |= 0x80
        values = _Values(out, v[0])
    change_on = 0
    st_diff = 0
    for i in range(1, n):
        if i == 1:
            out.put_uvarint(t[1] - t[0])
            values.xor2(v[1])
        else:
            dod = (t[i] - t[i - 1]) - (t[i - 1] - t[i - 2])
            if dod == 0:
                values.joint_dod_zero(v[i])
            else:
                _put_dod(out, dod)
                values.xor2(v[i])
        diff = t[i - 1] - sts[i]
        if change_on:
            out.put_varbit_int(diff - st_diff)
        elif sts[i] != sts[i - 1] or i == MAX_CHANGE_ON:
            change_on = i
            st_header |= i
            out.put_varbit_int(diff)
        st_diff = diff
    return bytes([n >> 8, n & 0xFF, st_header]) + out.tobytes()
