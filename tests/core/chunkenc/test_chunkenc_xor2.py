"""XOR2 (chunk encoding 4, HISTOGRAMS.md H11.3) read through the float chunk decoder: hand-made bytes, round
trips against the test-only encoder, mixed XOR/XOR2 batches and located errors for damaged chunks."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.xor2_encoder import encode_xor2
from thanostools.core.chunkenc.xor import ENC_XOR, ENC_XOR2, decode, decode_batch, encode
from thanostools.core.constants import STALE_NAN_BITS
from thanostools.core.errors import CorruptBlockError


def bits(x: float) -> int:
    return int(struct.unpack(">Q", struct.pack(">d", x))[0])


def decode_one(data: bytes) -> tuple[list[int], list[int], list[int]]:
    buf = np.frombuffer(data, dtype=np.uint8)
    out = decode_batch(buf, np.array([0]), np.array([len(data)]), np.array([ENC_XOR2]))
    assert out.st is not None
    return out.t.tolist(), out.v.tolist(), out.st.tolist()


# 1000: 1.0, 2000: 1.0, 3000: 2.0, 3500: stale marker; no start timestamps
TINY = bytes.fromhex(
    "00 04 00"  # 4 samples, ST header 0
    " d0 0f"  # zig-zag varint t0 = 1000
    " 3f f0 00 00 00 00 00 00"  # v0 = 1.0
    " e8 07"  # uvarint t1 - t0 = 1000
    # 0 (value unchanged) | 10 (dod 0, value changed) 1 00001 001011 11111111111 (new window: 1.0 ^ 2.0)
    # | 110 1111000001100 (dod -500) 111 (stale) | 000 padding
    " 50 97 ff f7 83 38"
)


def test_hand_computed_tiny_chunk() -> None:
    t, v, sts = decode_one(TINY)
    assert t == [1000, 2000, 3000, 3500]
    assert v == [bits(1.0), bits(1.0), bits(2.0), STALE_NAN_BITS]
    assert sts == [0, 0, 0, 0]
    assert encode_xor2(t, v) == TINY
    assert decode(TINY, ENC_XOR2)[0].tolist() == t


def test_start_timestamps_of_every_form() -> None:
    t = [10_000 + 1000 * i for i in range(6)]
    sts = [5000, 5000, 7000, 7000, 9500, 9500]
    data = encode_xor2(t, [bits(1.0)] * 6, sts)
    assert data[2] == 0x80 | 2  # first ST known, changes from sample 2 on
    assert decode_one(data)[2] == sts
    changes_at_once = encode_xor2(t[:3], [bits(1.0)] * 3, [0, 4000, 4000])
    assert changes_at_once[2] == 1
    assert decode_one(changes_at_once)[2] == [0, 4000, 4000]


def test_more_than_127_samples_carry_st_fields_from_127_on() -> None:
    t = list(range(0, 200 * 15, 15))
    data = encode_xor2(t, [bits(float(i % 7)) for i in range(200)])
    assert data[2] == 127
    t2, v2, sts = decode_one(data)
    assert t2 == t and sts == [0] * 200 and v2 == [bits(float(i % 7)) for i in range(200)]


SPECIAL = [0.0, -0.0, 1.0, 1.5, -2.25, 1e300, 5e-324, float("inf"), float("-inf")]
VALUE_BITS = st.one_of(
    st.sampled_from([bits(x) for x in SPECIAL] + [STALE_NAN_BITS, 0x7FF8000000000001, 0xFFF8000000000000]),
    st.floats(allow_nan=False).map(bits),
    st.integers(0, (1 << 64) - 1),
)
DELTAS = st.one_of(st.integers(0, 5), st.just(15_000), st.integers(1, 5000), st.integers(1, 600_000),
                   st.integers(1, 1 << 40))


@st.composite
def samples(draw: st.DrawFn) -> tuple[list[int], list[int], list[int] | None]:
    n = draw(st.integers(1, 300))
    pool = draw(st.lists(VALUE_BITS, min_size=1, max_size=4))
    v = [draw(st.sampled_from(pool)) if draw(st.booleans()) else draw(VALUE_BITS) for _ in range(n)]
    t = [draw(st.integers(-(1 << 50), 1 << 50))]
    steady = draw(st.booleans())
    delta = draw(DELTAS)
    for _ in range(n - 1):
        t.append(t[-1] + (delta if steady and draw(st.integers(0, 9)) else draw(DELTAS)))
    if not draw(st.booleans()):
        return t, v, None
    base = draw(st.integers(-(1 << 45), 1 << 45))
    sts, cur = [], base
    for _ in range(n):
        if draw(st.integers(0, 4)) == 0:
            cur = draw(st.one_of(st.just(0), st.integers(-(1 << 45), 1 << 45)))
        sts.append(cur)
    return t, v, sts


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(samples())
def test_round_trip(case: tuple[list[int], list[int], list[int] | None]) -> None:
    t, v, sts = case
    got_t, got_v, got_st = decode_one(encode_xor2(t, v, sts))
    assert got_t == t
    assert got_v == v
    assert got_st == (sts if sts is not None else [0] * len(t))


def test_mixed_batch_keeps_chunk_order_and_xor_samples() -> None:
    a = encode(np.array([1, 2, 3]), np.array([1.0, 2.0, 3.0]))
    b = encode_xor2([10, 20, 30], [bits(4.0), bits(5.0), bits(6.0)], [7, 7, 7])
    c = encode(np.array([40]), np.array([7.0]))
    buf = np.frombuffer(a + b + c, dtype=np.uint8)
    ends = np.cumsum([len(a), len(b), len(c)])
    out = decode_batch(buf, ends - [len(a), len(b), len(c)], ends, np.array([ENC_XOR, ENC_XOR2, ENC_XOR]))
    assert out.offsets.tolist() == [0, 3, 6, 7]
    assert out.t.tolist() == [1, 2, 3, 10, 20, 30, 40]
    assert out.v.view(np.float64).tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    assert out.st is not None and out.st.tolist() == [0, 0, 0, 7, 7, 7, 0]


def _decode_at(data: bytes, lead: bytes = b"\0" * 5) -> CorruptBlockError:
    buf = np.frombuffer(lead + data, dtype=np.uint8)
    with pytest.raises(CorruptBlockError) as info:
        decode_batch(buf, np.array([len(lead)]), np.array([len(buf)]), np.array([ENC_XOR2]))
    return info.value


def test_truncated_chunks_name_the_chunk_and_offset() -> None:
    err = _decode_at(TINY[:-2])
    assert err.reason.startswith("XOR2 chunk 0: bit stream ends early (bit ")
    assert err.offset is not None and 5 + 13 <= err.offset < 5 + len(TINY)
    assert _decode_at(TINY[:2]).reason.startswith("XOR2 chunk 0: shorter than its 3-byte header")
    for cut in range(3, len(TINY) - 1):
        assert "ends early" in str(_decode_at(TINY[:cut])), cut


def test_bad_window_and_bad_varint() -> None:
    # sample 1 opens a window of 31 leading and 63 significant bits (> 64)
    window = bytes.fromhex("00 02 00 00") + bytes(8) + bytes.fromhex("01") + bytes([0b11011111, 0b11111100]) + bytes(8)
    assert "XOR window wider than 64 bits" in str(_decode_at(window))
    varint = bytes.fromhex("00 01 00") + b"\xff" * 10 + b"\x01" + bytes(8)
    assert "varint overflows 64 bits" in str(_decode_at(varint))


def test_flipped_bits_never_crash() -> None:
    data = encode_xor2([*range(0, 3000, 15), 5000], [bits(float(i)) for i in range(201)], [3] * 201)
    for i in range(3, len(data)):
        for b in (0x01, 0x10, 0x80):
            flipped = bytearray(data)
            flipped[i] ^= b
            buf = np.frombuffer(bytes(flipped), dtype=np.uint8)
            try:
                decode_batch(buf, np.array([0]), np.array([len(buf)]), np.array([ENC_XOR2]))
            except CorruptBlockError as exc:
                assert exc.reason.startswith("XOR2 chunk 0: ")
                assert exc.offset is not None and 0 <= exc.offset <= len(buf)


def test_unknown_float_encoding_is_refused() -> None:
    buf = np.frombuffer(TINY, dtype=np.uint8)
    with pytest.raises(CorruptBlockError, match="not a float chunk encoding"):
        decode_batch(buf, np.array([0]), np.array([len(buf)]), np.array([2]))


@pytest.mark.parametrize(("dod", "control_bits"), [
    (-4096, 16), (4095, 16), (4096, 24), (-4097, 24), (-524288, 24), (524287, 24), (524288, 69), (-524289, 69),
    (1 << 62, 69), (-(1 << 62), 69),
])
def test_dod_rows_at_their_bounds(dod: int, control_bits: int) -> None:
    t = [0, 1000, 2000 + dod]
    data = encode_xor2(t, [0, 0, 0])
    # t0 varint (8 bits), v0 (64), t1 - t0 uvarint (16), `0` (value unchanged); sample 2: control + dod, `0`
    assert len(data) == 3 + (8 + 64 + 16 + 1 + control_bits + 1 + 7) // 8
    got_t, got_v, _ = decode_one(data)
    assert got_t == t and got_v == [0, 0, 0]
